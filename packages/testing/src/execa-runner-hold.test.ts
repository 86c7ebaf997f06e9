/**
 * `ExecaRunner.holdXtablesLock` on the real legacy tools: the hold is the tools' lock (another
 * iptables user waits for it), restores under it do not wait for it and both families go at once,
 * a lock somebody else keeps is reported with its holder. The lock file is a test's own
 * (`XTABLES_LOCKFILE`), never the host's; the restores go into a namespace the test creates.
 */
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ExecaRunner, XtablesLockError, type XtablesLockHold } from "@chainwarden/core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { withNetns } from "./netns.js";
import { runCommand } from "./run-command.js";
import { holdXtablesLock } from "./xtables-lock.js";

describe("ExecaRunner.holdXtablesLock", () => {
  let dir: string;
  let lockFile: string;
  let runner: ExecaRunner;
  beforeEach(async () => {
    if (process.getuid?.() !== 0) throw new Error("these tests run iptables in network namespaces: run them as root");
    dir = await mkdtemp(join(tmpdir(), "cw-hold-"));
    lockFile = join(dir, "xtables.lock");
    runner = new ExecaRunner({ backend: "legacy", env: { XTABLES_LOCKFILE: lockFile }, lockWaitSeconds: 1 });
  });
  afterEach(async () => {
    await runner.close();
    await rm(dir, { recursive: true, force: true });
  });
  const isHeld = async () => (await runCommand(["flock", "-n", "-E", "75", lockFile, "true"], { reject: false })).exitCode === 75;
  const chain = (name: string) => `*filter\n:${name} - [0:0]\nCOMMIT\n`;

  it("holds the tools' lock file until released (twice is fine)", async () => {
    const hold = await runner.holdXtablesLock();
    expect(hold?.path).toBe(lockFile);
    expect(await isHeld()).toBe(true);
    hold!.release();
    hold!.release();
    expect(await isHeld()).toBe(false);
  });

  it("restores under the hold go at once, both families, while a restore outside it waits for the lock", async () => {
    await withNetns(async (netns) => {
      const target = (family: 4 | 6) => ({ namespace: netns.name, family });
      let hold: XtablesLockHold | undefined;
      try {
        hold = await runner.holdXtablesLock();
        expect(hold).toBeDefined();
        // Outside the hold the tool waits for our lock (-w 1) and gives up: the hold excludes others.
        await expect(runner.restore(target(4), chain("cw-outside"))).rejects.toBeInstanceOf(XtablesLockError);
        await Promise.all([runner.restore(target(4), chain("cw-held"), { underHold: hold! }), runner.restore(target(6), chain("cw-held"), { underHold: hold! })]);
        // Each family under a lock file of its own, beside the held one.
        expect([existsSync(join(dir, "chainwarden-xtables-v4.lock")), existsSync(join(dir, "chainwarden-xtables-v6.lock"))]).toEqual([true, true]);
      } finally {
        hold?.release();
      }
      for (const family of [4, 6] as const) {
        const saved = await runner.save(target(family));
        expect(saved).toContain(":cw-held - [0:0]");
        expect(saved).not.toContain("cw-outside");
      }
      // Released: a plain restore takes the lock again.
      await runner.restore(target(4), chain("cw-after"));
    }, "cw-hold");
  });

  it("a tool started under the hold keeps the lock held until it ends, even once the hold is released", async () => {
    await withNetns(async (netns) => {
      const hold = await runner.holdXtablesLock();
      expect(hold).toBeDefined();
      const stream = runner.restoreStream({ namespace: netns.name, family: 4 }, { underHold: hold! });
      stream.write("*filter\n:cw-stream - [0:0]\n");
      // Let the tool start (it reads its input as it comes).
      await new Promise((resolve) => setTimeout(resolve, 200));
      hold!.release();
      // As if we had died with the tool still running: the lock is the tool's now.
      expect(await isHeld()).toBe(true);
      stream.write("COMMIT\n");
      await stream.end();
      expect(await isHeld()).toBe(false);
      expect(await runner.save({ namespace: netns.name, family: 4 })).toContain(":cw-stream - [0:0]");
      // A whole-input restore under a hold carries it too, and lets it go when done.
      const again = await runner.holdXtablesLock();
      await runner.restore({ namespace: netns.name, family: 6 }, chain("cw-whole"), { underHold: again! });
      again!.release();
      expect(await isHeld()).toBe(false);
    }, "cw-hold");
  });

  it("names the process that keeps the lock when it is not free in time", async () => {
    const other = await holdXtablesLock(lockFile, 20_000);
    try {
      const err = await runner.holdXtablesLock({ waitSeconds: 1 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(XtablesLockError);
      expect((err as Error).message).toMatch(new RegExp(`${lockFile} not free after 1s; held by pid \\d+ \\(flock\\)`));
    } finally {
      await other.release();
    }
    // Free again: the next hold works (a failed one leaves nothing held).
    const hold = await runner.holdXtablesLock();
    expect(hold).toBeDefined();
    hold!.release();
  });

  it("gives nothing, and says why, where flock(1) cannot be run (never asked again)", async () => {
    const noFlock = new ExecaRunner({ backend: "legacy", env: { XTABLES_LOCKFILE: lockFile, PATH: dir } });
    try {
      expect(await noFlock.holdXtablesLock()).toBeUndefined();
      expect(noFlock.holdRefusal).toMatch(/flock/);
      expect(await noFlock.holdXtablesLock()).toBeUndefined();
      expect(await isHeld()).toBe(false);
    } finally {
      await noFlock.close();
    }
  });

  it("gives nothing on nf_tables, whose tools take no lock", async () => {
    const nft = new ExecaRunner({ backend: "nft", env: { XTABLES_LOCKFILE: lockFile } });
    try {
      expect(await nft.holdXtablesLock()).toBeUndefined();
      expect(await isHeld()).toBe(false);
    } finally {
      await nft.close();
    }
  });
});
