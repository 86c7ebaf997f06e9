import { z } from "zod";
import { PluginError } from "./agent-errors.js";
import { baseConfigShape, type AgentConfig } from "./config-schema.js";
import { describeNeutronOption, type NeutronOptionUse } from "./neutron-option.js";
import { neutronOptions } from "./neutron-options.js";
import { NEUTRON_RPC_OPTIONS } from "./neutron-rpc-config.js";
import type { AgentPlugin, PluginNeutronOptions, SettingFlag } from "./plugin.js";

/** The framework's own flags besides `--config` (each sets the config key of the same name). */
export const FRAMEWORK_FLAGS: readonly (SettingFlag & { placeholder?: string })[] = [
  {
    flag: "state",
    key: "state",
    type: "string",
    placeholder: "PATH",
    description: "desired state: a JSON/YAML file or a directory of them (the default state source; `run` watches it)",
  },
  { flag: "backend", key: "backend", type: "string", placeholder: "nft|legacy|auto", description: "which iptables to drive; auto: what `iptables` is" },
  { flag: "log-level", key: "log_level", type: "string", placeholder: "LEVEL", description: "trace, debug, info, warn, error, fatal or silent" },
  {
    flag: "log-format",
    key: "log_format",
    type: "string",
    placeholder: "json|pretty|auto",
    description: "log lines as pino JSON, or pretty text (pino-pretty) for a human; auto: JSON unless the output is a terminal",
  },
  { flag: "log-time", key: "log_time", type: "string", placeholder: "epoch|iso", description: "each line's time: epoch milliseconds (pino's) or ISO 8601 UTC text" },
  {
    flag: "metrics-address",
    key: "metrics_address",
    type: "string",
    placeholder: "HOST:PORT",
    description: "serve Prometheus metrics on http://HOST:PORT/metrics, and /healthz and /readyz, during `run` (a bare port binds 127.0.0.1); off unless set",
  },
  {
    flag: "netns",
    key: "netns",
    type: "string",
    placeholder: "NETNS",
    description: "the network namespace for resources that name none (default: the host's own); a namespace of your own runs isolated from the host's rules",
  },
  { flag: "wrap-name", key: "wrap_name", type: "string", placeholder: "NAME", description: "the prefix of this agent's chains (at most 16 characters)" },
];

/**
 * The Neutron options that set the framework's keys (`[DEFAULT] debug = true` is `log_level: debug`;
 * false leaves the level alone), and the messaging ones it reads for the RPC client
 * (`neutronRpcConfig`).
 */
export const FRAMEWORK_NEUTRON: PluginNeutronOptions<typeof baseConfigShape> = {
  keys: {
    state_path: neutronOptions.state_path,
    comment_iptables_rules: neutronOptions.comment_iptables_rules,
    log_level: { ...neutronOptions.debug, convert: (debug: boolean) => (debug ? "debug" : undefined) },
  },
  reads: NEUTRON_RPC_OPTIONS,
};

/** The placeholder of a flag's value in help and docs (`N` for a number, the key's last word otherwise); none for a boolean. */
export function flagPlaceholder(f: SettingFlag & { placeholder?: string }): string | undefined {
  if (f.placeholder !== undefined) return f.placeholder;
  if (f.type === "boolean") return undefined;
  return f.type === "number" ? "N" : f.key.toUpperCase().replace(/^.*_/, "");
}

/** One Neutron option an agent reads, who declared it and what it sets. */
export interface NeutronTarget {
  readonly use: NeutronOptionUse;
  /** "the framework" or the plugin's name. */
  readonly owner: string;
  /** The config key it sets; undefined for a plugin option or an option only read. */
  readonly key?: string;
  /** The plugin option it sets (`plugin_options.<plugin>.<option>`). */
  readonly pluginOption?: { readonly plugin: string; readonly option: string };
  /** The schema of what it sets, to check the value against where it was written. */
  readonly schema?: z.ZodType;
}

/** An app's configuration, put together from the framework's keys and its built-in plugins' settings. */
export interface ComposedConfig {
  /** Strict: a key no one declares is an error. */
  readonly schema: z.ZodType<AgentConfig>;
  /** The framework's flags, then each plugin's, in plugin order. */
  readonly flags: readonly (SettingFlag & { placeholder?: string })[];
  /** Who declares each key (a plugin's name, or "the framework"). */
  readonly owners: ReadonlyMap<string, string>;
  /** The Neutron options the framework and the plugins read, framework first. */
  readonly neutron: readonly NeutronTarget[];
}

const FRAMEWORK = "the framework";

/**
 * The configuration of an agent with these built-in plugins: the framework's keys plus every
 * plugin's settings keys, and their flags. A key or a flag declared twice is a `PluginError`
 * naming both declarers: the app cannot be built.
 */
export function composeAgentConfig(plugins: readonly AgentPlugin<any, any>[]): ComposedConfig {
  const owners = new Map<string, string>(Object.keys(baseConfigShape).map((k) => [k, FRAMEWORK]));
  const shape: Record<string, z.ZodType> = { ...baseConfigShape };
  const flagOwners = new Map<string, string>(FRAMEWORK_FLAGS.map((f) => [f.flag, FRAMEWORK]));
  // The CLI's own flags.
  for (const own of ["config", "config-file", "config-dir", "help", "version", "once"]) flagOwners.set(own, FRAMEWORK);
  const neutron: NeutronTarget[] = neutronTargets(FRAMEWORK, FRAMEWORK_NEUTRON, shape, undefined);
  const flags = [...FRAMEWORK_FLAGS];
  const by = (owner: string) => (owner === FRAMEWORK ? FRAMEWORK : `plugin ${owner}`);
  for (const plugin of plugins) {
    const settings = plugin.settings;
    if (!settings) continue;
    for (const [key, schema] of Object.entries(settings.keys as z.ZodRawShape)) {
      const owner = owners.get(key);
      if (owner !== undefined) {
        throw new PluginError("PLUGIN_INVALID", `config key ${key} is declared by ${by(owner)} and by plugin ${plugin.name}`, plugin.name);
      }
      owners.set(key, plugin.name);
      shape[key] = schema as z.ZodType;
    }
    for (const flag of settings.flags ?? []) {
      const owner = flagOwners.get(flag.flag);
      if (owner !== undefined) throw new PluginError("PLUGIN_INVALID", `flag --${flag.flag} is declared by ${by(owner)} and by plugin ${plugin.name}`, plugin.name);
      if (owners.get(flag.key) !== plugin.name) {
        throw new PluginError("PLUGIN_INVALID", `plugin ${plugin.name} declares flag --${flag.flag} for config key ${flag.key}, which is not one of its settings`, plugin.name);
      }
      flagOwners.set(flag.flag, plugin.name);
      flags.push(flag);
    }
    if (settings.neutron) {
      for (const key of Object.keys(settings.neutron.keys ?? {})) {
        if (owners.get(key) !== plugin.name) {
          const use = (settings.neutron.keys as Record<string, NeutronOptionUse>)[key]!;
          throw new PluginError("PLUGIN_INVALID", `plugin ${plugin.name} maps Neutron's ${describeNeutronOption(use)} onto config key ${key}, which is not one of its settings`, plugin.name);
        }
      }
      neutron.push(...neutronTargets(plugin.name, settings.neutron, shape, plugin));
    }
  }
  return { schema: z.strictObject(shape) as unknown as z.ZodType<AgentConfig>, flags, owners, neutron };
}

/** The targets of one declarer's Neutron options. */
function neutronTargets(owner: string, declared: PluginNeutronOptions<any>, shape: Record<string, z.ZodType>, plugin: AgentPlugin<any, any> | undefined): NeutronTarget[] {
  const targets: NeutronTarget[] = [];
  for (const [key, use] of Object.entries((declared.keys ?? {}) as Record<string, NeutronOptionUse | undefined>)) {
    if (use) targets.push({ use, owner, key, schema: shape[key] });
  }
  const optionShape = (plugin?.options as { shape?: Record<string, z.ZodType> } | undefined)?.shape;
  for (const [option, use] of Object.entries(declared.options ?? {})) {
    if (!plugin) continue;
    if (optionShape && !Object.hasOwn(optionShape, option)) {
      throw new PluginError("PLUGIN_INVALID", `plugin ${plugin.name} maps Neutron's ${describeNeutronOption(use)} onto its option ${option}, which its options schema does not have`, plugin.name);
    }
    targets.push({ use, owner, pluginOption: { plugin: plugin.name, option }, schema: optionShape?.[option] });
  }
  for (const use of declared.reads ?? []) targets.push({ use, owner });
  return targets;
}

/**
 * A plugin's settings out of a validated configuration (defaults applied to what is missing, as
 * when the agent is built from code without the CLI).
 * @throws PluginError (`PLUGIN_OPTIONS`) listing every problem.
 */
export function pluginSettings(plugin: AgentPlugin<any, any>, config: AgentConfig): Record<string, unknown> {
  const keys = plugin.settings?.keys as z.ZodRawShape | undefined;
  if (!keys) return {};
  const given: Record<string, unknown> = {};
  for (const key of Object.keys(keys)) if (config[key] !== undefined) given[key] = config[key];
  const result = z.object(keys).safeParse(given);
  if (result.success) return result.data;
  const issues = result.error.issues.map((i) => `  - ${i.path.map(String).join(".")}: ${i.message}`);
  throw new PluginError("PLUGIN_OPTIONS", `invalid settings for plugin ${plugin.name} (${issues.length} problem${issues.length === 1 ? "" : "s"}):\n${issues.join("\n")}`, plugin.name);
}
