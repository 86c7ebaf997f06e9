import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { get } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ExecaRunner } from "@chainwarden/core";
import { FakeHost } from "@chainwarden/testing";
import { container as globalContainer } from "tsyringe";
import { afterAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { MemoryStateSource } from "./memory-state-source.js";
import { AgentError, ExtensionPointClosedError, PluginError, type Problem } from "./agent-errors.js";
import { Agent, FRAMEWORK_VERSION, type AgentOptions } from "./agent.js";
import { createServiceToken } from "./service-token.js";
import { AgentMetrics } from "./agent-metrics.js";
import { baseConfigSchema, type AgentConfig } from "./config-schema.js";
import {
  applyObserverExtensionPoint,
  resourceHandlerExtensionPoint,
  stateSourceExtensionPoint,
  type ApplyEvent,
  type ParsedResources,
  type ReconcileContext,
  type ReconcileRequest,
  type ResourceHandler,
  type StateDocument,
  type StateSink,
  type StateSource,
} from "./extension-points.js";
import { createExtensionPoint } from "./extension-point.js";
import { createLogger } from "./logging.js";
import { createPlugin, type AgentPlugin, type PluginEnvironment } from "./plugin.js";

// ---- a small plugin: `test_chains: { id: [rules] }` → a wrapped filter chain per id, jumped to from INPUT

interface TestChain {
  id: string;
  rules: string[];
}

class TestChainHandler implements ResourceHandler<TestChain> {
  readonly kind = "test_chain";
  readonly documentKeys = ["test_chains"];
  readonly reconciled: ReconcileRequest<TestChain>[] = [];

  parse(document: StateDocument, origin: string): ParsedResources<TestChain> {
    const resources = new Map<string, TestChain>();
    const problems: Problem[] = [];
    const chains = (document.test_chains ?? {}) as Record<string, unknown>;
    for (const [id, rules] of Object.entries(chains)) {
      if (Array.isArray(rules) && rules.every((r) => typeof r === "string")) resources.set(id, { id, rules });
      else problems.push({ source: origin, path: `test_chains.${id}`, resource: id, message: "expected a list of rules" });
    }
    return { resources, problems };
  }

  namespaceOf(): string | undefined {
    return undefined;
  }

  async reconcile(context: ReconcileContext, request: ReconcileRequest<TestChain>): Promise<void> {
    this.reconciled.push(request);
    const filter = context.manager().table(4, "filter");
    for (const id of request.removed.keys()) filter.removeChain(`tc-${id}`);
    for (const [id, chain] of request.desired) {
      filter.removeChain(`tc-${id}`);
      filter.addChain(`tc-${id}`);
      for (const rule of chain.rules) filter.addRule(`tc-${id}`, rule);
      filter.addRule("INPUT", `-j $tc-${id}`);
    }
  }
}

/** The agent's MemoryStateSource, counting starts and stops, optionally failing to start. */
class MemorySource extends MemoryStateSource {
  started = 0;
  stopped = 0;
  constructor(
    document: StateDocument,
    private readonly failStart = false,
  ) {
    super(document);
  }
  override async start(sink: StateSink): Promise<void> {
    this.started++;
    if (this.failStart) throw new Error("memory source unavailable");
    await super.start(sink);
  }
  override async stop(): Promise<void> {
    this.stopped++;
    await super.stop();
  }
}

interface Greeter {
  readonly greeting: string;
  readonly config: Readonly<AgentConfig>;
  readonly metrics: AgentMetrics;
  readonly runner: unknown;
}
const GREETER = createServiceToken<Greeter>({ id: "test-chains.greeter" });

function chainPlugin(options: { handler?: TestChainHandler; source?: StateSource; events?: ApplyEvent[] } = {}) {
  return createPlugin<{ greeting: string }>({
    name: "test-chains",
    version: "1.0.0",
    framework: `^${FRAMEWORK_VERSION}`,
    options: z.strictObject({ greeting: z.string().default("hello") }),
    async register(env) {
      await Promise.resolve(); // register may be async
      env.provide(GREETER, { greeting: env.options.greeting, config: env.config, metrics: env.metrics, runner: env.runner });
      env.addExtension(resourceHandlerExtensionPoint, (options.handler ?? new TestChainHandler()) as ResourceHandler);
      if (options.source) env.addExtension(stateSourceExtensionPoint, options.source);
      if (options.events) env.addExtension(applyObserverExtensionPoint, { onApply: (e) => void options.events?.push(e) });
      env.logger.info({ greeting: env.options.greeting }, "test plugin registered");
    },
  });
}

function bare(name: string, extra: Partial<AgentPlugin<never>> = {}): AgentPlugin<never> {
  return { name, version: "1.0.0", framework: `^${FRAMEWORK_VERSION}`, register: () => undefined, ...extra } as AgentPlugin<never>;
}

function capture() {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({ level: "debug", name: "test-agent", destination: { write: (m: string) => void lines.push(JSON.parse(m) as Record<string, unknown>) } });
  return { lines, logger };
}

function config(extra: Record<string, unknown> = {}): AgentConfig {
  return baseConfigSchema.parse({ wrap_name: "test-agent", resync_interval: 0, coalesce_ms: 0, ...extra });
}

function options(plugins: AgentOptions["plugins"], extra: Partial<AgentOptions> = {}): AgentOptions {
  return {
    name: "test-agent",
    version: "0.0.1",
    config: config(),
    plugins,
    runner: new FakeHost(),
    logger: capture().logger,
    ...extra,
  };
}

async function createError(opts: AgentOptions): Promise<PluginError> {
  const err = await Agent.create(opts).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PluginError);
  return err as PluginError;
}

const dir = mkdtempSync(join(tmpdir(), "chainwarden-agent-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("Agent.create", () => {
  it("registers a plugin: its handler and providers are resolvable from the agent's container", async () => {
    const { lines, logger } = capture();
    const handler = new TestChainHandler();
    const agent = await Agent.create(options([{ plugin: chainPlugin({ handler }) }], { logger, config: config({ plugin_options: { "test-chains": { greeting: "hi" } } }) }));

    expect(agent.extensions(resourceHandlerExtensionPoint)).toEqual([handler]);
    expect(agent.contributionsTo(resourceHandlerExtensionPoint)).toEqual([{ plugin: "test-chains", extension: handler }]);
    expect(agent.plugins).toEqual([{ name: "test-chains", version: "1.0.0", source: "built into test-agent" }]);
    // The plugin's logger is bound to its name; its options came from plugin_options.
    expect(lines).toContainEqual(expect.objectContaining({ plugin: "test-chains", greeting: "hi", msg: "test plugin registered" }));
  });

  it("gives a plugin typed services: the agent's config, metrics and runner, and what an earlier plugin provides", async () => {
    let seen: Greeter | undefined;
    const user = createPlugin({ name: "greeter-user", version: "1.0.0", framework: `^${FRAMEWORK_VERSION}`, register: (env) => void (seen = env.use(GREETER)) });
    const agent = await Agent.create(options([{ plugin: chainPlugin() }, { plugin: user }]));
    expect(seen).toEqual({ greeting: "hello", config: agent.config, metrics: agent.metrics, runner: agent.runner });
    expect(seen!.metrics).toBe(agent.metrics);
    expect(seen!.runner).toBe(agent.runner);

    // Used before anyone provides it: an error naming the plugin and the service.
    const early = await createError(options([{ plugin: user }, { plugin: chainPlugin() }]));
    expect(early.message).toBe("plugin greeter-user (built into test-agent) failed to register: plugin greeter-user uses service test-chains.greeter, which no plugin registered before it provides (list the plugin that provides it first)");
    // Provided twice.
    const twice = createPlugin({ name: "other-greeter", version: "1.0.0", framework: `^${FRAMEWORK_VERSION}`, register: (env) => env.provide(GREETER, seen!) });
    expect((await createError(options([{ plugin: chainPlugin() }, { plugin: twice }]))).message).toContain("service test-chains.greeter is provided by plugin test-chains and by plugin other-greeter");
  });

  it("gives a built-in plugin its settings (defaults applied); a plugin loaded by package may not declare settings", async () => {
    let got: unknown;
    const withSettings = createPlugin({
      name: "tuned",
      version: "1.0.0",
      framework: `^${FRAMEWORK_VERSION}`,
      settings: { keys: { tuning: z.number().int().default(3), label: z.string().optional() } },
      register: (env) => void (got = env.settings),
    });
    await Agent.create(options([{ plugin: withSettings }], { config: { ...config(), label: "x" } }));
    expect(got).toEqual({ tuning: 3, label: "x" });
    const fromPackage = await createError(options([{ plugin: withSettings, source: "@acme/tuned" }]));
    expect(fromPackage.code).toBe("PLUGIN_INVALID");
    expect(fromPackage.message).toContain("plugin tuned (@acme/tuned) declares settings");
    const bad = await createError(options([{ plugin: withSettings }], { config: { ...config(), tuning: "many" } }));
    expect(bad.code).toBe("PLUGIN_OPTIONS");
    expect(bad.message).toMatch(/^invalid settings for plugin tuned \(1 problem\):\n {2}- tuning: /);
  });

  it("returns no extensions for a point nobody extended", async () => {
    const agent = await Agent.create(options([{ plugin: bare("quiet") }]));
    expect(agent.extensions(applyObserverExtensionPoint)).toEqual([]);
    expect(agent.extensions(createExtensionPoint<string>({ id: "test.unused" }))).toEqual([]);
  });

  it("never registers anything in tsyringe's global container", async () => {
    const a = await Agent.create(options([{ plugin: chainPlugin() }]));
    const b = await Agent.create(options([{ plugin: chainPlugin() }]));
    for (const token of [GREETER.token, resourceHandlerExtensionPoint.token]) {
      expect(globalContainer.isRegistered(token, true)).toBe(false);
    }
    // Each agent sees only its own.
    expect(a.extensions(resourceHandlerExtensionPoint)).toHaveLength(1);
    expect(b.extensions(resourceHandlerExtensionPoint)).toHaveLength(1);
    expect(a.extensions(resourceHandlerExtensionPoint)[0]).not.toBe(b.extensions(resourceHandlerExtensionPoint)[0]);
    expect(a.metrics).not.toBe(b.metrics);
  });

  it("defaults to an ExecaRunner and a logger at the configured level", async () => {
    const agent = await Agent.create({ name: "test-agent", version: "0", config: config({ log_level: "error", backend: "legacy" }), plugins: [] });
    expect(agent.runner).toBeInstanceOf(ExecaRunner);
    expect(agent.logger.level).toBe("error");
  });

  it("rejects a value that is not a plugin", async () => {
    const err = await createError(options([{ plugin: 42 as unknown as AgentPlugin, source: "@acme/broken" }]));
    expect(err.code).toBe("PLUGIN_INVALID");
    expect(err.message).toBe("plugin #1 (@acme/broken) is not a valid plugin: expected a plugin object, got number 42");
    const shape = await createError(options([{ plugin: { name: "Bad_Name", version: "1", framework: "not a range" } as unknown as AgentPlugin }]));
    expect(shape.message).toMatch(/plugin Bad_Name \(built into test-agent\) is not a valid plugin: name must be a kebab-case string .*; framework must be a semver range .*; register must be a function/);
  });

  it("rejects a resource handler that does not say which state keys it reads", async () => {
    const handler = { kind: "thing", parse: () => ({ resources: new Map(), problems: [] }), namespaceOf: () => undefined, reconcile: async () => undefined };
    const plugin = bare("things", { register: (env) => env.addExtension(resourceHandlerExtensionPoint, handler as unknown as ResourceHandler) });
    const err = await createError(options([{ plugin, source: "@acme/things" }]));
    expect(err.code).toBe("PLUGIN_REGISTER");
    expect(err.message).toContain('plugin things added a resource handler for kind "thing" without documentKeys');
  });

  it("rejects two plugins with one name, naming both sources", async () => {
    const err = await createError(options([{ plugin: bare("audit") }, { plugin: bare("audit"), source: "@acme/audit" }]));
    expect(err.code).toBe("PLUGIN_DUPLICATE");
    expect(err.plugin).toBe("audit");
    expect(err.message).toBe("two plugins are named audit: one built into test-agent, one from @acme/audit");
  });

  it("rejects a plugin built for another framework major", async () => {
    const err = await createError(options([{ plugin: bare("future", { framework: "^1.0.0", version: "3.1.0" }), source: "@acme/future" }]));
    expect(err.code).toBe("PLUGIN_INCOMPATIBLE");
    expect(err.message).toBe(`plugin future 3.1.0 (@acme/future) needs @chainwarden/agent ^1.0.0, but this is ${FRAMEWORK_VERSION}`);
  });

  it("rejects options that do not match the plugin's schema, listing every issue", async () => {
    const plugin = createPlugin<{ level: number; targets: string[] }>({
      name: "audit",
      version: "1.0.0",
      framework: `^${FRAMEWORK_VERSION}`,
      options: z.strictObject({ level: z.number().int().max(3), targets: z.array(z.string()) }),
      register: () => undefined,
    });
    const err = await createError(options([{ plugin, options: { level: 7, targets: ["a", 1], colour: "red", targts: [] }, source: "@acme/audit" }]));
    expect(err.code).toBe("PLUGIN_OPTIONS");
    expect(err.message).toMatch(/^invalid options for plugin audit \(@acme\/audit\) in its plugins entry \(4 problems\):\n/);
    expect(err.message).toMatch(/ {2}- level: .*<=3/);
    expect(err.message).toMatch(/ {2}- targets\.1: .*expected string/);
    expect(err.message).toContain("  - colour: unknown key\n");
    expect(err.message).toContain("  - targts: unknown key; did you mean targets?");

    // A default plugin's options come from plugin_options.
    const fromConfig = await createError(options([{ plugin }], { config: config({ plugin_options: { audit: { level: 1 } } }) }));
    expect(fromConfig.message).toMatch(/in plugin_options\.audit \(1 problem\):\n {2}- targets: /);
  });

  it("rejects options for a plugin without a schema, and plugin_options for no plugin", async () => {
    const err = await createError(options([{ plugin: bare("quiet"), options: { verbose: true } }]));
    expect(err.code).toBe("PLUGIN_OPTIONS");
    expect(err.message).toBe("plugin quiet (built into test-agent) takes no options, but its plugins entry has keys verbose");
    const unknown = await createError(options([{ plugin: bare("quiet") }], { config: config({ plugin_options: { qiuet: {} } }) }));
    expect(unknown.code).toBe("PLUGIN_OPTIONS");
    expect(unknown.message).toBe("plugin_options.qiuet names no installed plugin (installed: quiet)");
    // Empty options are no options.
    await expect(Agent.create(options([{ plugin: bare("quiet"), options: {} }]))).resolves.toBeInstanceOf(Agent);
  });

  it("wraps a register that throws, with the cause", async () => {
    const boom = new Error("no such device qg-1");
    const err = await createError(options([{ plugin: bare("fragile", { register: () => Promise.reject(boom) }), source: "@acme/fragile" }]));
    expect(err.code).toBe("PLUGIN_REGISTER");
    expect(err.message).toBe("plugin fragile (@acme/fragile) failed to register: no such device qg-1");
    expect(err.cause).toBe(boom);
  });

  it("rejects two handlers for one resource kind, naming both plugins", async () => {
    const second = createPlugin({
      name: "other-chains",
      version: "1.0.0",
      framework: `^${FRAMEWORK_VERSION}`,
      register: (env) => env.addExtension(resourceHandlerExtensionPoint, new TestChainHandler() as ResourceHandler),
    });
    const err = await createError(options([{ plugin: chainPlugin() }, { plugin: second }]));
    expect(err.code).toBe("PLUGIN_REGISTER");
    expect(err.message).toMatch(/plugin other-chains .* kind "test_chain", which plugin test-chains already handles/);
  });

  it("closes the extension points when create returns: a late addExtension throws naming the plugin", async () => {
    let saved: PluginEnvironment<Record<string, never>> | undefined;
    const agent = await Agent.create(options([{ plugin: bare("late", { register: (env: PluginEnvironment<never>) => void (saved = env) }) }]));
    let err: unknown;
    try {
      saved?.addExtension(applyObserverExtensionPoint, { onApply: () => undefined });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ExtensionPointClosedError);
    expect(err).toBeInstanceOf(AgentError);
    expect((err as ExtensionPointClosedError).code).toBe("EXTENSION_POINT_CLOSED");
    expect((err as ExtensionPointClosedError).plugin).toBe("late");
    expect((err as Error).message).toMatch(/^plugin late added an extension to agent\.apply-observer after the agent started/);
    expect(agent.extensions(applyObserverExtensionPoint)).toEqual([]);
  });
});

describe("Agent run modes (real reconcile loop, fake iptables)", () => {
  it("applyOnce: reads the sources, applies, reports, tells the observers, stops the sources", async () => {
    const host = new FakeHost({ variant: "nft" });
    const runner = host.iptables;
    const source = new MemorySource({ test_chains: { a: ["-s 10.0.0.1/32 -j ACCEPT"] } });
    const events: ApplyEvent[] = [];
    const agent = await Agent.create(options([{ plugin: chainPlugin({ source, events }) }], { runner: host }));
    const report = await agent.applyOnce();
    expect(report).toMatchObject({ namespaces: 1, applied: 1, failed: [], problems: [] });
    expect(runner.rules({ family: 4 }, "filter", "test-agent-tc-a")).toEqual(["-s 10.0.0.1/32 -j ACCEPT"]);
    expect(runner.rules({ family: 4 }, "filter", "test-agent-INPUT")).toEqual(["-j test-agent-tc-a"]);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ namespace: undefined, resources: ["test_chain/a"], full: true });
    expect([source.started, source.stopped]).toEqual([1, 1]);

    // Nothing left to send: plan is empty and status in sync.
    const plans = (await agent.plan()).namespaces;
    expect(plans).toHaveLength(1);
    expect(plans[0]?.resources).toEqual(["test_chain/a"]);
    expect(plans[0]?.families.every((f) => f.lines === 0)).toBe(true);
    const status = (await agent.status()).namespaces;
    expect(status[0]).toMatchObject({ namespace: undefined, inSync: true, pendingLines: 0 });
    expect([source.started, source.stopped]).toEqual([3, 3]);
  });

  it("plan on a fresh host shows what would be sent and changes nothing", async () => {
    const host = new FakeHost({ variant: "nft" });
    const runner = host.iptables;
    const source = new MemorySource({ test_chains: { a: ["-s 10.0.0.1/32 -j ACCEPT"] } });
    const agent = await Agent.create(options([{ plugin: chainPlugin({ source }) }], { runner: host }));
    const [plan] = (await agent.plan()).namespaces;
    expect(plan?.families.map((f) => f.input).join("\n")).toContain("-A test-agent-tc-a -s 10.0.0.1/32 -j ACCEPT");
    expect(runner.restoreCalls).toEqual([]);
  });

  it("puts resources without a namespace into defaultNamespace", async () => {
    const host = new FakeHost({ variant: "nft", namespaces: ["qdhcp-1"] });
    const runner = host.iptables;
    const source = new MemorySource({ test_chains: { a: ["-j DROP"] } });
    const agent = await Agent.create(options([{ plugin: chainPlugin({ source }) }], { runner: host, defaultNamespace: "qdhcp-1" }));
    expect(await agent.applyOnce()).toMatchObject({ applied: 1, failed: [] });
    expect(runner.rules({ family: 4, namespace: "qdhcp-1" }, "filter", "test-agent-tc-a")).toEqual(["-j DROP"]);
    expect(runner.rules({ family: 4 }, "filter", "test-agent-tc-a")).toBeUndefined();
  });

  it("reads config.state with the default file source", async () => {
    const state = join(dir, "state.yaml");
    writeFileSync(state, "test_chains:\n  f:\n    - -p tcp -m tcp --dport 22 -j ACCEPT\n");
    const host = new FakeHost({ variant: "legacy" });
    const runner = host.iptables;
    const agent = await Agent.create(options([{ plugin: chainPlugin() }], { runner: host, config: config({ state }) }));
    expect(await agent.applyOnce()).toMatchObject({ applied: 1, failed: [] });
    expect(runner.rules({ family: 4 }, "filter", "test-agent-tc-f")).toEqual(["-p tcp -m tcp --dport 22 -j ACCEPT"]);
  });

  it("start → changes applied as they arrive → stop; serves metrics while running", async () => {
    const host = new FakeHost({ variant: "nft" });
    const runner = host.iptables;
    const source = new MemorySource({ test_chains: { a: ["-j ACCEPT"] } });
    const agent = await Agent.create(options([{ plugin: chainPlugin({ source }) }], { runner: host, config: config({ metrics_address: "127.0.0.1:0" }) }));
    expect(await agent.start()).toMatchObject({ namespaces: 1, applied: 1 });
    await expect(agent.applyOnce()).rejects.toThrow(/is running/);

    source.push({ test_chains: { a: ["-j ACCEPT"], b: ["-j DROP"] } });
    await agent.idle();
    expect(runner.rules({ family: 4 }, "filter", "test-agent-tc-b")).toEqual(["-j DROP"]);

    const address = agent.metricsAddress;
    expect(address).toMatchObject({ address: "127.0.0.1" });
    const body = await new Promise<string>((resolve, reject) => {
      get({ host: "127.0.0.1", port: address?.port, path: "/metrics", agent: false }, (res) => {
        let text = "";
        res.setEncoding("utf8").on("data", (c: string) => (text += c)).on("end", () => resolve(text));
      }).on("error", reject);
    });
    expect(body).toMatch(/chainwarden_apply_duration_seconds_count\{kind="full"\} 1/);
    expect(body).toContain("chainwarden_restore_calls_total");

    await agent.stop();
    expect(source.stopped).toBe(1);
    expect(agent.metricsAddress).toBeUndefined();
    await expect(
      new Promise((resolve, reject) => get({ host: "127.0.0.1", port: address?.port, path: "/metrics", agent: false }, resolve).on("error", reject)),
    ).rejects.toThrow(/ECONNREFUSED/);
    // Rules stay after stop.
    expect(runner.rules({ family: 4 }, "filter", "test-agent-tc-a")).toEqual(["-j ACCEPT"]);
    await agent.stop(); // idempotent
  });

  it("stop during the first sync lets the apply in flight finish", async () => {
    const host = new FakeHost({ variant: "nft" });
    const runner = host.iptables;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const handler = new TestChainHandler();
    const reconcile = handler.reconcile.bind(handler);
    handler.reconcile = async (context, request) => {
      await gate;
      await reconcile(context, request);
    };
    const source = new MemorySource({ test_chains: { a: ["-j ACCEPT"] } });
    const agent = await Agent.create(options([{ plugin: chainPlugin({ handler, source }) }], { runner: host }));
    const started = agent.start();
    await new Promise((r) => setTimeout(r, 20));
    const stopped = agent.stop();
    release();
    await expect(started).resolves.toMatchObject({ applied: 1 });
    await stopped;
    expect(source.stopped).toBe(1);
    expect(runner.rules({ family: 4 }, "filter", "test-agent-tc-a")).toEqual(["-j ACCEPT"]);
    // Stopped and idle: the agent can run again.
    expect(await agent.applyOnce()).toMatchObject({ applied: 1 });
  });

  it("a source that fails to start fails start(), and the others are stopped", async () => {
    const good = new MemorySource({});
    const bad = new MemorySource({}, true);
    const plugin = createPlugin({
      name: "sources",
      version: "1.0.0",
      framework: `^${FRAMEWORK_VERSION}`,
      register(env) {
        env.addExtension(stateSourceExtensionPoint, good);
        env.addExtension(stateSourceExtensionPoint, bad);
      },
    });
    const { lines, logger } = capture();
    const agent = await Agent.create(options([{ plugin }], { logger }));
    await expect(agent.start()).rejects.toThrow("memory source unavailable");
    expect(good.stopped).toBe(1);
    expect(lines).toContainEqual(expect.objectContaining({ msg: "state source failed to start", plugin: "sources", stateSource: "memory" }));
    // The agent can be used again.
    await expect(agent.applyOnce()).rejects.toThrow("memory source unavailable");
  });
});
