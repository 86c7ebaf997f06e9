import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FailingHandlers, type FailingHandler } from "./failing-handlers.js";

function setup(live = true) {
  const retried: FailingHandler[] = [];
  const state = { live };
  const failing = new FailingHandlers({ logger: pino({ level: "silent" }), backoff: (n) => 100 * 2 ** (n - 1), live: () => state.live, retry: (f) => retried.push(f) });
  return { failing, retried, state };
}

describe("FailingHandlers", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("benches a handler in one namespace until its backoff runs out, longer each time; a run that calls it again settles it", () => {
    const { failing, retried } = setup();
    failing.bench("ns-a", "guard", new Error("boom"));
    expect([...failing.benchedIn("ns-a")]).toEqual(["guard"]);
    expect([...failing.benchedIn("ns-b")]).toEqual([]);
    expect(failing.waiting()).toBe(true);
    vi.advanceTimersByTime(100);
    expect(retried.map((f) => [f.ns, f.kind, f.failures])).toEqual([["ns-a", "guard", 1]]);
    expect(failing.benchedIn("ns-a").size).toBe(0);
    expect(failing.benched()).toEqual([]);

    // Fails again: twice the wait.
    const again = failing.bench("ns-a", "guard", new Error("boom"));
    expect(again.failures).toBe(2);
    expect(failing.delayOf(again)).toBe(200);
    vi.advanceTimersByTime(199);
    expect(retried).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(retried).toHaveLength(2);

    // A run that started while it was benched does not settle it; the next one does.
    failing.settle("ns-a", new Set(["guard"]));
    expect(failing.bench("ns-a", "guard", new Error("boom")).failures).toBe(3);
    vi.advanceTimersByTime(400);
    failing.settle("ns-a", new Set());
    expect(failing.bench("ns-a", "guard", new Error("boom")).failures).toBe(1);
  });

  it("schedules nothing before the loop is live; scheduleAll does once it is; stop cancels, the handler stays benched", () => {
    const { failing, retried, state } = setup(false);
    failing.bench(undefined, "port", new Error("boom"));
    expect(failing.waiting()).toBe(false);
    expect(failing.benched().map((f) => [f.ns, f.kind])).toEqual([[undefined, "port"]]);
    state.live = true;
    failing.scheduleAll();
    expect(failing.waiting()).toBe(true);
    failing.stop();
    expect(failing.waiting()).toBe(false);
    vi.advanceTimersByTime(1_000);
    expect(retried).toEqual([]);
    expect([...failing.benchedIn(undefined)]).toEqual(["port"]);
  });
});
