import { describe, expect, it, vi } from "vitest";
import { ResourceProblemError, RestoreError, XtablesLockError } from "./errors.js";
import { IptablesTable } from "./iptables-table.js";
import { silentLogger } from "./logger.js";
import type { FamilyPlan } from "./restore-render.js";
import { RestoreWriter } from "./restore-writer.js";
import type { IptablesRunner, RestoreOptions, RestoreStream, Target, XtablesLockHold } from "./iptables-runner.js";
import { SharedXtablesHold } from "./shared-xtables-hold.js";

const PLAN: FamilyPlan = { family: 4, namespace: "ns-1", input: "*filter\n-A INPUT -j ACCEPT\nCOMMIT\n", lines: 1, tables: ["filter"], changes: [], full: false };

function writer(runner: Partial<IptablesRunner>, more: { lockWaitSeconds?: number; attempts?: number } = {}) {
  const r = runner as IptablesRunner;
  const hold = new SharedXtablesHold({ runner: r, namespace: "ns-1", logger: silentLogger });
  const w = new RestoreWriter({ runner: r, namespace: "ns-1", logger: silentLogger, lockWaitSeconds: more.lockWaitSeconds, lockRetry: { attempts: more.attempts ?? 4, initialDelayMs: 1, maxDelayMs: 2 }, hold });
  return { w, hold };
}

const lockError = () => new XtablesLockError("Another app is currently holding the xtables lock.");

describe("RestoreWriter", () => {
  it("sends the plan's input to its family's restore and counts no retries", async () => {
    const restore = vi.fn(async (_t: Target, _input: string, _o?: RestoreOptions) => undefined);
    const { w } = writer({ restore }, { lockWaitSeconds: 2 });
    expect(await w.write(PLAN)).toBe(0);
    expect(restore).toHaveBeenCalledWith({ namespace: "ns-1", family: 4 }, PLAN.input, { lockWaitSeconds: 2 });
  });

  it("waits out lock contention and says how many retries it took", async () => {
    const restore = vi.fn().mockRejectedValueOnce(lockError()).mockRejectedValueOnce(lockError()).mockResolvedValue(undefined);
    const { w } = writer({ restore });
    expect(await w.write(PLAN)).toBe(2);
    expect(restore).toHaveBeenCalledTimes(3);
  });

  it("gives up after the policy's attempts with the lock error", async () => {
    const restore = vi.fn().mockRejectedValue(lockError());
    const { w } = writer({ restore }, { attempts: 3 });
    await expect(w.write(PLAN)).rejects.toBeInstanceOf(XtablesLockError);
    expect(restore).toHaveBeenCalledTimes(3);
  });

  it("does not retry any other failure", async () => {
    const failure = new RestoreError({ exitCode: 1, stderr: "iptables-restore: line 2 failed", line: 2, input: PLAN.input });
    const restore = vi.fn().mockRejectedValue(failure);
    const { w } = writer({ restore });
    await expect(w.write(PLAN)).rejects.toBe(failure);
    expect(restore).toHaveBeenCalledTimes(1);
  });

  it("runs under the hold while there is one, which lasts until the restore has ended", async () => {
    const lock: XtablesLockHold = { path: "/run/xtables.lock", release: vi.fn() };
    let finish!: () => void;
    const restore = vi.fn((_t: Target, _input: string, _o?: RestoreOptions) => new Promise<void>((resolve) => (finish = resolve)));
    const { w, hold } = writer({ restore, holdXtablesLock: async () => lock });
    await hold.acquire();
    const written = w.write(PLAN);
    expect(restore.mock.calls[0]![2]).toEqual({ underHold: lock });
    hold.release();
    expect(hold.held).toBe(true);
    finish();
    await written;
    expect(hold.held).toBe(false);
    expect(lock.release).toHaveBeenCalledTimes(1);
  });

  it("opens a stream with its options, under the lock given", () => {
    const sink: RestoreStream = { write: () => undefined, end: async () => undefined };
    const restoreStream = vi.fn((_t: Target, _o?: RestoreOptions) => sink);
    const lock: XtablesLockHold = { path: "/run/xtables.lock", release: () => undefined };
    const { w } = writer({ restoreStream }, { lockWaitSeconds: 1 });
    expect(w.canStream).toBe(true);
    expect(w.openStream(6, lock)).toBe(sink);
    expect(restoreStream).toHaveBeenCalledWith({ namespace: "ns-1", family: 6 }, { lockWaitSeconds: 1, underHold: lock });
    w.openStream(4, undefined);
    expect(restoreStream).toHaveBeenLastCalledWith({ namespace: "ns-1", family: 4 }, { lockWaitSeconds: 1 });
    expect(writer({}).w.canStream).toBe(false);
  });

  describe("attribute", () => {
    const table = new IptablesTable("filter", { wrapName: "cwtest", family: 4, comments: false, canonicalize: (rule) => rule, markDirty: () => undefined });
    table.addChain("port-a", { resource: "port-a" });
    table.addRule("port-a", "-s 10.0.0.1/32 -j ACCEPT", { resource: "sg-rule-7" });
    const input = "*filter\n:cwtest-port-a - [0:0]\n-A cwtest-port-a -s 10.0.0.1/32 -j ACCEPT\nCOMMIT\n";

    it("names the resource that owns the failing rule, keeping the line and the cause", () => {
      const failure = new RestoreError({ exitCode: 1, stderr: "iptables-restore: line 3 failed", line: 3, input });
      const out = writer({}).w.attribute(failure, 4, [table]);
      expect(out).toBeInstanceOf(RestoreError);
      expect(out).toMatchObject({ resource: "sg-rule-7", namespace: "ns-1", family: 4, line: 3, chain: "cwtest-port-a", table: "filter", cause: failure });
    });

    it("names the chain's resource for a line that is not a rule, and keeps a resource problem one", () => {
      const failure = new ResourceProblemError({ exitCode: 4, stderr: "iptables-nft-restore: line 2 failed", line: 2, input: "*filter\n-X cwtest-port-a\nCOMMIT\n" });
      const out = writer({}).w.attribute(failure, 6, [table]);
      expect(out).toBeInstanceOf(ResourceProblemError);
      expect(out).toMatchObject({ resource: "port-a", family: 6 });
    });

    it("passes any other error through as it is", () => {
      const other = lockError();
      expect(writer({}).w.attribute(other, 4, [table])).toBe(other);
    });
  });
});
