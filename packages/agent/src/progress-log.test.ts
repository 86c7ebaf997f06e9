import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ProgressLog } from "./progress-log.js";

describe("ProgressLog", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  function progress(total: number) {
    const lines: { at: number; done: number; total: number }[] = [];
    const log = new ProgressLog({ total, now: () => Date.now(), log: (done, all) => lines.push({ at: Date.now(), done, total: all }) });
    return { log, lines, start: Date.now() };
  }

  it("writes nothing for work that ends within the first second", () => {
    const { log, lines } = progress(10);
    for (let i = 0; i < 10; i++) {
      vi.advanceTimersByTime(90);
      log.step();
    }
    log.finish();
    vi.advanceTimersByTime(5_000);
    expect(lines).toEqual([]);
  });

  it("writes done/total at most once a second, the count at each second's end included", () => {
    const { log, lines, start } = progress(100);
    // 100 items, one every 30 ms: 3 s of work.
    for (let i = 0; i < 100; i++) {
      vi.advanceTimersByTime(30);
      log.step();
    }
    log.finish();
    vi.advanceTimersByTime(5_000);
    expect(lines.length).toBeGreaterThanOrEqual(2);
    expect(lines.length).toBeLessThanOrEqual(3);
    expect(lines[0]!.at - start).toBeGreaterThanOrEqual(1_000);
    for (let i = 1; i < lines.length; i++) expect(lines[i]!.at - lines[i - 1]!.at).toBeGreaterThanOrEqual(1_000);
    for (const l of lines) {
      expect(l.total).toBe(100);
      expect(l.done).toBeLessThan(100);
    }
    // Counts only grow, and each line has what was done at its time (33 items a second).
    expect(lines.map((l) => l.done)).toEqual([...lines.map((l) => l.done)].sort((a, b) => a - b));
    expect(lines[0]!.done).toBe(33);
  });

  it("a step inside the interval shows at the interval's end, even when nothing follows for long", () => {
    const { log, lines, start } = progress(10);
    vi.advanceTimersByTime(200);
    log.step(3);
    expect(lines).toEqual([]);
    vi.advanceTimersByTime(800);
    expect(lines).toEqual([{ at: start + 1_000, done: 3, total: 10 }]);
    // Nothing moved: no more lines.
    vi.advanceTimersByTime(10_000);
    expect(lines).toHaveLength(1);
    // A step long after the last line is written at once.
    log.step();
    expect(lines.at(-1)).toEqual({ at: start + 11_000, done: 4, total: 10 });
  });

  it("stops at finish(): a pending line is dropped", () => {
    const { log, lines } = progress(10);
    vi.advanceTimersByTime(500);
    log.step();
    log.finish();
    vi.advanceTimersByTime(2_000);
    log.step();
    expect(lines).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });
});
