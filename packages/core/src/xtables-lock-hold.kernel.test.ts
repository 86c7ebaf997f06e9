/**
 * The pieces of `ExecaRunner.holdXtablesLock` on the real tools (root: iptables-legacy needs it to
 * get as far as the lock). Lock files are a test directory's, never the host's. The probe names a
 * table that does not exist, so no table is read or written anywhere.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { takeXtablesLock, waitsForLock } from "./xtables-lock-hold.js";

describe("xtables lock hold", () => {
  let dir: string;
  beforeEach(() => {
    if (process.getuid?.() !== 0) throw new Error("iptables-legacy needs root: run these tests as root");
    dir = mkdtempSync(join(tmpdir(), "cw-lockhold-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const probe = ["-t", "chainwarden-probe", "-S"];
  const freeNow = async (file: string) => (await execa("flock", ["-n", "-E", "75", file, "true"], { reject: false })).exitCode === 0;

  it("a tool pointed at the held file waits for it; one pointed elsewhere does not", async () => {
    const held = join(dir, "xtables.lock");
    const hold = await takeXtablesLock(held, 1, {});
    try {
      expect(await freeNow(held)).toBe(false);
      const started = performance.now();
      expect(await waitsForLock("iptables-legacy", probe, held, { XTABLES_LOCKFILE: held })).toBe(true);
      expect(await waitsForLock("iptables-legacy", probe, held, { XTABLES_LOCKFILE: join(dir, "other.lock") })).toBe(false);
      // Found out from /proc/locks while the tool waits, not by waiting it out.
      expect(performance.now() - started).toBeLessThan(900);
      // The waiting tool was stopped: nothing queues for the lock any more.
      hold.release();
      expect(await freeNow(held)).toBe(true);
    } finally {
      hold.release();
    }
  });

  it("the lock stays held after flock has exited and goes on release", async () => {
    const held = join(dir, "xtables.lock");
    const hold = await takeXtablesLock(held, 1, {});
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await freeNow(held)).toBe(false);
    hold.release();
    expect(await freeNow(held)).toBe(true);
  });
});
