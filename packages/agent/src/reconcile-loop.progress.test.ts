/**
 * The loop's side of long work and health: a full pass over many namespaces logs its progress
 * (info, done/total, at most once a second), and `health()` says what `/healthz` and `/readyz` read.
 */
import { FakeHost } from "@chainwarden/testing";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { AgentMetrics } from "./agent-metrics.js";
import type { ResourceHandler } from "./extension-points.js";
import { ReconcileLoop } from "./reconcile-loop.js";
import { config, doc, loops, rs, ruleSetHandler, sleep, until } from "./rule-set-handler.test-support.js";

interface Line {
  level: number;
  time: number;
  msg: string;
  [field: string]: unknown;
}

function bench(namespaces: string[], options: { delayMs?: number; gate?: Promise<void>; parallel?: number } = {}) {
  const lines: Line[] = [];
  const logger = pino({ level: "info" }, { write: (m: string) => void lines.push(JSON.parse(m) as Line) });
  const { handler } = ruleSetHandler({
    beforeReconcile: async () => {
      if (options.gate) await options.gate;
      if (options.delayMs) await sleep(options.delayMs);
    },
  });
  const loop = new ReconcileLoop({
    handlers: [handler as ResourceHandler],
    observers: [],
    runner: new FakeHost({ namespaces }),
    logger,
    metrics: new AgentMetrics(),
    config: config({ max_parallel_namespaces: options.parallel ?? 4 }),
  });
  loops.push(loop);
  return { loop, lines };
}

const names = (n: number) => Array.from({ length: n }, (_, i) => `ns-${i}`);

describe("ReconcileLoop progress and health", () => {
  it("a full pass over many namespaces logs done/total at info, at most once a second", async () => {
    const namespaces = names(12);
    // 12 namespaces, 4 at a time, 450 ms each: about 1.35 s.
    const { loop, lines } = bench(namespaces, { delayMs: 450 });
    loop.update(doc(...namespaces.map((ns, i) => rs(`r${i}`, ns, "-j ACCEPT"))), "test");
    expect(await loop.start()).toMatchObject({ namespaces: 12, applied: 12 });
    const started = lines.find((l) => l.msg === "full pass started")!;
    const progress = lines.filter((l) => l.msg === "full pass progress");
    expect(progress.length).toBeGreaterThanOrEqual(1);
    expect(progress.length).toBeLessThanOrEqual(2);
    for (const p of progress) {
      expect(p).toMatchObject({ level: 30, pass: "initial sync", total: 12, failed: 0 });
      expect(p.done).toBeGreaterThan(0);
      expect(p.done).toBeLessThan(12);
      expect(p.progress).toBe(`${String(p.done)}/12`);
    }
    // Not before a second has passed, and a second apart (pino's clock is in whole milliseconds).
    expect(progress[0]!.time - started.time).toBeGreaterThanOrEqual(990);
    for (let i = 1; i < progress.length; i++) expect(progress[i]!.time - progress[i - 1]!.time).toBeGreaterThanOrEqual(990);
    expect(lines.at(-1)).toMatchObject({ msg: "full pass finished", namespaces: 12, applied: 12 });
  });

  it("a pass shorter than a second logs no progress", async () => {
    const namespaces = names(20);
    const { loop, lines } = bench(namespaces);
    loop.update(doc(...namespaces.map((ns, i) => rs(`r${i}`, ns, "-j ACCEPT"))), "test");
    await loop.start();
    expect(lines.filter((l) => l.msg === "full pass progress")).toEqual([]);
    expect(lines.map((l) => l.msg)).toContain("full pass finished");
  });

  it("health(): the runs in flight with the oldest's age, and synced once the first full pass is done", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { loop } = bench(["ns-a", "ns-b"], { gate });
    expect(loop.health()).toMatchObject({ state: "idle", synced: false, running: 0, stateRead: false });
    loop.update(doc(rs("a", "ns-a", "-j ACCEPT"), rs("b", "ns-b", "-j ACCEPT")), "test");
    const started = loop.start();
    await sleep(120);
    const during = loop.health();
    expect(during).toMatchObject({ state: "running", stateRead: true, synced: false, startPassDone: false, running: 2 });
    expect(during.oldestRun!.seconds).toBeGreaterThanOrEqual(0.1);
    expect(["ns-a", "ns-b"]).toContain(during.oldestRun!.namespace);
    release();
    await started;
    const after = loop.health();
    expect(after).toMatchObject({ state: "running", synced: true, startPassDone: true, running: 0 });
    expect(after.oldestRun).toBeUndefined();
    await loop.stop();
    expect(loop.health().state).toBe("stopped");
  });

  it("a first state that arrives after a start without one: synced once each namespace it touches has run, and it says so", async () => {
    const { loop, lines } = bench(["ns-a", "ns-b"], { delayMs: 50 });
    const report = await loop.start();
    expect(report.stateRead).toBe(false);
    expect(loop.health()).toMatchObject({ synced: false, stateRead: false, startPassDone: true });
    loop.update(doc(rs("a", "ns-a", "-j ACCEPT"), rs("b", "ns-b", "-j ACCEPT")), "test");
    expect(loop.health()).toMatchObject({ synced: false, stateRead: true, firstStatePending: 2 });
    await until(() => loop.health().synced);
    expect(loop.health().firstStatePending).toBe(0);
    expect(lines.map((l) => l.msg)).toEqual(expect.arrayContaining(["first desired state read after the initial sync; applying it", "first desired state applied"]));
  });
});
