import { afterEach, describe, expect, it, vi } from "vitest";
import { RetryTimers } from "./retry-timers.js";

describe("RetryTimers", () => {
  afterEach(() => vi.useRealTimers());

  it("fires a key's retry after its backoff, once; a new schedule replaces the pending one", () => {
    vi.useFakeTimers();
    const fired: string[] = [];
    const timers = new RetryTimers({ backoff: (n) => n * 1000, live: () => true });
    expect(timers.schedule("a", 1, () => fired.push("a1"))).toBe(1000);
    expect(timers.schedule("a", 3, () => fired.push("a3"))).toBe(3000);
    expect(timers.pending("a")).toBe(true);
    vi.advanceTimersByTime(2999);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(fired).toEqual(["a3"]);
    expect(timers.pending("a")).toBe(false);
    expect(timers.waiting()).toBe(false);
  });

  it("schedules nothing while the loop is not live, and a retry that comes due after it stopped does not fire", () => {
    vi.useFakeTimers();
    let live = false;
    const fired: string[] = [];
    const timers = new RetryTimers({ backoff: () => 10, live: () => live });
    expect(timers.schedule("a", 1, () => fired.push("a"))).toBeUndefined();
    expect(timers.waiting()).toBe(false);
    live = true;
    timers.schedule("b", 1, () => fired.push("b"));
    live = false;
    vi.advanceTimersByTime(10);
    expect(fired).toEqual([]);
  });

  it("cancel and stop drop pending retries", () => {
    vi.useFakeTimers();
    const fired: string[] = [];
    const timers = new RetryTimers({ backoff: () => 10, live: () => true });
    timers.schedule("a", 1, () => fired.push("a"));
    timers.schedule("b", 1, () => fired.push("b"));
    timers.cancel("a");
    expect(timers.waiting()).toBe(true);
    timers.stop();
    expect(timers.waiting()).toBe(false);
    vi.advanceTimersByTime(100);
    expect(fired).toEqual([]);
  });
});
