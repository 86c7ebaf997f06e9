import type { HostRunner } from "@chainwarden/core";
import type { Logger } from "pino";
import type { z } from "zod";
import type { AgentMetrics } from "./agent-metrics.js";
import type { BaseConfig } from "./config-schema.js";
import type { ExtensionPoint } from "./extension-point.js";
import type { NeutronConfig } from "./neutron-config.js";
import type { NeutronOptionUse } from "./neutron-option.js";
import type { ServiceToken } from "./service-token.js";

/**
 * A plugin: a value with a name, the framework versions it was built for, its settings and options
 * schemas, and a register step. `register` runs once, before the agent starts; there it adds
 * extensions to extension points and services for other plugins. It sees the agent through its
 * environment only (typed services; the agent's DI container is its own business).
 */
export interface AgentPlugin<TOptions = Record<string, never>, TSettings extends z.ZodRawShape = {}> {
  /** Unique within an agent; kebab-case. */
  readonly name: string;
  /** The plugin's own version. */
  readonly version: string;
  /** semver range of `@chainwarden/agent` the plugin was built against, e.g. `^0.1.0`. */
  readonly framework: string;
  /** Validates the plugin's options (`plugin_options.<name>`); unknown keys must be rejected (use `z.strictObject`). */
  readonly options?: z.ZodType<TOptions>;
  /**
   * Top-level agent config keys the plugin owns (Neutron's option names where Neutron has them), and
   * flags for some of them. An app's configuration is the framework's keys plus its built-in
   * plugins' keys; two plugins owning one key is a load error naming both. A plugin loaded from the
   * config file by package name has options only.
   */
  readonly settings?: PluginSettings<TSettings>;
  /**
   * Adds the plugin's extensions and services to the agent (`env.addExtension`, `env.provide`),
   * once, before anything runs; may be async. A throw stops the agent from starting
   * (`PLUGIN_REGISTER`, naming the plugin).
   */
  register(env: PluginEnvironment<TOptions, z.output<z.ZodObject<TSettings>>>): void | Promise<void>;
}

/**
 * A plugin's config keys (each a schema with its default), the flags that set them, and the
 * Neutron options that set them or that the plugin reads.
 */
export interface PluginSettings<S extends z.ZodRawShape = z.ZodRawShape> {
  readonly keys: S;
  readonly flags?: readonly SettingFlag[];
  readonly neutron?: PluginNeutronOptions<S>;
}

/**
 * The Neutron options a plugin reads from the agent's `--config-file` / `--config-dir` (Neutron's
 * own files, read as oslo.config reads them). Precedence, lowest first: the key's default, Neutron's
 * files, the `--config` YAML, the flags. An option a file does not set (nor a `$name` in its
 * default) leaves ours at our default. A value outside an option's `values` is refused at start
 * (exit 2) naming the file, line, section, option and value; so is one the target's schema refuses.
 * Options no plugin and not the framework declares are ignored (listed once at debug level).
 */
export interface PluginNeutronOptions<S extends z.ZodRawShape = z.ZodRawShape> {
  /** Config keys of this plugin's set from a Neutron option: `metadata_port: { section: "DEFAULT", option: "metadata_port", type: "port" }`. */
  readonly keys?: { readonly [K in keyof S]?: NeutronOptionUse<any> };
  /** Options of this plugin (`plugin_options.<name>.<option>`) set from a Neutron option: `interface_driver: { section: "DEFAULT", option: "interface_driver", type: "string", values: {...} }`. */
  readonly options?: Readonly<Record<string, NeutronOptionUse<any>>>;
  /**
   * Neutron options the plugin reads itself (`env.neutron.get(option)`) or only checks against
   * `values` (`[DEFAULT] agent_mode` must be `legacy`): checked at start, never reported as unused.
   */
  readonly reads?: readonly NeutronOptionUse<any>[];
}

/** A flag for a config key (`--namespace-prefix` ↔ `namespace_prefix`). */
export interface SettingFlag {
  /** Without the dashes: `namespace-prefix`. */
  readonly flag: string;
  readonly key: string;
  readonly description: string;
  /** Booleans also get `--no-<flag>`. Numbers arrive as text and are converted by the config loader. */
  readonly type: "string" | "number" | "boolean";
}

/** What a plugin sees while it registers: typed services, nothing else of the agent. */
export interface PluginEnvironment<TOptions, TSettings = Record<string, never>> {
  /** The plugin's name (for messages). */
  readonly plugin: string;
  /** Its options, validated by its `options` schema (defaults applied). */
  readonly options: TOptions;
  /** Its settings (the config keys it owns), validated, defaults applied. */
  readonly settings: TSettings;
  /** The framework's keys of the agent's configuration (`wrap_name`, `use_ipv6`, `state_path`, ...). */
  readonly config: Readonly<BaseConfig>;
  /**
   * Neutron's config files the agent was started with (`--config-file`, `--config-dir`; none: every
   * option at Neutron's default). Declare what you read in `settings.neutron.reads`; the messaging
   * options are `neutronRpcConfig(env.neutron)`.
   */
  readonly neutron: NeutronConfig;
  /** A child logger bound to `{ plugin }`. */
  readonly logger: Logger;
  /** The agent's metrics: serve gauges and counters of your own (`metrics.gauge`, `metrics.counter`). */
  readonly metrics: AgentMetrics;
  /** Every tool on the host (iptables, ip, ipset, conntrack, node), as the agent runs them; pass on the narrowest runner your code uses. */
  readonly runner: HostRunner;
  /**
   * Adds an extension to a point (a `ResourceHandler` to `resourceHandlerExtensionPoint`, ...).
   * Only in `register`: afterwards it throws `ExtensionPointClosedError`. A resource handler for a
   * kind another plugin handles, or without `documentKeys`, or with a malformed `managers`, is
   * refused naming the plugin.
   */
  addExtension<T>(point: ExtensionPoint<T>, extension: T): void;
  /**
   * The extensions added to a point so far, in registration order. Read them when you need them (in
   * a handler): by then every plugin has registered.
   */
  extensions<T>(point: ExtensionPoint<T>): readonly T[];
  /** Offers a service to the plugins registered after this one. */
  provide<T>(service: ServiceToken<T>, value: T): void;
  /**
   * A service an earlier plugin provided. Throws a `PluginError` naming this plugin and the service
   * when none did (a plugin that depends on another is listed after it).
   */
  use<T>(service: ServiceToken<T>): T;
}

/** Identity helper that gives a plugin literal its types. */
export function createPlugin<TOptions = Record<string, never>, TSettings extends z.ZodRawShape = {}>(plugin: AgentPlugin<TOptions, TSettings>): AgentPlugin<TOptions, TSettings> {
  return plugin;
}
