import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { NsKey } from "./desired-state.js";
import { NamespaceScheduler, StoppedError, type RunOutcome, type RunRequest } from "./namespace-scheduler.js";

interface Call {
  ns: NsKey;
  request: RunRequest;
  finish(outcome?: RunOutcome): void;
}

function setup(options: { parallel?: number; coalesce?: number; started?: boolean; forgettable?: (ns: NsKey) => boolean } = {}) {
  const calls: Call[] = [];
  const forgotten: NsKey[] = [];
  let retried = 0;
  let busy = false;
  const scheduler = new NamespaceScheduler({
    config: { coalesce_ms: options.coalesce ?? 50, max_parallel_namespaces: options.parallel ?? 4, retry_initial_delay_ms: 100, retry_max_delay_ms: 400 },
    logger: pino({ level: "silent" }),
    run: (ns, request) => new Promise<RunOutcome>((resolve) => calls.push({ ns, request: { ...request, recheck: new Set(request.recheck) }, finish: (o = { ok: true }) => resolve(o) })),
    started: () => options.started ?? true,
    busy: () => busy,
    forgettable: options.forgettable ?? (() => false),
    forget: (ns) => forgotten.push(ns),
    retried: () => retried++,
  });
  return { scheduler, calls, forgotten, retried: () => retried, setBusy: (b: boolean) => (busy = b) };
}

/** Lets the scheduler's promise callbacks run. */
const settle = () => vi.advanceTimersByTimeAsync(0);

describe("NamespaceScheduler", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("a lone request runs at once; requests within the window of the last start wait for its end as one run, merging what they ask", async () => {
    const { scheduler, calls } = setup();
    scheduler.request("ns-a", { immediate: false });
    expect(calls).toHaveLength(1);
    calls[0]!.finish();
    await vi.advanceTimersByTimeAsync(10);
    scheduler.request("ns-a", { immediate: false, pendingSince: 5 });
    await vi.advanceTimersByTimeAsync(20);
    scheduler.request("ns-a", { immediate: false, verify: true, pendingSince: 9 });
    expect(calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(19);
    expect(calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls.map((c) => [c.ns, c.request.full, c.request.verify, c.request.pendingSince])).toEqual([
      ["ns-a", false, false, undefined],
      ["ns-a", false, true, 5],
    ]);
    calls[1]!.finish();
    // Long after: at once again.
    await vi.advanceTimersByTimeAsync(500);
    scheduler.request("ns-b", { immediate: false });
    scheduler.request("ns-a", { immediate: false });
    expect(calls.map((c) => c.ns)).toEqual(["ns-a", "ns-a", "ns-b", "ns-a"]);
  });

  it("an immediate request skips the window; one arriving while running runs once more after, a window after the start", async () => {
    const { scheduler, calls } = setup();
    scheduler.request("ns-a", { immediate: false });
    calls[0]!.finish();
    await settle();
    scheduler.request("ns-a", { immediate: false });
    scheduler.request("ns-a", { immediate: true, full: true });
    expect(calls).toHaveLength(2);
    expect(calls[1]!.request.full).toBe(true);
    scheduler.request("ns-a", { immediate: false });
    scheduler.request("ns-a", { immediate: false });
    calls[1]!.finish();
    await settle();
    expect(calls).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(50);
    expect(calls).toHaveLength(3);
    expect(calls[2]!.request.full).toBe(false);
  });

  it("runs at most max_parallel_namespaces at once, one run per namespace", async () => {
    const { scheduler, calls } = setup({ parallel: 2 });
    for (const ns of ["a", "b", "c"]) scheduler.request(ns, { immediate: true });
    expect(calls.map((c) => c.ns)).toEqual(["a", "b"]);
    calls[0]!.finish();
    await settle();
    expect(calls.map((c) => c.ns)).toEqual(["a", "b", "c"]);
  });

  it("a failed run is retried as a full pass after a backoff that doubles up to the cap; waiters hear the outcome", async () => {
    const t = setup();
    const heard: RunOutcome[] = [];
    t.scheduler.request("ns-a", { immediate: true, waiter: (o) => heard.push(o) });
    const boom = new Error("boom");
    for (const [i, delay] of [100, 200, 400, 400].entries()) {
      t.calls[i]!.finish({ ok: false, error: boom });
      await settle();
      await vi.advanceTimersByTimeAsync(delay - 1);
      expect(t.calls).toHaveLength(i + 1);
      await vi.advanceTimersByTimeAsync(1);
      expect(t.calls).toHaveLength(i + 2);
      expect(t.calls[i + 1]!.request.full).toBe(true);
    }
    expect(heard).toEqual([{ ok: false, error: boom }]);
    expect(t.retried()).toBe(4);
    // Success resets the backoff.
    t.calls[4]!.finish();
    await settle();
    t.scheduler.request("ns-a", { immediate: true });
    t.calls[5]!.finish({ ok: false, error: boom });
    await settle();
    await vi.advanceTimersByTimeAsync(100);
    expect(t.calls).toHaveLength(7);
  });

  it("no retry or requeue before the loop has started (a one-shot pass reports instead)", async () => {
    const t = setup({ started: false });
    t.scheduler.request("ns-a", { immediate: true });
    t.calls[0]!.finish({ ok: false, error: new Error("x") });
    await settle();
    t.scheduler.request("ns-b", { immediate: true });
    t.calls[1]!.finish({ ok: true, requeue: { afterMs: 10, kinds: new Set(["port"]) } });
    await vi.advanceTimersByTimeAsync(10_000);
    expect(t.calls).toHaveLength(2);
    await t.scheduler.idle();
  });

  it("an isolated failure runs the namespace again at once as a full pass; its waiters hear that run", async () => {
    const { scheduler, calls } = setup();
    const heard: RunOutcome[] = [];
    scheduler.request("ns-a", { immediate: true, pendingSince: 3, waiter: (o) => heard.push(o) });
    calls[0]!.finish({ ok: false, error: new Error("port p1"), isolated: ["port/p1"] });
    await settle();
    expect(heard).toEqual([]);
    expect(calls).toHaveLength(2);
    expect(calls[1]!.request).toMatchObject({ full: true, pendingSince: 3 });
    calls[1]!.finish();
    await settle();
    expect(heard).toEqual([{ ok: true }]);
  });

  it("a requeue runs again later with the kinds that asked; a wake calls a kind again soon; unknown namespaces are not woken", async () => {
    const { scheduler, calls } = setup();
    scheduler.request("ns-a", { immediate: true });
    calls[0]!.finish({ ok: true, requeue: { afterMs: 500, kinds: new Set(["port"]) } });
    await settle();
    // A requeue does not hold idle() up.
    await scheduler.idle();
    await vi.advanceTimersByTimeAsync(500);
    expect(calls).toHaveLength(2);
    expect([...calls[1]!.request.recheck]).toEqual(["port"]);
    calls[1]!.finish();
    await settle();
    scheduler.wake("ns-a", "router");
    scheduler.wake("ns-unknown", "router");
    await vi.advanceTimersByTimeAsync(50);
    expect(calls.map((c) => [c.ns, [...c.request.recheck]])).toEqual([
      ["ns-a", []],
      ["ns-a", ["port"]],
      ["ns-a", ["router"]],
    ]);
  });

  it("forgets a namespace at rest that the caller says holds nothing", async () => {
    let empty = false;
    const { scheduler, calls, forgotten } = setup({ forgettable: () => empty });
    scheduler.request("ns-a", { immediate: true });
    calls[0]!.finish();
    await settle();
    expect(scheduler.namespaces()).toEqual(["ns-a"]);
    empty = true;
    scheduler.request("ns-a", { immediate: true });
    calls[1]!.finish();
    await settle();
    expect(forgotten).toEqual(["ns-a"]);
    expect(scheduler.namespaces()).toEqual([]);
  });

  it("idle waits for queued, coalescing, running and retrying work, and for the caller's busy()", async () => {
    const t = setup();
    let idle = false;
    t.scheduler.request("ns-a", { immediate: false });
    void t.scheduler.idle().then(() => (idle = true));
    await vi.advanceTimersByTimeAsync(50);
    t.calls[0]!.finish({ ok: false, error: new Error("x") });
    await settle();
    expect(idle).toBe(false);
    t.setBusy(true);
    await vi.advanceTimersByTimeAsync(100);
    t.calls[1]!.finish();
    await settle();
    expect(idle).toBe(false);
    t.setBusy(false);
    t.scheduler.checkIdle();
    await settle();
    expect(idle).toBe(true);
  });

  it("stop: timers cancelled, the run in flight finishes, every waiter hears, later requests are refused", async () => {
    const { scheduler, calls } = setup({ parallel: 1 });
    const heard: (RunOutcome | string)[] = [];
    scheduler.request("ns-a", { immediate: true, waiter: (o) => heard.push(o) });
    scheduler.request("ns-b", { immediate: false, waiter: (o) => heard.push(o.error instanceof StoppedError ? "stopped b" : o) });
    scheduler.request("ns-a", { immediate: false, waiter: (o) => heard.push(o.error instanceof StoppedError ? "stopped a again" : o) });
    const stopping = scheduler.stop();
    expect(heard).toEqual(["stopped b"]);
    calls[0]!.finish();
    await stopping;
    expect(heard).toEqual(["stopped b", { ok: true }, "stopped a again"]);
    scheduler.request("ns-c", { immediate: true, waiter: (o) => heard.push(o.error instanceof StoppedError ? "stopped c" : o) });
    expect(heard.at(-1)).toBe("stopped c");
    await vi.advanceTimersByTimeAsync(1000);
    expect(calls).toHaveLength(1);
  });

  it("a run that throws is a failure, logged, and retried", async () => {
    const calls: NsKey[] = [];
    const scheduler = new NamespaceScheduler({
      config: { coalesce_ms: 0, max_parallel_namespaces: 1, retry_initial_delay_ms: 10, retry_max_delay_ms: 10 },
      logger: pino({ level: "silent" }),
      run: async (ns) => {
        calls.push(ns);
        if (calls.length === 1) throw new TypeError("bug");
        return { ok: true };
      },
      started: () => true,
      busy: () => false,
      forgettable: () => false,
      forget: () => {},
      retried: () => {},
    });
    const heard: RunOutcome[] = [];
    scheduler.request(undefined, { immediate: true, waiter: (o) => heard.push(o) });
    await settle();
    expect(heard[0]).toMatchObject({ ok: false, error: { message: "bug" } });
    await vi.advanceTimersByTimeAsync(10);
    expect(calls).toEqual([undefined, undefined]);
  });
});
