import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { runCommand } from "./run-command.js";
import { holdXtablesLock } from "./xtables-lock.js";

describe("holdXtablesLock", () => {
  let dir: string;
  let lockFile: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "cw-lock-"));
    lockFile = join(dir, "xtables.lock");
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const isHeld = async () => (await runCommand(["flock", "-n", "-E", "75", lockFile, "true"], { reject: false })).exitCode === 75;

  it("holds the lock once it resolves and lets go after the duration", async () => {
    const held = await holdXtablesLock(lockFile, 300);
    expect(await isHeld()).toBe(true);
    await held.released;
    expect(await isHeld()).toBe(false);
  });

  it("release() ends the holder early", async () => {
    const held = await holdXtablesLock(lockFile, 60_000);
    await held.release();
    expect(await isHeld()).toBe(false);
  });
});
