import "reflect-metadata";
import { createRequire } from "node:module";
import { ExecaRunner, type HostRunner } from "@chainwarden/core";
import type { Logger } from "pino";
import semver from "semver";
import { container as rootContainer, type DependencyContainer } from "tsyringe";
import { AgentError, ExtensionPointClosedError, PluginError } from "./agent-errors.js";
import { AgentMetrics } from "./agent-metrics.js";
import type { AgentConfig } from "./config-schema.js";
import { isExtensionPoint, type ExtensionPoint } from "./extension-point.js";
import { applyObserverExtensionPoint, resourceHandlerExtensionPoint, stateSourceExtensionPoint, type StateSource } from "./extension-points.js";
import { FileStateSource } from "./file-state-source.js";
import { createLogger } from "./logging.js";
import { didYouMean } from "./near-miss.js";
import { NeutronConfig } from "./neutron-config.js";
import { serveMetrics, type MetricsServer } from "./metrics-server.js";
import { liveness, readiness, type HealthChecks, type HealthView } from "./agent-health.js";
import { pluginSettings } from "./agent-config.js";
import type { AgentPlugin, PluginEnvironment } from "./plugin.js";
import { isServiceToken, type ServiceToken } from "./service-token.js";
import type { PlanReport, StatusReport, SyncReport } from "./loop-reports.js";
import { ManagerFlavours, managerNeedsProblems, type ManagerDefaults } from "./manager-flavours.js";
import { ReconcileLoop } from "./reconcile-loop.js";

/** The agent's own services in its container (internal: plugins get them typed, in their environment). */
const AGENT_CONFIG: symbol = Symbol.for("@chainwarden/agent/config");
const AGENT_LOGGER: symbol = Symbol.for("@chainwarden/agent/logger");
const IPTABLES_RUNNER: symbol = Symbol.for("@chainwarden/agent/iptables-runner");
const AGENT_METRICS: symbol = Symbol.for("@chainwarden/agent/metrics");

/** The version of this framework, which plugins' `framework` ranges are checked against. */
export const FRAMEWORK_VERSION: string = (createRequire(import.meta.url)("../package.json") as { version: string }).version;

/** One plugin to install, with its options and where it came from. */
export interface AgentPluginEntry {
  // `any`: each plugin has its own options and settings types; the agent checks them with the plugin's schemas.
  plugin: AgentPlugin<any, any>;
  /** Options from the plugin's config entry; a default plugin's come from `config.plugin_options[name]`. */
  options?: unknown;
  /** For messages: the npm package, or the app for its built-in plugins. */
  source?: string;
}

/** What an agent is made of: its name and version, its config, its plugins, and what it runs commands with. */
export interface AgentOptions {
  /** The agent's name, e.g. `l3-agent`. */
  name: string;
  /** The app's version. */
  version: string;
  /** Already validated (`loadConfig`). */
  config: AgentConfig;
  /** The app's default plugins first, then those the config names (`loadPluginsFromConfig`). */
  plugins: readonly AgentPluginEntry[];
  /** Default: an `ExecaRunner` with the configured backend and lock wait. */
  runner?: HostRunner;
  /** Default: `createLogger` at the configured level. */
  logger?: Logger;
  /** Namespace for resources whose handler names none; default: the config's `netns`. */
  defaultNamespace?: string;
  /** Neutron's config files the agent was started with (`env.neutron`); default: none. */
  neutron?: NeutronConfig;
  /**
   * The app's flavour for its managers (`AgentApp.managerDefaults`): what `context.manager()` gives
   * a handler that names no options, for every wrap name no handler declares otherwise
   * (`ResourceHandler.managers`). Default: stateful, with nat (the l3 agent's).
   */
  managerDefaults?: ManagerDefaults;
}

/** A plugin as installed, for `status` and `--version` output. */
export interface InstalledPlugin {
  readonly name: string;
  readonly version: string;
  readonly source: string;
}

/** An extension with the plugin that added it. */
export interface Contribution<T> {
  readonly plugin: string;
  readonly extension: T;
}

/** One `start()` .. `stop()`. */
interface Run {
  loop: ReconcileLoop;
  /** Every state source of the run (for `/readyz`), and those whose `start` resolved. */
  candidates: readonly StateSource[];
  startedSources: Set<StateSource>;
  /** The sources to stop (all of them, once they all started). */
  sources: StateSource[];
  metricsServer: MetricsServer | undefined;
  /** Settles true once sources and metrics endpoint are up, false if they failed. */
  ready: Promise<boolean>;
  stopping: Promise<void> | undefined;
}

type Activity = "idle" | "starting" | "running" | "stopping" | "one-shot";

const PLUGIN_NAME = /^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$/;

/**
 * One agent: its own tsyringe container, the plugins installed into it, and the run modes the CLI
 * offers (`start`/`stop` for the daemon, `applyOnce`, `plan`, `status`).
 *
 * Lifecycle. `Agent.create` checks every plugin before any runs (shape, unique names, framework
 * range, options against the plugin's schema), then runs each `register` in order. When it
 * returns the extension points are closed: the set of handlers, observers and state sources is
 * fixed, and a late `addExtension` throws `ExtensionPointClosedError` naming the plugin. `start`
 * builds the reconcile loop from the extensions, starts the state sources with the loop as their
 * sink, serves metrics, and runs the first full sync. `stop` stops the sources, lets the apply in
 * flight finish and leaves the rules in place.
 *
 * Containers. Each agent has a child of tsyringe's root container and registers only there; the
 * global container is never written, so two agents (or tests) in one process cannot see each
 * other's services or extensions.
 */
export class Agent {
  /** The version of this framework (see `FRAMEWORK_VERSION`). */
  static readonly frameworkVersion = FRAMEWORK_VERSION;

  readonly name: string;
  readonly version: string;
  readonly config: AgentConfig;
  readonly logger: Logger;
  readonly runner: HostRunner;
  readonly metrics: AgentMetrics;
  /** The agent's own container: extensions and services live here; plugins see typed services only. */
  private readonly container: DependencyContainer;
  /** Which plugin provided each service (for messages). */
  private readonly providers = new Map<symbol, string>();
  readonly plugins: readonly InstalledPlugin[];
  private readonly defaultNamespace: string | undefined;
  private readonly managerDefaults: ManagerDefaults | undefined;
  private readonly contributions = new Map<symbol, Contribution<unknown>[]>();
  private closed = false;
  private activity: Activity = "idle";
  private running: Run | undefined;

  private constructor(options: AgentOptions, plugins: readonly InstalledPlugin[]) {
    this.name = options.name;
    this.version = options.version;
    this.config = options.config;
    this.logger = options.logger ?? createLogger({ level: options.config.log_level, name: options.name, format: options.config.log_format, time: options.config.log_time });
    this.runner = options.runner ?? new ExecaRunner({ backend: options.config.backend, lockWaitSeconds: options.config.lock_wait_seconds });
    this.metrics = new AgentMetrics();
    this.defaultNamespace = options.defaultNamespace ?? options.config.netns;
    this.managerDefaults = options.managerDefaults;
    this.plugins = plugins;
    this.container = rootContainer.createChildContainer();
    this.container.register(AGENT_CONFIG, { useValue: this.config });
    this.container.register(AGENT_LOGGER, { useValue: this.logger });
    this.container.register(IPTABLES_RUNNER, { useValue: this.runner });
    this.container.register(AGENT_METRICS, { useValue: this.metrics });
  }

  /**
   * Checks and registers the plugins.
   * @throws PluginError (`PLUGIN_INVALID`, `PLUGIN_DUPLICATE`, `PLUGIN_INCOMPATIBLE`,
   *   `PLUGIN_OPTIONS`, `PLUGIN_REGISTER`) naming the plugin and where it came from;
   *   `PLUGIN_INVALID` also when two plugins' resource handlers need one manager with different
   *   options (`ResourceHandler.managers`), naming both.
   */
  static async create(options: AgentOptions): Promise<Agent> {
    const checked = await checkPlugins(options);
    const agent = new Agent(
      options,
      checked.map(({ plugin, source }) => ({ name: plugin.name, version: plugin.version, source })),
    );
    for (const { plugin, source, options: pluginOptions, settings } of checked) {
      const name = plugin.name;
      const env: PluginEnvironment<unknown, Record<string, unknown>> = {
        plugin: name,
        options: pluginOptions,
        settings,
        config: agent.config,
        neutron: options.neutron ?? NeutronConfig.none,
        logger: agent.logger.child({ plugin: name }),
        metrics: agent.metrics,
        runner: agent.runner,
        addExtension: (point, extension) => agent.addExtension(name, point, extension),
        extensions: (point) => agent.extensions(point),
        provide: (service, value) => agent.provide(name, service, value),
        use: (service) => agent.use(name, service),
      };
      try {
        await plugin.register(env);
      } catch (err) {
        throw new PluginError("PLUGIN_REGISTER", `plugin ${name} (${source}) failed to register: ${errorMessage(err)}`, name, { cause: err });
      }
      agent.logger.debug({ plugin: name, version: plugin.version, source }, "plugin registered");
    }
    agent.closed = true;
    // Every handler is known now: managers with different needs are refused before anything runs.
    agent.managerFlavours();
    return agent;
  }

  /** Every extension added to the point, in registration order (empty when none). */
  extensions<T>(point: ExtensionPoint<T>): T[] {
    // resolveAll throws when nothing is registered under the token.
    return this.container.isRegistered(point.token) ? this.container.resolveAll<T>(point.token) : [];
  }

  private provide<T>(plugin: string, service: ServiceToken<T>, value: T): void {
    if (!isServiceToken(service)) throw new PluginError("PLUGIN_REGISTER", `plugin ${plugin} called provide with something that is not a service token`, plugin);
    if (this.closed) throw new PluginError("PLUGIN_REGISTER", `plugin ${plugin} provided service ${service.id} after the agent started; provide in register()`, plugin);
    const earlier = this.providers.get(service.token);
    if (earlier !== undefined) throw new PluginError("PLUGIN_REGISTER", `service ${service.id} is provided by plugin ${earlier} and by plugin ${plugin}`, plugin);
    this.providers.set(service.token, plugin);
    this.container.register(service.token, { useValue: value });
  }

  private use<T>(plugin: string, service: ServiceToken<T>): T {
    if (!isServiceToken(service) || !this.providers.has(service.token)) {
      const id = isServiceToken(service) ? service.id : String(service);
      throw new PluginError("PLUGIN_REGISTER", `plugin ${plugin} uses service ${id}, which no plugin registered before it provides (list the plugin that provides it first)`, plugin);
    }
    return this.container.resolve<T>(service.token);
  }

  /** The extensions added through `addExtension`, each with the plugin that added it. */
  contributionsTo<T>(point: ExtensionPoint<T>): readonly Contribution<T>[] {
    return (this.contributions.get(point.token) ?? []) as Contribution<T>[];
  }

  /**
   * Runs the daemon: serves metrics and health (when `metrics_address` is set), starts the state
   * sources and the reconcile loop, whose first full sync this resolves with. Later changes are
   * applied as the sources deliver them, plus a full resync on a timer. The endpoint comes first so
   * that `/healthz` answers while a source waits for neutron-server.
   */
  async start(): Promise<SyncReport> {
    this.enter("starting");
    let markReady!: (ok: boolean) => void;
    const loop = this.createLoop();
    const run: Run = {
      loop,
      candidates: this.stateSources(),
      startedSources: new Set(),
      sources: [],
      metricsServer: undefined,
      ready: new Promise<boolean>((r) => (markReady = r)),
      stopping: undefined,
    };
    this.running = run;
    try {
      if (this.config.metrics_address !== undefined) {
        this.metrics.collectProcessMetrics();
        const backend = await this.runner.backend().catch(() => this.config.backend);
        this.metrics.setBuildInfo({ app: this.name, version: this.version, backend, plugins: this.plugins });
        run.metricsServer = await serveMetrics(this.metrics, this.config.metrics_address, this.logger.child({ component: "metrics" }), this.healthChecks(run));
      }
      run.sources = await this.startSources(loop, run.candidates, run.startedSources);
    } catch (err) {
      markReady(false);
      await this.teardown(run);
      throw err;
    }
    // From here stop() may run (a signal during the first sync); it tears this run down.
    this.activity = "running";
    markReady(true);
    try {
      const report = await run.loop.start();
      this.logger.info(
        { namespaces: report.namespaces, applied: report.applied, failed: report.failed.length, problems: report.problems.length },
        "agent started",
      );
      return report;
    } catch (err) {
      run.stopping ??= this.teardown(run);
      await run.stopping;
      throw err;
    }
  }

  /** Stops the sources, lets the apply in flight finish, closes the metrics endpoint. Rules stay. */
  async stop(): Promise<void> {
    const run = this.running;
    if (!run) return;
    // A stop during start waits until the sources and metrics endpoint are up (or failed).
    if (!(await run.ready)) return;
    run.stopping ??= this.teardown(run).then(() => this.logger.info({}, "agent stopped"));
    await run.stopping;
  }

  private async teardown(run: Run): Promise<void> {
    this.activity = "stopping";
    try {
      await this.stopSources(run.sources);
      await run.loop.stop().catch((err: unknown) => this.logger.error({ err }, "stopping reconcile loop failed"));
      await run.metricsServer?.close().catch((err: unknown) => this.logger.error({ err }, "closing metrics server failed"));
    } finally {
      if (this.running === run) this.running = undefined;
      this.activity = "idle";
    }
  }

  /** `/healthz` and `/readyz` of a run (see `liveness` and `readiness`). */
  private healthChecks(run: Run): HealthChecks {
    const view = (): HealthView => ({
      phase: this.running !== run || this.activity === "stopping" ? "stopping" : this.activity === "running" ? "running" : "starting",
      loop: run.loop.health(),
      sources: run.candidates.map((source) => ({ name: source.name, health: source.health?.(), started: run.startedSources.has(source) })),
    });
    const stuckAfter = this.config.stuck_after_seconds ?? 300;
    return { live: () => liveness(view(), stuckAfter), ready: () => readiness(view()) };
  }

  /** Where the metrics endpoint listens while the agent runs (the real port when 0 was configured). */
  get metricsAddress(): { address: string; port: number } | undefined {
    const server = this.running?.metricsServer;
    return server ? { address: server.address, port: server.port } : undefined;
  }

  /** Resolves when the running agent has applied everything it has received so far. */
  async idle(): Promise<void> {
    await this.running?.loop.idle();
  }

  /** One full pass (`apply --once`): read the state, apply every namespace, stop. */
  applyOnce(): Promise<SyncReport> {
    return this.oneShot((loop) => loop.syncOnce());
  }

  /** What an apply would send, per namespace and family, and what it would remove; changes nothing. */
  plan(): Promise<PlanReport> {
    return this.oneShot((loop) => loop.plan());
  }

  /** Desired state compared with the kernel, per namespace. */
  status(): Promise<StatusReport> {
    return this.oneShot((loop) => loop.status());
  }

  private async oneShot<R>(run: (loop: ReconcileLoop) => Promise<R>): Promise<R> {
    this.enter("one-shot");
    const loop = this.createLoop();
    let sources: StateSource[] = [];
    try {
      sources = await this.startSources(loop, this.stateSources(), new Set());
      return await run(loop);
    } finally {
      await this.stopSources(sources);
      await loop.stop().catch((e: unknown) => this.logger.error({ err: e }, "stopping reconcile loop failed"));
      this.activity = "idle";
    }
  }

  private enter(activity: Activity): void {
    if (this.activity !== "idle") throw new AgentError("AGENT_STATE", `agent ${this.name} is ${this.activity}; cannot start ${activity === "one-shot" ? "a one-shot run" : "again"}`);
    this.activity = activity;
  }

  /** Each wrap name's manager flavour from the handlers' declared needs and the app's defaults; throws on a clash. */
  private managerFlavours(): ManagerFlavours {
    return ManagerFlavours.resolve(
      this.contributionsTo(resourceHandlerExtensionPoint).map((c) => ({ handler: c.extension, plugin: c.plugin })),
      { wrapName: this.config.wrap_name, useIpv6: this.config.use_ipv6, defaults: this.managerDefaults },
    );
  }

  private createLoop(): ReconcileLoop {
    const plugins = new Map(this.contributionsTo(resourceHandlerExtensionPoint).map((c) => [c.extension.kind, c.plugin] as const));
    return new ReconcileLoop({
      handlers: this.extensions(resourceHandlerExtensionPoint),
      observers: this.extensions(applyObserverExtensionPoint),
      runner: this.runner,
      logger: this.logger,
      metrics: this.metrics,
      config: this.config,
      plugins,
      ...(this.managerDefaults !== undefined ? { managerDefaults: this.managerDefaults } : {}),
      ...(this.defaultNamespace !== undefined ? { defaultNamespace: this.defaultNamespace } : {}),
    });
  }

  /** The plugins' state sources, and the file source when `state` is set. */
  private stateSources(): StateSource[] {
    const sources = [...this.extensions(stateSourceExtensionPoint)];
    if (this.config.state !== undefined) {
      sources.push(new FileStateSource({ path: this.config.state, maxBytes: this.config.state_max_bytes, logger: this.logger.child({ stateSource: "file" }) }));
    }
    return sources;
  }

  /** Starts every source (in parallel), noting each in `started` as it is up; if one fails, stops the others and rethrows. */
  private async startSources(loop: ReconcileLoop, sources: readonly StateSource[], started: Set<StateSource>): Promise<StateSource[]> {
    if (sources.length === 0) this.logger.warn({}, "no state source: set state in the config or install a plugin that provides one");
    const results = await Promise.allSettled(
      sources.map(async (source) => {
        await source.start(loop);
        started.add(source);
      }),
    );
    const up = sources.filter((_, i) => results[i]?.status === "fulfilled");
    const failures = results.flatMap((r, i) => (r.status === "rejected" ? [{ source: sources[i], error: r.reason as unknown }] : []));
    if (failures.length === 0) return [...sources];
    for (const { source, error } of failures) {
      this.logger.error({ err: error, stateSource: source?.name, plugin: source ? this.pluginOf(source) : undefined }, "state source failed to start");
    }
    await this.stopSources(up);
    throw failures[0]?.error;
  }

  private async stopSources(sources: readonly StateSource[]): Promise<void> {
    const results = await Promise.allSettled(sources.map((source) => source.stop()));
    results.forEach((r, i) => {
      if (r.status === "rejected") this.logger.error({ err: r.reason as unknown, stateSource: sources[i]?.name }, "state source failed to stop");
    });
  }

  private pluginOf(extension: unknown): string | undefined {
    for (const list of this.contributions.values()) {
      const found = list.find((c) => c.extension === extension);
      if (found) return found.plugin;
    }
    return undefined;
  }

  private addExtension<T>(plugin: string, point: ExtensionPoint<T>, extension: T): void {
    if (!isExtensionPoint(point)) {
      throw new PluginError("PLUGIN_REGISTER", `plugin ${plugin} called addExtension with something that is not an extension point`, plugin);
    }
    if (this.closed) throw new ExtensionPointClosedError(point.id, plugin);
    if (extension === undefined || extension === null) {
      throw new PluginError("PLUGIN_REGISTER", `plugin ${plugin} added an empty extension to ${point.id}`, plugin);
    }
    if (point.token === resourceHandlerExtensionPoint.token) {
      // The reconcile loop takes one handler per kind; say which plugins clash while we know them.
      const kind = (extension as { kind?: unknown }).kind;
      const owner = this.contributionsTo(resourceHandlerExtensionPoint).find((c) => c.extension.kind === kind);
      if (owner) throw new PluginError("PLUGIN_REGISTER", `plugin ${plugin} added a resource handler for kind ${JSON.stringify(kind)}, which plugin ${owner.plugin} already handles`, plugin);
      const keys = (extension as { documentKeys?: unknown }).documentKeys;
      if (!Array.isArray(keys) || !keys.every((k) => typeof k === "string")) {
        throw new PluginError(
          "PLUGIN_REGISTER",
          `plugin ${plugin} added a resource handler for kind ${JSON.stringify(kind)} without documentKeys: list the top-level state keys it reads (e.g. ["routers"])`,
          plugin,
        );
      }
      const problems = managerNeedsProblems((extension as { managers?: unknown }).managers);
      if (problems.length > 0) {
        throw new PluginError("PLUGIN_REGISTER", `plugin ${plugin} added a resource handler for kind ${JSON.stringify(kind)} whose managers field is invalid: ${problems.join("; ")}`, plugin);
      }
    }
    this.container.register(point.token, { useValue: extension });
    const list = this.contributions.get(point.token) ?? [];
    list.push({ plugin, extension });
    this.contributions.set(point.token, list);
  }
}

interface CheckedPlugin {
  plugin: AgentPlugin<unknown, any>;
  source: string;
  options: unknown;
  settings: Record<string, unknown>;
}

/** Every check that can be made before any plugin runs; throws on the first failure. */
async function checkPlugins(options: AgentOptions): Promise<CheckedPlugin[]> {
  const builtIn = `built into ${options.name}`;
  const seen = new Map<string, string>();
  const checked: CheckedPlugin[] = [];
  options.plugins.forEach((entry, index) => {
    const source = entry.source ?? builtIn;
    const plugin: unknown = entry.plugin;
    const shapeProblems = pluginShapeProblems(plugin);
    if (shapeProblems.length > 0) {
      const named = typeof (plugin as { name?: unknown } | null)?.name === "string" ? (plugin as { name: string }).name : undefined;
      throw new PluginError(
        "PLUGIN_INVALID",
        `${named !== undefined ? `plugin ${named} (${source})` : `plugin #${index + 1} (${source})`} is not a valid plugin: ${shapeProblems.join("; ")}`,
        named,
      );
    }
    const valid = plugin as AgentPlugin<unknown, any>;
    const earlier = seen.get(valid.name);
    if (earlier !== undefined) {
      throw new PluginError("PLUGIN_DUPLICATE", `two plugins are named ${valid.name}: one ${describeSource(earlier)}, one ${describeSource(source)}`, valid.name);
    }
    seen.set(valid.name, source);
    if (!semver.satisfies(FRAMEWORK_VERSION, valid.framework, { includePrerelease: true })) {
      throw new PluginError(
        "PLUGIN_INCOMPATIBLE",
        `plugin ${valid.name} ${valid.version} (${source}) needs @chainwarden/agent ${valid.framework}, but this is ${FRAMEWORK_VERSION}`,
        valid.name,
      );
    }
    if (valid.settings !== undefined && entry.source !== undefined) {
      throw new PluginError(
        "PLUGIN_INVALID",
        `plugin ${valid.name} (${source}) declares settings (config keys of its own); only an app's built-in plugins may, a plugin loaded by package takes options`,
        valid.name,
      );
    }
    checked.push({ plugin: valid, source, options: entry.options, settings: pluginSettings(valid, options.config) });
  });

  const pluginOptions = options.config.plugin_options ?? {};
  for (const key of Object.keys(pluginOptions)) {
    if (!seen.has(key)) {
      throw new PluginError(
        "PLUGIN_OPTIONS",
        `plugin_options.${key} names no installed plugin (installed: ${[...seen.keys()].join(", ") || "none"})`,
        key,
      );
    }
  }

  for (const item of checked) {
    const { plugin, source } = item;
    const fromConfig = pluginOptions[plugin.name];
    if (item.options !== undefined && fromConfig !== undefined) {
      throw new PluginError("PLUGIN_OPTIONS", `options for plugin ${plugin.name} are given twice: in its plugins entry (${source}) and in plugin_options.${plugin.name}`, plugin.name);
    }
    const given = item.options ?? fromConfig;
    const where = item.options !== undefined ? "its plugins entry" : `plugin_options.${plugin.name}`;
    if (!plugin.options) {
      if (given !== undefined && !isEmptyObject(given)) {
        const what = isPlainObject(given) ? `keys ${Object.keys(given).join(", ")}` : describeValue(given);
        throw new PluginError("PLUGIN_OPTIONS", `plugin ${plugin.name} (${source}) takes no options, but ${where} has ${what}`, plugin.name);
      }
      item.options = {};
      continue;
    }
    const result = await plugin.options.safeParseAsync(given ?? {});
    if (!result.success) {
      const known = pluginOptionKeys(plugin.options);
      const settingKeys = Object.keys(plugin.settings?.keys ?? {});
      const unknownKey = (k: string) =>
        settingKeys.includes(k) ? `; ${k} is a top-level config key of the agent (a setting of this plugin), not an option` : didYouMean(k, known);
      const issues = result.error.issues.flatMap((i) =>
        i.code === "unrecognized_keys"
          ? i.keys.map((k) => `  - ${[...i.path, k].map(String).join(".")}: unknown key${i.path.length === 0 ? unknownKey(k) : ""}`)
          : [`  - ${i.path.length > 0 ? i.path.map(String).join(".") : "(options)"}: ${i.message}`],
      );
      throw new PluginError(
        "PLUGIN_OPTIONS",
        `invalid options for plugin ${plugin.name} (${source}) in ${where} (${issues.length} problem${issues.length === 1 ? "" : "s"}):\n${issues.join("\n")}`,
        plugin.name,
      );
    }
    item.options = result.data;
  }
  return checked;
}

/** The top-level keys of a plugin's options schema, when it is an object schema. */
function pluginOptionKeys(schema: unknown): string[] {
  const shape = (schema as { shape?: unknown } | null)?.shape;
  return typeof shape === "object" && shape !== null ? Object.keys(shape) : [];
}

function pluginShapeProblems(value: unknown): string[] {
  if (typeof value !== "object" || value === null) return [`expected a plugin object, got ${describeValue(value)}`];
  const p = value as Record<string, unknown>;
  const problems: string[] = [];
  if (typeof p.name !== "string" || !PLUGIN_NAME.test(p.name)) problems.push(`name must be a kebab-case string (got ${describeValue(p.name)})`);
  if (typeof p.version !== "string" || p.version === "") problems.push(`version must be a string (got ${describeValue(p.version)})`);
  if (typeof p.framework !== "string" || semver.validRange(p.framework) === null) {
    problems.push(`framework must be a semver range of @chainwarden/agent such as "^${FRAMEWORK_VERSION}" (got ${describeValue(p.framework)})`);
  }
  if (typeof p.register !== "function") problems.push("register must be a function");
  if (p.options !== undefined && typeof (p.options as { safeParseAsync?: unknown } | null)?.safeParseAsync !== "function") {
    problems.push("options must be a zod schema");
  }
  return problems;
}

function describeSource(source: string): string {
  return source.startsWith("built into ") ? source : `from ${source}`;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isEmptyObject(value: unknown): boolean {
  return isPlainObject(value) && Object.keys(value).length === 0;
}

function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "object") return "an object";
  return typeof value === "undefined" ? "nothing" : `${typeof value} ${String(value)}`;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
