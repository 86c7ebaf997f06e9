import { request } from "node:http";
import { FakeHost } from "@chainwarden/testing";
import { afterEach, describe, expect, it } from "vitest";
import { Agent, FRAMEWORK_VERSION } from "./agent.js";
import { liveness, readiness, type HealthView } from "./agent-health.js";
import { resourceHandlerExtensionPoint, stateSourceExtensionPoint, type ResourceHandler, type StateSource, type StateSourceHealth } from "./extension-points.js";
import type { AgentConfig } from "./config-schema.js";
import { createLogger } from "./logging.js";
import { MemoryStateSource } from "./memory-state-source.js";
import { createPlugin } from "./plugin.js";
import { config, doc, rs, ruleSetHandler, sleep, until } from "./rule-set-handler.test-support.js";

const loop = (over: Partial<HealthView["loop"]> = {}): HealthView["loop"] => ({
  state: "running",
  stateRead: true,
  synced: true,
  startPassDone: true,
  firstStatePending: 0,
  running: 0,
  ...over,
});

describe("liveness", () => {
  it("is ok while runs finish, also while starting and stopping", () => {
    for (const phase of ["starting", "running", "stopping"] as const) {
      expect(liveness({ phase, loop: loop({ running: 2, oldestRun: { namespace: "ns-a", seconds: 12.3456 } }), sources: [] }, 300)).toEqual({
        ok: true,
        reasons: [],
        phase,
        loop: "running",
        runs: 2,
        oldestRunSeconds: 12.346,
        stuckAfterSeconds: 300,
      });
    }
  });

  it("is stuck when a namespace run has been in flight longer than stuck_after_seconds, naming it", () => {
    const report = liveness({ phase: "running", loop: loop({ running: 1, oldestRun: { namespace: null, seconds: 301 } }), sources: [] }, 300);
    expect(report.ok).toBe(false);
    expect(report.reasons).toEqual(["stuck: the run of namespace (host) has been in flight for 301 s (stuck_after_seconds: 300)"]);
  });
});

describe("readiness", () => {
  const file = { name: "file", health: { delivered: true }, started: true };
  it("is ready once synced with every source delivered and not disconnected", () => {
    expect(readiness({ phase: "running", loop: loop(), sources: [file, { name: "memory", health: undefined, started: true }] })).toEqual({
      ok: true,
      reasons: [],
      phase: "running",
      synced: true,
      stateRead: true,
      sources: [
        { name: "file", delivered: true },
        { name: "memory", delivered: true },
      ],
    });
  });

  it("says why not: starting, the first sync, no state, the first state being applied, a source not delivered or disconnected, stopping", () => {
    const why = (view: HealthView) => readiness(view).reasons;
    expect(why({ phase: "starting", loop: loop({ state: "idle", synced: false, startPassDone: false }), sources: [{ ...file, started: false }] })).toEqual(["the agent is starting its state sources"]);
    expect(why({ phase: "running", loop: loop({ synced: false, startPassDone: false }), sources: [file] })).toEqual(["the initial full sync has not finished"]);
    expect(why({ phase: "running", loop: loop({ synced: false, stateRead: false }), sources: [{ name: "file", health: { delivered: false, detail: "no valid state read from /s.yaml yet" }, started: true }] })).toEqual([
      "no desired state was read yet",
      "state source file: no valid state read from /s.yaml yet",
    ]);
    expect(why({ phase: "running", loop: loop({ synced: false, firstStatePending: 3 }), sources: [file] })).toEqual(["the first desired state is being applied: 3 namespaces left"]);
    const rpc = { name: "neutron-rpc", health: { delivered: true, connected: false, detail: "not connected to the message broker" }, started: true };
    const report = readiness({ phase: "running", loop: loop(), sources: [rpc] });
    expect(report.reasons).toEqual(["state source neutron-rpc: not connected to the message broker"]);
    expect(report.sources).toEqual([{ name: "neutron-rpc", delivered: true, connected: false }]);
    expect(why({ phase: "running", loop: loop(), sources: [{ name: "x", health: { delivered: false, connected: false }, started: true }] })).toEqual(["state source x: nothing delivered yet, not connected"]);
    expect(why({ phase: "stopping", loop: loop({ state: "stopped" }), sources: [file] })).toEqual(["the agent is stopping"]);
  });
});

// ---- the agent serves them beside /metrics ----

function get(port: number, path: string): Promise<{ status: number; type: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, type: res.headers["content-type"], body }));
    });
    req.on("error", reject);
    req.end();
  });
}

/** A source that says whether it is connected, as the RPC sources do. */
class BrokerSource extends MemoryStateSource {
  connected = true;
  health(): StateSourceHealth {
    return { delivered: true, connected: this.connected, ...(this.connected ? {} : { detail: "not connected to the message broker" }) };
  }
}

const agents: Agent[] = [];
afterEach(async () => {
  for (const a of agents.splice(0)) await a.stop();
});

async function agentWith(source: StateSource, handler: ResourceHandler, extra: Partial<AgentConfig> = {}) {
  const plugin = createPlugin({
    name: "health-test",
    version: "1.2.3",
    framework: `^${FRAMEWORK_VERSION}`,
    register(env) {
      env.addExtension(resourceHandlerExtensionPoint, handler);
      env.addExtension(stateSourceExtensionPoint, source);
    },
  });
  const agent = await Agent.create({
    name: "test-agent",
    version: "9.8.7",
    config: config({ metrics_address: "127.0.0.1:0", ...extra }),
    plugins: [{ plugin }],
    runner: new FakeHost({ namespaces: ["ns-a"], variant: "legacy" }),
    logger: createLogger({ level: "silent", name: "test-agent" }),
  });
  agents.push(agent);
  return agent;
}

describe("Agent health endpoints", () => {
  it("/healthz and /readyz: 503 during the first sync and once a run is stuck, 200 after; build info and process metrics on /metrics", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { handler } = ruleSetHandler({ beforeReconcile: () => gate });
    const source = new BrokerSource(doc(rs("a", "ns-a", "-j ACCEPT")), { name: "broker" });
    const agent = await agentWith(source, handler as ResourceHandler, { stuck_after_seconds: 1 });
    const started = agent.start();
    await until(() => agent.metricsAddress !== undefined);
    const port = agent.metricsAddress!.port;

    // The first sync is held in the handler: alive, not ready.
    await sleep(100);
    let ready = await get(port, "/readyz");
    expect(ready.status).toBe(503);
    expect(ready.type).toBe("application/json; charset=utf-8");
    expect(JSON.parse(ready.body)).toMatchObject({ ok: false, reasons: ["the initial full sync has not finished"], synced: false });
    let live = await get(port, "/healthz");
    expect(live.status).toBe(200);
    expect(JSON.parse(live.body)).toMatchObject({ ok: true, runs: 1, stuckAfterSeconds: 1 });

    // Held past stuck_after_seconds: stuck.
    await sleep(1_050);
    live = await get(port, "/healthz");
    expect(live.status).toBe(503);
    expect(JSON.parse(live.body).reasons).toEqual([expect.stringMatching(/^stuck: the run of namespace ns-a has been in flight for \d+ s \(stuck_after_seconds: 1\)$/)]);

    release();
    await started;
    live = await get(port, "/healthz");
    expect(live.status).toBe(200);
    ready = await get(port, "/readyz");
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.body)).toEqual({ ok: true, reasons: [], phase: "running", synced: true, stateRead: true, sources: [{ name: "broker", delivered: true, connected: true }] });

    // The broker goes away: not ready, naming the source; alive still.
    source.connected = false;
    ready = await get(port, "/readyz");
    expect(ready.status).toBe(503);
    expect(JSON.parse(ready.body).reasons).toEqual(["state source broker: not connected to the message broker"]);
    expect((await get(port, "/healthz")).status).toBe(200);
    source.connected = true;
    expect((await get(port, "/readyz")).status).toBe(200);

    const metrics = await get(port, "/metrics");
    expect(metrics.body).toMatch(/^chainwarden_build_info\{app="test-agent",version="9\.8\.7",backend="legacy",plugins="health-test@1\.2\.3"\} 1$/m);
    expect(metrics.body).toMatch(/^process_cpu_user_seconds_total /m);
    expect(metrics.body).toMatch(/^nodejs_eventloop_lag_seconds /m);
    expect((await get(port, "/healthz?x=1")).status).toBe(200);
    expect((await get(port, "/health")).status).toBe(404);
  });
});
