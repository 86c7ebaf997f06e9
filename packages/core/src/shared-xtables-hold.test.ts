import { describe, expect, it, vi } from "vitest";
import { XtablesLockError } from "./errors.js";
import type { CoreLogger } from "./logger.js";
import type { IptablesRunner, XtablesLockHold } from "./iptables-runner.js";
import { SharedXtablesHold } from "./shared-xtables-hold.js";

function lock() {
  return { path: "/run/xtables.lock", release: vi.fn<() => void>() } satisfies XtablesLockHold;
}

function logger() {
  const lines: { level: string; message: string }[] = [];
  const at = (level: string) => (_fields: object, message: string) => void lines.push({ level, message });
  const log: CoreLogger = { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
  return { log, lines };
}

function shared(runner: Partial<IptablesRunner>, lockWaitSeconds?: number) {
  const { log, lines } = logger();
  const hold = new SharedXtablesHold({ runner: runner as IptablesRunner, namespace: "ns-1", logger: log, lockWaitSeconds });
  return { hold, lines };
}

describe("SharedXtablesHold", () => {
  it("takes the lock once for callers at the same time and lets it go when the last one releases", async () => {
    const l = lock();
    let give!: (hold: XtablesLockHold) => void;
    const holdXtablesLock = vi.fn(() => new Promise<XtablesLockHold>((resolve) => (give = resolve)));
    const { hold } = shared({ holdXtablesLock }, 3);
    const both = Promise.all([hold.acquire(), hold.acquire()]);
    give(l);
    expect(await both).toEqual([true, true]);
    expect(holdXtablesLock).toHaveBeenCalledTimes(1);
    expect(holdXtablesLock).toHaveBeenCalledWith({ waitSeconds: 3 });
    expect(hold.held).toBe(true);
    hold.release();
    expect(l.release).not.toHaveBeenCalled();
    hold.release();
    expect(l.release).toHaveBeenCalledTimes(1);
    expect(hold.held).toBe(false);
    hold.release();
    expect(l.release).toHaveBeenCalledTimes(1);
  });

  it("keeps the lock while a restore started under it runs, after every taker is gone", async () => {
    const l = lock();
    const { hold } = shared({ holdXtablesLock: async () => l });
    await hold.acquire();
    const use = hold.use();
    expect(use.lock).toBe(l);
    hold.release();
    expect(hold.held).toBe(true);
    use.done();
    expect(l.release).toHaveBeenCalledTimes(1);
    use.done();
    expect(l.release).toHaveBeenCalledTimes(1);
  });

  it("gives uses without a lock while nothing is held", () => {
    const { hold } = shared({});
    const use = hold.use();
    expect(use.lock).toBeUndefined();
    use.done();
    expect(hold.held).toBe(false);
  });

  it("says false when the runner cannot hold, and takes the lock again after a hold has gone", async () => {
    expect(await shared({}).hold.acquire()).toBe(false);
    const locks = [lock(), lock()];
    const { hold } = shared({ holdXtablesLock: async () => locks.shift() });
    expect(await hold.acquire()).toBe(true);
    hold.release();
    expect(await hold.acquire()).toBe(true);
    expect(locks).toEqual([]);
  });

  it("logs a runner's refusal once, and a lock not free in time as a warning", async () => {
    const refusing = shared({ holdXtablesLock: async () => undefined, holdRefusal: "XTABLES_LOCKFILE ignored" });
    expect(await refusing.hold.acquire()).toBe(false);
    expect(await refusing.hold.acquire()).toBe(false);
    expect(refusing.lines.filter((l) => l.level === "info")).toHaveLength(1);
    const busy = shared({ holdXtablesLock: async () => Promise.reject(new XtablesLockError("not free after 5s")) });
    expect(await busy.hold.acquire()).toBe(false);
    expect(busy.lines.map((l) => l.level)).toEqual(["warn"]);
  });
});
