import { describe, expect, it } from "vitest";
import { AgentMetrics } from "./agent-metrics.js";

describe("AgentMetrics: a plugin's own metrics", () => {
  it("serves a plugin's gauge (set, or collected at scrape time) and counter with the agent's", async () => {
    const metrics = new AgentMetrics();
    let waiting = 3;
    metrics.gauge({ name: "chainwarden_test_waiting", help: "ports waiting", labelNames: ["namespace"], collect: (g) => g.set({ namespace: "host" }, waiting) });
    const events = metrics.counter({ name: "chainwarden_test_events_total", help: "events" });
    events.inc();
    expect(await metrics.metricsText()).toContain('chainwarden_test_waiting{namespace="host"} 3');
    waiting = 0;
    const text = await metrics.metricsText();
    expect(text).toContain('chainwarden_test_waiting{namespace="host"} 0');
    expect(text).toContain("chainwarden_test_events_total 1");
    expect(text).toContain("chainwarden_apply_duration_seconds");
  });

  it("refuses a name outside chainwarden_ and one already registered, naming it", () => {
    const metrics = new AgentMetrics();
    expect(() => metrics.gauge({ name: "waiting", help: "x" })).toThrow(/metric "waiting": a plugin's metric is named chainwarden_/);
    expect(() => metrics.counter({ name: "chainwarden_Bad-Name", help: "x" })).toThrow(/chainwarden_Bad-Name/);
    expect(() => metrics.counter({ name: "chainwarden_retries_total", help: "x" })).toThrow("metric chainwarden_retries_total is already registered in this agent");
  });
});
