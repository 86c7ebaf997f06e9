import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { ByKind } from "./desired-state.js";
import { FailedResources, type FailingResource } from "./failed-resources.js";

const byKind = (entries: Record<string, string[]>): ByKind => new Map(Object.entries(entries).map(([k, ids]) => [k, new Map(ids.map((id) => [id, {}]))]));

function setup(live = true) {
  const retried: FailingResource[] = [];
  let changes = 0;
  const state = { live };
  const failed = new FailedResources({
    logger: pino({ level: "silent" }),
    backoff: (n) => 100 * 2 ** (n - 1),
    live: () => state.live,
    retry: (f) => retried.push(f),
    changed: () => changes++,
  });
  return { failed, retried, state, changes: () => changes };
}

describe("FailedResources", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("culprits: the desired, not yet held resources an error names, along its cause chain", () => {
    const { failed } = setup();
    const desired = byKind({ port: ["p1", "p2", "p3"] });
    const inner = Object.assign(new Error("restore failed"), { resource: "port/p2" });
    const outer = Object.assign(new Error("apply failed", { cause: inner }), { resources: ["port/p1", "port/gone", "bogus", "port/p1"] });
    expect(failed.culprits(outer, desired, new Map())).toEqual([
      { kind: "port", id: "p1" },
      { kind: "port", id: "p2" },
    ]);
    // Held already (a stand-in): not to blame again.
    expect(failed.culprits(outer, desired, new Map([["port", new Set(["p1"])]]))).toEqual([{ kind: "port", id: "p2" }]);
    failed.hold("ns-a", "port", "p2", inner);
    expect(failed.culprits(outer, desired, new Map())).toEqual([{ kind: "port", id: "p1" }]);
    expect(failed.culprits(new Error("no resource named"), desired, new Map())).toEqual([]);
  });

  it("holds a resource, retries it alone after a backoff that grows with each failure, and lets it go once applied", () => {
    const { failed, retried } = setup();
    const error = new Error("boom");
    failed.hold("ns-a", "port", "p1", error);
    expect(failed.heldIn("ns-a", "port", new Map([["p1", {}]]))).toEqual(["p1"]);
    expect(failed.heldIn("ns-b", "port", new Map([["p1", {}]]))).toEqual([]);
    expect(failed.held().map((f) => [f.ns, f.kind, f.id, f.failures, f.error])).toEqual([["ns-a", "port", "p1", 1, error]]);
    expect(failed.waiting()).toBe(true);

    vi.advanceTimersByTime(99);
    expect(retried).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(retried.map((f) => f.id)).toEqual(["p1"]);
    // On its retry it is not held: the run applies it.
    expect(failed.held()).toEqual([]);
    expect(failed.waiting()).toBe(false);

    // It fails again: twice the delay.
    failed.hold("ns-a", "port", "p1", error);
    expect(failed.held()[0]!.failures).toBe(2);
    vi.advanceTimersByTime(199);
    expect(retried).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(retried).toHaveLength(2);

    // The run applied it: gone.
    failed.settle("ns-a", new Map());
    expect(failed.held()).toEqual([]);
    failed.hold("ns-a", "port", "p1", error);
    expect(failed.held()[0]!.failures).toBe(1);
  });

  it("settle keeps what is still held, and other namespaces' resources", () => {
    const { failed } = setup();
    failed.hold("ns-a", "port", "p1", new Error("x"));
    failed.hold("ns-b", "port", "p2", new Error("x"));
    vi.advanceTimersByTime(100);
    failed.settle("ns-a", new Map([["port", new Set(["p1"])]]));
    failed.hold("ns-a", "port", "p3", new Error("x"));
    failed.settle("ns-a", new Map());
    // p1 held by the run (a stand-in now) and p3 held for its retry stay; p2 is another namespace's.
    expect(failed.held().map((f) => f.id).sort()).toEqual(["p3"]);
    failed.forgetUndesired((_, id) => id !== "p3");
    expect(failed.held()).toEqual([]);
    expect(failed.waiting()).toBe(false);
  });

  it("schedules nothing while the loop is not live; scheduleAll starts the waiting retries; stop cancels them", () => {
    const t = setup(false);
    t.failed.hold("ns-a", "port", "p1", new Error("x"));
    expect(t.failed.waiting()).toBe(false);
    expect(t.failed.held()).toHaveLength(1);
    t.state.live = true;
    t.failed.scheduleAll();
    expect(t.failed.waiting()).toBe(true);
    t.failed.stop();
    expect(t.failed.waiting()).toBe(false);
    vi.advanceTimersByTime(10_000);
    expect(t.retried).toEqual([]);
    // Still held: stopping changes nothing in the kernel.
    expect(t.failed.held()).toHaveLength(1);
  });

  it("tells the gauge when the held set changes", () => {
    const t = setup();
    t.failed.hold("ns-a", "port", "p1", new Error("x"));
    expect(t.changes()).toBe(1);
    vi.advanceTimersByTime(100);
    expect(t.changes()).toBe(2);
    t.failed.settle("ns-a", new Map());
    expect(t.changes()).toBe(3);
  });
});
