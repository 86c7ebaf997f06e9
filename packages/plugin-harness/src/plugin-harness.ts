import { randomBytes } from "node:crypto";
import {
  Agent,
  applyObserverExtensionPoint,
  baseConfigSchema,
  createLogger,
  createPlugin,
  MemoryStateSource,
  stateSourceExtensionPoint,
  type AgentConfig,
  type AgentPlugin,
  type ApplyEvent,
  type StateDocument,
} from "@chainwarden/agent";
import { deleteNamespace, ExecaRunner, type HostRunner, type IpFamily } from "@chainwarden/core";
import { FakeHost } from "@chainwarden/testing";

/** A plugin to run, with its options (what its config entry would hold). */
export type HarnessPlugin = AgentPlugin<any, any> | { plugin: AgentPlugin<any, any>; options?: unknown };

/** Options of `PluginHarness.start`: the plugins, where their rules go, and the namespaces they name. */
export interface PluginHarnessOptions {
  /** The plugins under test, in the order an app would list them. */
  plugins: readonly HarnessPlugin[];
  /**
   * Where the rules go: `"fake"` (default), the honest fake of every tool (`FakeHost`, checked
   * against the real tools by @chainwarden/testing's contract suites), or `"kernel"`: the real
   * tools in network namespaces the harness creates and deletes (run as root).
   */
  host?: "fake" | "kernel";
  /**
   * The namespaces your resources name, by the names your test uses. On the kernel each gets a
   * unique real name (`harness.namespace(name)` gives it); on the fake the names are used as they are.
   */
  namespaces?: readonly string[];
  /** Framework config over the harness's defaults (wrap name `test-agent`, no resync, no coalescing, silent logs). */
  config?: Partial<AgentConfig>;
  /** iptables backend on the kernel (default: the one `iptables` is). */
  backend?: "nft" | "legacy" | "auto";
}

/** What one `apply` did: the namespace applies it caused, and their failures. */
export interface HarnessApply {
  events: ApplyEvent[];
  /** The failed applies' errors (empty when everything applied). */
  errors: Error[];
}

/**
 * Runs plugins the way an agent runs them — the real plugin loading, desired-state parsing,
 * reconcile loop, managers and applier — with the desired state handed over in code, on the fake
 * host or the real kernel. A test of a plugin is then: start, `apply` a state document, read what
 * the namespace's tables hold, `stop` (or `await using`).
 *
 * ```ts
 * await using h = await PluginHarness.start({ plugins: [myPlugin], namespaces: ["ns1"] });
 * await h.apply({ my_things: [{ id: "a", namespace: h.namespace("ns1"), ... }] });
 * expect(await h.rules("ns1")).toContain("-A test-agent-INPUT -j test-agent-my-a");
 * ```
 */
export class PluginHarness implements AsyncDisposable {
  private stopped = false;
  /** Every apply the agents reported (the harness's observer fills it). */
  private readonly applied: ApplyEvent[] = [];
  private agent!: Agent;
  private source!: MemoryStateSource;

  private constructor(
    private readonly options: PluginHarnessOptions,
    private readonly config: AgentConfig,
    /** Every tool, as the plugins see it (the fake or the execa runner). */
    readonly runner: HostRunner,
    /** The fake host when `host` is `"fake"` (to inspect devices, ipsets, injected failures). */
    readonly fake: FakeHost | undefined,
    private readonly names: ReadonlyMap<string, string>,
    private readonly created: readonly string[],
  ) {}

  /** A new agent process, as far as the plugins can tell: fresh plugins' state, the same host. */
  private async boot(document: StateDocument): Promise<void> {
    const source = new MemoryStateSource(document, { name: "harness" });
    const applied = this.applied;
    const harnessPlugin = createPlugin({
      name: "plugin-harness",
      version: "0.0.0",
      framework: "*",
      register(env) {
        env.addExtension(stateSourceExtensionPoint, source);
        env.addExtension(applyObserverExtensionPoint, { onApply: (e: ApplyEvent) => void applied.push(e) });
      },
    });
    this.agent = await Agent.create({
      name: "plugin-harness",
      version: "0.0.0",
      config: this.config,
      plugins: [...this.options.plugins.map((p) => ("plugin" in p ? p : { plugin: p })), { plugin: harnessPlugin }],
      runner: this.runner,
      logger: createLogger({ level: this.config.log_level, name: "plugin-harness" }),
    });
    this.source = source;
    await this.agent.start();
  }

  /**
   * Creates the namespaces (on the kernel), loads the plugins into a real `Agent` fed by an in-memory
   * state source, and starts it. If anything fails, the namespaces created so far are deleted and
   * the error (a plugin's registration or config error, a failed `ip netns add`) is rethrown.
   */
  static async start(options: PluginHarnessOptions): Promise<PluginHarness> {
    const onKernel = options.host === "kernel";
    const tag = randomBytes(3).toString("hex");
    const names = new Map((options.namespaces ?? []).map((n, i) => [n, onKernel ? `cwh${tag}${i}` : n] as const));
    const fake = onKernel ? undefined : new FakeHost({ namespaces: [...names.values()] });
    const runner: HostRunner = fake ?? new ExecaRunner({ backend: options.backend ?? "auto" });
    const created: string[] = [];
    const config = {
      ...baseConfigSchema.parse({ wrap_name: "test-agent", resync_interval: 0, coalesce_ms: 0, log_level: "silent" }),
      ...options.config,
    } as AgentConfig;
    try {
      if (onKernel) {
        for (const real of names.values()) {
          await runner.exec("ip", ["netns", "add", real]);
          created.push(real);
          await runner.exec("ip", ["link", "set", "lo", "up"], { namespace: real });
        }
      }
      const harness = new PluginHarness(options, config, runner, fake, names, created);
      await harness.boot({});
      return harness;
    } catch (err) {
      for (const ns of created) await deleteNamespace(runner, ns).catch(() => undefined);
      throw err;
    }
  }

  /** The real name of a namespace your test named (the same name on the fake). */
  namespace(name: string): string {
    const real = this.names.get(name);
    if (real === undefined) throw new Error(`the harness was not started with a namespace ${JSON.stringify(name)} (namespaces: ${[...this.names.keys()].join(", ") || "none"})`);
    return real;
  }

  /** Hands the agent a new desired state (the whole document) and waits until every namespace it touched is applied. */
  async apply(document: StateDocument): Promise<HarnessApply> {
    const from = this.applied.length;
    this.source.push(document);
    await this.agent.idle();
    const events = this.applied.slice(from);
    return { events, errors: events.flatMap((e) => (e.error ? [e.error] : [])) };
  }

  /**
   * Stops the agent and starts a new one with the same plugins on the same host and namespaces, as
   * when the agent's process restarts: the plugins remember nothing, the kernel (or the fake) keeps
   * what was applied. `document` is the first state the new agent reads; its start is awaited (the
   * first full pass). For what a plugin does with what an earlier run left: bad input after a
   * restart must remove nothing.
   */
  async restart(document: StateDocument): Promise<HarnessApply> {
    if (this.stopped) throw new Error("the harness was stopped");
    await this.agent.stop();
    const from = this.applied.length;
    await this.boot(document);
    await this.agent.idle();
    const events = this.applied.slice(from);
    return { events, errors: events.flatMap((e) => (e.error ? [e.error] : [])) };
  }

  /** `iptables-save` of a namespace your test named (IPv4 by default; one table if given). */
  async save(name: string, family: IpFamily = 4, table?: string): Promise<string> {
    return this.runner.save({ namespace: this.namespace(name), family }, table ? { table } : {});
  }

  /** The namespace's rules and chain declarations (`-A …`, `:chain …`) in one family, as lines. */
  async rules(name: string, family: IpFamily = 4, table?: string): Promise<string[]> {
    return (await this.save(name, family, table)).split("\n").filter((l) => l.startsWith("-A ") || l.startsWith(":"));
  }

  /** Stops the agent (rules stay, as when an agent stops) and deletes the namespaces the harness created. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    try {
      await this.agent.stop();
    } finally {
      for (const ns of this.created) await deleteNamespace(this.runner, ns).catch(() => undefined);
    }
  }

  /** `stop()`, for `await using`: the namespaces go even when the test throws. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
