/**
 * The command line both agents share: `run`, `apply --once`, `plan`, `status`, `--help`, `--version`.
 *
 * An app describes itself once (`AgentApp`: name, version, config schema, default plugins, its own
 * flags) and its `main` is `process.exit(await runAgentCli(app))`. Everything an operator can say on
 * the command line is also a config key, and the flag wins; the help text is generated from the same
 * tables that drive parsing, and the defaults it shows come from the app's schema, so the two never
 * disagree.
 *
 * Exit codes (stable, scripts branch on them):
 * - 0  success (`status`: everything in sync)
 * - 1  runtime failure: an apply failed, an invalid resource was not applied, the kernel refused,
 *      no state could be read; `plan` of invalid input
 * - 2  usage error (unknown flag or command, `apply` without `--once`), invalid configuration (every
 *      problem listed), or a plugin that cannot be loaded, is incompatible or has bad options
 * - 3  `status`: something is not in sync (invalid input included)
 * - 128+n  a second SIGTERM/SIGINT while `run` was stopping (exits at once)
 *
 * Output: `plan` and `status` write their result to stdout and logs to stderr, so stdout can be
 * parsed (the plan is itself valid `iptables-restore` input: the headers are `#` comments). `run`
 * and `apply --once` log to stdout, as daemons do; failures are also summarised on stderr.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import type { Logger } from "pino";
import type { z } from "zod";
import { Agent } from "./agent.js";
import { isChainwardenError } from "@chainwarden/core";
import { AgentError, ConfigError } from "./agent-errors.js";
import { composeAgentConfig, flagPlaceholder, type ComposedConfig } from "./agent-config.js";
import { loadConfig } from "./config-loader.js";
import { jsonEqual } from "./json-equal.js";
import { NeutronConfig, NeutronConfigError, type NeutronConfigSource } from "./neutron-config.js";
import { describeNeutronSource, mapNeutronConfig, type NeutronLayer } from "./neutron-mapping.js";
import { describeNeutronOption } from "./neutron-option.js";
import type { AgentConfig } from "./config-schema.js";
import { createLogger } from "./logging.js";
import type { ManagerDefaults } from "./manager-flavours.js";
import type { AgentPlugin } from "./plugin.js";
import { loadPluginsFromConfig, type PluginEntry } from "./plugin-loader.js";
import { applyFailures, applySucceeded, applySummary, describeError, formatPlan, formatStatus, planFailures, planSucceeded, statusFailures, statusInSync } from "./cli-reports.js";

/** What an agent binary is: its name, its built-in plugins and defaults; the CLI builds the rest. */
export interface AgentApp {
  /** The binary's name (`l3-agent`); also the logger's `name`. */
  name: string;
  version: string;
  /** One line for `--help`. */
  description: string;
  /**
   * Plugins built into the app, in order. Their settings are the app's config keys beside the
   * framework's (and their flags the app's flags); their options go under `plugin_options.<name>`.
   */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  plugins: AgentPlugin<any, any>[];
  /** Defaults for framework keys the app sets differently (its `wrap_name`); the file and the flags win. */
  defaults?: Readonly<Record<string, unknown>>;
  /**
   * The flavour of the app's iptables managers: what `context.manager()` gives a handler (a
   * plugin's included) that names no options (see `AgentOptions.managerDefaults`). The l2 agent's
   * are stateless, as Neutron's l2 firewall driver makes them; default: stateful, with nat.
   */
  managerDefaults?: ManagerDefaults;
  /** The app's package directory: plugins named in a config file are resolved from here. */
  appDir: string;
  /** Extra paragraphs for `--help` (what the built-in plugins do, the state's shape). */
  notes?: string[];
  /** Extra examples for the global `--help`, without the binary name: `apply --once --state s.yaml`. */
  examples?: string[];
}

/** Exit code 0: success (`status`: everything in sync). */
export const EXIT_OK = 0;
/** Exit code 1: a runtime failure (an apply failed, input was invalid, no state could be read). */
export const EXIT_FAILURE = 1;
/** Exit code 2: a usage error (a flag, the configuration, a plugin that cannot be loaded or clashes with another). */
export const EXIT_USAGE = 2;
/** Exit code 3: `status` found something not in sync. */
export const EXIT_NOT_IN_SYNC = 3;

type CommandName = "run" | "apply" | "plan" | "status";

interface FlagSpec {
  flag: string;
  key: string | undefined;
  type: "string" | "number" | "boolean";
  placeholder?: string;
  description: string;
  /** Given more than once, each counts (`--config-file`). */
  multiple?: boolean;
  /** The line under the description in `--help`; undefined: the config key and its default. */
  facts?: string | null;
}

/** The flags that are not config keys: our config file, and Neutron's. */
const CONFIG_FLAG: FlagSpec = {
  flag: "config",
  key: undefined,
  type: "string",
  placeholder: "FILE",
  description: "the config file: YAML, or JSON when the name ends in .json",
  facts: "not a config key; default: no file, built-in defaults and flags only",
};
const NEUTRON_FLAGS: FlagSpec[] = [
  {
    flag: "config-file",
    key: undefined,
    type: "string",
    placeholder: "FILE",
    multiple: true,
    description: "a Neutron config file (neutron.conf, l3_agent.ini), read as oslo.config reads it; repeatable, a later one wins; below --config and the flags",
    facts: null,
  },
  {
    flag: "config-dir",
    key: undefined,
    type: "string",
    placeholder: "DIR",
    multiple: true,
    description: "a directory of Neutron config files: its *.conf in name order, where it stands among the --config-file flags",
    facts: null,
  },
];

interface CommandSpec {
  usage: string;
  summary: string;
  details: string[];
  examples: string[];
}

const COMMANDS: Record<CommandName, CommandSpec> = {
  run: {
    usage: "run [flags]",
    summary: "run the agent: full sync, then apply every change to the desired state until SIGTERM/SIGINT",
    details: [
      "Starts the plugins and the state sources, applies the whole desired state, then applies each change as it arrives (bursts are coalesced; one apply at a time per namespace), retries failures with backoff and repairs drift on every resync.",
      "On SIGTERM or SIGINT it finishes the apply in flight, stops, and exits 0 leaving every rule in place (a restart adopts them without a flush). A second signal exits at once.",
      "Logs go to stdout: pino JSON lines (--log-format, --log-time), pretty text on a terminal. A full pass over many namespaces logs its progress (done/total) at most once a second.",
      "With --metrics-address it serves /metrics (Prometheus), /healthz (200 unless a namespace run is stuck: in flight longer than stuck_after_seconds) and /readyz (200 once the first full sync is done and every state source has delivered and is connected); both answer with a small JSON body saying why.",
    ],
    examples: ["run --config /etc/chainwarden/agent.yaml", "run --state /var/lib/chainwarden/state.json --metrics-address 127.0.0.1:9180"],
  },
  apply: {
    usage: "apply --once [flags]",
    summary: "one reconcile pass over the whole desired state; exit 0 only if everything applied",
    details: [
      "Reads the desired state once, applies every namespace, and exits: 0 when every namespace applied and every resource was valid, 1 otherwise (each failure is printed on stderr naming the namespace and the resource).",
      "`--once` is required: the long-running form is `run`.",
    ],
    examples: ["apply --once --state state.yaml", "apply --once --config agent.yaml --backend legacy"],
  },
  plan: {
    usage: "plan [flags]",
    summary: "print per namespace the exact iptables-restore input that would be sent; change nothing",
    details: [
      "Reads the kernel (iptables-save) and the desired state and prints, for each namespace and IP family, the exact input `apply` would send, or \"no changes\", and what else would change on the host: namespaces, ipsets and metadata proxies created or removed, stale namespaces an earlier run left, ports waiting for their device. Nothing is changed on the host: no restore runs, no namespace is created.",
      "Headers are `#` comments, so each family's section is itself valid iptables-restore input. Logs go to stderr.",
      "Exit code 1 when the input is invalid (each problem is printed; what it names is kept as the kernel has it) or a namespace cannot be planned, 0 otherwise.",
    ],
    examples: ["plan --state state.yaml", "plan --config agent.yaml > plan.txt"],
  },
  status: {
    usage: "status [flags]",
    summary: "compare what is programmed in the kernel with the desired state; exit 3 when not in sync",
    details: [
      "Prints one row per namespace: whether it exists, its resources, whether the kernel matches the desired rules, the edit lines an apply would send, and the rules and chains this agent manages there.",
      "Exit code 0 when every namespace is in sync, 3 otherwise: rules pending, a stale namespace to remove, a resource held as the kernel has it, or invalid input (each problem is printed on stderr). Logs go to stderr.",
    ],
    examples: ["status --state state.yaml", "status --config agent.yaml || echo out of sync"],
  },
};

class UsageError extends Error {}

/**
 * Runs one invocation of an agent binary and returns the exit code (the bin calls `process.exit`).
 * Every operator error and runtime failure becomes a message on stderr and an exit code; only a
 * broken `AgentApp` (a flag defined twice) throws.
 */
export async function runAgentCli(app: AgentApp, argv: readonly string[] = process.argv.slice(2)): Promise<number> {
  // The framework's keys and flags plus the built-in plugins' (a clash is a broken app: it throws).
  const composed = composeAgentConfig(app.plugins);
  const flags: FlagSpec[] = [CONFIG_FLAG, ...NEUTRON_FLAGS, ...composed.flags.map((f) => ({ ...f, placeholder: flagPlaceholder(f) }))];
  let parsed: ReturnType<typeof parseCommandLine>;
  try {
    parsed = parseCommandLine(app, flags, argv);
  } catch (err) {
    if (err instanceof UsageError) return usageError(app, err.message, undefined);
    throw err;
  }
  const { command, values } = parsed;

  if (parsed.help) {
    process.stdout.write(command ? commandHelp(app, composed, flags, command) : globalHelp(app, composed, flags));
    return EXIT_OK;
  }
  if (parsed.version) {
    process.stdout.write(`${app.name} ${app.version} (@chainwarden/agent ${frameworkVersion()}, node ${process.version})\n`);
    return EXIT_OK;
  }
  if (!command) return usageError(app, "missing command (run, apply --once, plan or status)", undefined);
  if (values.once === true && command !== "apply") return usageError(app, `--once belongs to apply, not ${command}`, command);
  if (command === "apply" && values.once !== true) return usageError(app, "apply needs --once (the long-running form is `run`)", command);

  // Config: defaults < Neutron's files < file < flags; every problem is listed at once.
  const overrides: Record<string, unknown> = {};
  for (const f of flags) if (f.key !== undefined && values[f.flag] !== undefined) overrides[f.key] = values[f.flag];
  let neutron = NeutronConfig.none;
  let neutronLayer: NeutronLayer | undefined;
  if (parsed.neutronSources.length > 0) {
    try {
      neutron = NeutronConfig.read(parsed.neutronSources);
      neutronLayer = mapNeutronConfig(neutron, composed.neutron);
    } catch (err) {
      if (!(err instanceof NeutronConfigError)) return failure(app, "cannot read the Neutron config files", err);
      const problems = err.problems.map((p) => ({ source: p.file ?? "Neutron config", path: "", message: p.line !== undefined ? `${p.reason} (line ${p.line})` : p.reason }));
      neutronLayer = { values: {}, taken: [], unused: [], problems };
    }
  }
  let config: AgentConfig;
  try {
    config = loadConfig({ schema: composed.schema, file: values.config as string | undefined, overrides, defaults: app.defaults, neutron: neutronLayer });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${app.name}: ${err.message}\n${hint(app, command)}\n`);
      return EXIT_USAGE;
    }
    return failure(app, "cannot read the configuration", err);
  }

  const logger = createCommandLogger(app, command, config);
  if (neutronLayer) logNeutronConfig(logger, neutron, neutronLayer, config);
  let agent: Agent;
  try {
    agent = await createAgent(app, config, logger, neutron);
  } catch (err) {
    if (isUsageError(err)) {
      process.stderr.write(`${app.name}: ${(err as Error).message}\n${hint(app, command)}\n`);
      return EXIT_USAGE;
    }
    return failure(app, "cannot start the agent", err);
  }

  try {
    switch (command) {
      case "run":
        return await runDaemon(app, agent, logger);
      case "apply": {
        const report = await agent.applyOnce();
        process.stderr.write(applyFailures(app.name, report));
        process.stdout.write(applySummary(report));
        return applySucceeded(report) ? EXIT_OK : EXIT_FAILURE;
      }
      case "plan": {
        const report = await agent.plan();
        process.stdout.write(formatPlan(report));
        process.stderr.write(planFailures(app.name, report));
        // Invalid input is a failure of plan too: what it shows is not what the input says.
        return planSucceeded(report) ? EXIT_OK : EXIT_FAILURE;
      }
      case "status": {
        const report = await agent.status();
        process.stdout.write(formatStatus(report));
        process.stderr.write(statusFailures(app.name, report));
        return statusInSync(report) ? EXIT_OK : EXIT_NOT_IN_SYNC;
      }
      default:
        return usageError(app, `unknown command ${String(command satisfies never)}`, undefined);
    }
  } catch (err) {
    if (isUsageError(err)) {
      process.stderr.write(`${app.name}: ${(err as Error).message}\n${hint(app, command)}\n`);
      return EXIT_USAGE;
    }
    return failure(app, `${command} failed`, err);
  }
}

// ---------------------------------------------------------------------------------------------
// Parsing

function parseCommandLine(app: AgentApp, flags: readonly FlagSpec[], argv: readonly string[]) {
  type Option = { type: "string" | "boolean"; short?: string };
  const options: Record<string, Option> = {
    help: { type: "boolean", short: "h" },
    version: { type: "boolean" },
    once: { type: "boolean" },
  };
  for (const f of flags) {
    // composeAgentConfig refuses a flag declared twice: this is a guard for the CLI's own table.
    if (Object.hasOwn(options, f.flag)) throw new AgentError("PLUGIN_INVALID", `${app.name}: flag --${f.flag} is defined twice`);
    options[f.flag] = { type: f.type === "boolean" ? "boolean" : "string", ...(f.multiple ? { multiple: true } : {}) };
  }
  type Token = { kind: string; name?: string; value?: string };
  let result: { values: Record<string, string | boolean | string[] | undefined>; positionals: string[]; tokens: Token[] };
  try {
    result = parseArgs({ args: [...argv], options, strict: true, allowPositionals: true, allowNegative: true, tokens: true }) as typeof result;
  } catch (err) {
    throw new UsageError(describeParseError(err));
  }
  // --config-file and --config-dir count in the order given, as oslo.config reads them.
  const neutronSources: NeutronConfigSource[] = result.tokens.flatMap((t) =>
    t.kind === "option" && t.value !== undefined && (t.name === "config-file" || t.name === "config-dir") ? [t.name === "config-file" ? { file: t.value } : { dir: t.value }] : [],
  );
  const [first, ...rest] = result.positionals;
  const values = result.values;
  let command: CommandName | undefined;
  let help = values.help === true;
  if (first === "help") {
    help = true;
    if (rest.length > 1) throw new UsageError(`unexpected argument ${JSON.stringify(rest[1])}`);
    if (rest[0] !== undefined) command = commandName(rest[0]);
  } else if (first !== undefined) {
    command = commandName(first);
    if (rest.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(rest[0])} (${command} takes flags only)`);
  }
  return { command, values, help, version: values.version === true, neutronSources };
}

function commandName(word: string): CommandName {
  if (Object.hasOwn(COMMANDS, word)) return word as CommandName;
  const close = Object.keys(COMMANDS).find((c) => c.startsWith(word.slice(0, 2)));
  throw new UsageError(`unknown command ${JSON.stringify(word)}${close ? ` (did you mean ${close}?)` : ""}`);
}

function describeParseError(err: unknown): string {
  const e = err as { code?: string; message?: string };
  const option = /'(-[^' ]+)/.exec(e.message ?? "")?.[1];
  switch (e.code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown flag ${option ?? e.message}`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      return /argument missing/.test(e.message ?? "") ? `${option} needs a value` : `${option} takes no value`;
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return e.message ?? "unexpected argument";
    default:
      return e.message ?? String(err);
  }
}


// ---------------------------------------------------------------------------------------------
// Building the agent

function createCommandLogger(app: AgentApp, command: CommandName, config: AgentConfig): Logger {
  const options = { level: config.log_level, name: app.name, format: config.log_format, time: config.log_time };
  if (command === "run" || command === "apply") return createLogger(options);
  // plan/status: stdout carries the result, so logs go to stderr (`auto`: pretty when stderr is a terminal).
  return createLogger({ ...options, fd: 2 });
}

async function createAgent(app: AgentApp, config: AgentConfig, logger: Logger, neutron: NeutronConfig): Promise<Agent> {
  // A built-in plugin's options come from config.plugin_options.<name>; the agent reads them there.
  const builtIn = app.plugins.map((plugin) => ({ plugin }));
  const fromConfig = await loadPluginsFromConfig(config.plugins as PluginEntry[], app.appDir);
  return Agent.create({
    name: app.name,
    version: app.version,
    config,
    plugins: [...builtIn, ...fromConfig],
    logger,
    neutron,
    ...(app.managerDefaults !== undefined ? { managerDefaults: app.managerDefaults } : {}),
  });
}

/**
 * Says once what Neutron's files gave (each value that the YAML or a flag did not override, with
 * its line) and, at debug level, which options in them this agent does not use.
 */
function logNeutronConfig(logger: Logger, neutron: NeutronConfig, layer: NeutronLayer, config: AgentConfig): void {
  const taken: Record<string, { value: unknown; from: string }> = {};
  for (const t of layer.taken) {
    const [top, plugin, option] = t.path.split(".") as [string, string?, string?];
    const now = top === "plugin_options" ? (config.plugin_options as Record<string, Record<string, unknown> | undefined>)[plugin!]?.[option!] : config[top];
    if (jsonEqual(now, t.value)) taken[t.path] = { value: t.value, from: describeNeutronSource(t.source) };
  }
  logger.info({ files: neutron.files, taken }, "Neutron config files read");
  const unused = new Map<string, string>();
  for (const entry of layer.unused) {
    const id = `${entry.section === "DEFAULT" ? entry.section : entry.section.toLowerCase()} ${entry.key}`;
    if (!unused.has(id)) unused.set(id, `[${entry.section}] ${entry.key}`);
  }
  if (unused.size > 0) logger.debug({ options: [...unused.values()] }, "Neutron options this agent does not use");
}

/**
 * Exit codes by error code: what an operator fixes in the configuration or the plugin list is a
 * usage error (2); any other error, ours (`ChainwardenError`) or not, is a runtime failure (1).
 */
export const EXIT_CODE_BY_ERROR: Readonly<Record<string, number>> = {
  CONFIG_INVALID: EXIT_USAGE,
  PLUGIN_INVALID: EXIT_USAGE,
  PLUGIN_DUPLICATE: EXIT_USAGE,
  PLUGIN_INCOMPATIBLE: EXIT_USAGE,
  PLUGIN_OPTIONS: EXIT_USAGE,
  PLUGIN_LOAD: EXIT_USAGE,
  INVALID_NAMESPACE_NAME: EXIT_USAGE,
  // Neutron's config files (`--config-file`, `--config-dir`).
  NEUTRON_CONFIG_INVALID: EXIT_USAGE,
  OSLO_CONFIG_PARSE: EXIT_USAGE,
  OSLO_CONFIG_UNREADABLE: EXIT_USAGE,
  OSLO_CONFIG_VALUE: EXIT_USAGE,
  OSLO_CONFIG_INTERPOLATION: EXIT_USAGE,
};

/** The exit code an error gets (`EXIT_CODE_BY_ERROR`). */
export function exitCodeFor(err: unknown): number {
  return isChainwardenError(err) ? (EXIT_CODE_BY_ERROR[err.code] ?? EXIT_FAILURE) : EXIT_FAILURE;
}

function isUsageError(err: unknown): boolean {
  return exitCodeFor(err) === EXIT_USAGE;
}

// ---------------------------------------------------------------------------------------------
// Commands

async function runDaemon(app: AgentApp, agent: Agent, logger: Logger): Promise<number> {
  let stopping: Promise<void> | undefined;
  let signalled!: () => void;
  const signal = new Promise<void>((resolve) => (signalled = resolve));

  const onSignal = (name: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal: name }, "second signal: exiting at once");
      process.exit(128 + (name === "SIGINT" ? 2 : 15));
    }
    logger.info({ signal: name }, "stopping: finishing the apply in flight, rules stay in place");
    // Stop right away, also during the first full sync: the agent finishes the apply in flight
    // and starts nothing new.
    stopping = agent.stop();
    signalled();
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  try {
    // The agent serves metrics itself (metrics_address) as part of start().
    const started = agent.start();
    try {
      await Promise.race([started, signal]);
    } catch (err) {
      if (!stopping) {
        await agent.stop().catch(() => undefined);
        return failure(app, "start failed", err);
      }
    }
    await signal;
    // A signal during the first sync: start() returns once the loop has stopped.
    await started.catch((err: unknown) => logger.warn({ err }, "start interrupted by stop"));
    await stopping;
    return EXIT_OK;
  } catch (err) {
    return failure(app, "stop failed", err);
  } finally {
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
  }
}

// ---------------------------------------------------------------------------------------------
// Messages

function usageError(app: AgentApp, reason: string, command: CommandName | undefined): number {
  process.stderr.write(`${app.name}: ${reason}\n${hint(app, command)}\n`);
  return EXIT_USAGE;
}

function hint(app: AgentApp, command: CommandName | undefined): string {
  return `Run '${app.name}${command ? ` ${command}` : ""} --help' for the commands, flags and config keys.`;
}

function failure(app: AgentApp, what: string, err: unknown): number {
  process.stderr.write(`${app.name}: ${what}: ${describeError(err)}\n`);
  return EXIT_FAILURE;
}

let cachedFrameworkVersion: string | undefined;
function frameworkVersion(): string {
  try {
    cachedFrameworkVersion ??= (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }).version;
  } catch {
    cachedFrameworkVersion = "unknown";
  }
  return cachedFrameworkVersion;
}

// ---------------------------------------------------------------------------------------------
// Help

function globalHelp(app: AgentApp, composed: ComposedConfig, flags: readonly FlagSpec[]): string {
  const commandWidth = Math.max(...Object.values(COMMANDS).map((c) => c.usage.replace(" [flags]", "").length));
  const lines = [
    `${app.name} ${app.version}: ${app.description}`,
    "",
    "Usage:",
    `  ${app.name} <command> [flags]`,
    `  ${app.name} <command> --help`,
    `  ${app.name} --version`,
    "",
    "Commands:",
    ...Object.values(COMMANDS).map((c) => `  ${c.usage.replace(" [flags]", "").padEnd(commandWidth)}  ${c.summary}`),
    "",
    ...flagHelp(app, composed, flags),
    "",
    ...configOnlyHelp(app, composed, flags),
    "",
    ...neutronHelp(composed),
    "",
    ...pluginHelp(app),
    "",
    "Exit codes: 0 success; 1 runtime failure (an apply failed, invalid input, no state read; `plan` of invalid input);",
    "2 usage error, invalid configuration or plugin that cannot be loaded; 3 `status` found something not in sync.",
    "",
    "Examples:",
    ...[...Object.values(COMMANDS).flatMap((c) => c.examples.slice(0, 1)), ...(app.examples ?? [])].map((e) => `  ${app.name} ${e}`),
  ];
  return `${lines.join("\n")}\n`;
}

function commandHelp(app: AgentApp, composed: ComposedConfig, flags: readonly FlagSpec[], command: CommandName): string {
  const c = COMMANDS[command];
  const lines = [
    `${app.name} ${command}: ${c.summary}`,
    "",
    `Usage: ${app.name} ${c.usage}`,
    "",
    ...c.details.flatMap((d) => [...wrap(d, 100), ""]),
    ...(command === "apply" ? ["  --once  required: apply once and exit", ""] : []),
    ...flagHelp(app, composed, flags),
    "",
    ...pluginHelp(app),
    "",
    "Examples:",
    ...[...c.examples, ...(app.examples ?? []).filter((e) => e.startsWith(`${command} `))].map((e) => `  ${app.name} ${e}`),
  ];
  return `${lines.join("\n")}\n`;
}

function flagHelp(app: AgentApp, composed: ComposedConfig, flags: readonly FlagSpec[]): string[] {
  const shape = schemaShape(composed.schema);
  const spelled = flags.map((f) => (f.type === "boolean" ? `--[no-]${f.flag}` : `--${f.flag} ${f.placeholder ?? "VALUE"}`));
  const width = Math.max(...spelled.map((s) => s.length));
  const out = ["Flags (each but --config, --config-file and --config-dir is also a config key; a flag wins over the config file):"];
  flags.forEach((f, i) => {
    out.push(`  ${spelled[i]!.padEnd(width)}  ${f.description}`);
    const facts = f.facts !== undefined ? f.facts : f.key === undefined ? null : `config key: ${f.key}; default: ${defaultText(app, shape, f.key)}`;
    if (facts !== null) out.push(`  ${"".padEnd(width)}  (${facts})`);
  });
  out.push(`  ${"--help, -h".padEnd(width)}  this help (also per command: ${app.name} <command> --help)`);
  out.push(`  ${"--version".padEnd(width)}  print the version`);
  return out;
}

function configOnlyHelp(app: AgentApp, composed: ComposedConfig, flags: readonly FlagSpec[]): string[] {
  const shape = schemaShape(composed.schema);
  if (!shape) return [];
  const withFlag = new Set(flags.map((f) => f.key));
  const keys = Object.keys(shape).filter((k) => !withFlag.has(k));
  const out = ["Config-file keys without a flag (YAML or JSON; Neutron's option names where Neutron has one):"];
  for (const line of wrap(keys.map((k) => `${k} (default: ${defaultText(app, shape, k)})`).join(", "), 98)) out.push(`  ${line}`);
  return out;
}

/** Which Neutron options the agent reads, what each sets, and which values are refused. */
function neutronHelp(composed: ComposedConfig): string[] {
  const sets: string[] = [];
  const checks: string[] = [];
  for (const t of composed.neutron) {
    const name = describeNeutronOption(t.use);
    // Aliases only: the class paths Neutron also takes are in the README.
    const aliases = Object.keys(t.use.values ?? {}).filter((v) => !v.includes(".")).map((v) => (v === "" ? '""' : v));
    const only = t.use.values ? ` (${aliases.join("|") || "none"})` : "";
    if (t.key !== undefined) sets.push(`${name} → ${t.key}${only}`);
    else if (t.pluginOption) sets.push(`${name} → plugin_options.${t.pluginOption.plugin}.${t.pluginOption.option}${only}`);
    else if (t.use.values) checks.push(`${name}${only}`);
  }
  // An option a plugin maps onto a key of its own is listed there, not again as read.
  const mapped = new Set(sets.map((s) => s.split(" → ")[0]));
  const bySection = new Map<string, string[]>();
  for (const t of composed.neutron) {
    const name = describeNeutronOption(t.use);
    if (t.key !== undefined || t.pluginOption || t.use.values || mapped.has(name)) continue;
    const options = bySection.get(t.use.section) ?? [];
    if (!options.includes(t.use.option)) options.push(t.use.option);
    bySection.set(t.use.section, options);
  }
  const readOnly = [...bySection].map(([section, options]) => `[${section}] ${options.join(", ")}`);
  const out = ["Neutron config files (--config-file, --config-dir; precedence: Neutron's files < --config < flags):"];
  const paragraph = (text: string) => {
    for (const line of wrap(text, 98)) out.push(`  ${line}`);
  };
  if (sets.length > 0) paragraph(`sets: ${sets.join(", ")}.`);
  if (checks.length > 0) paragraph(`refuses other values of: ${checks.join(", ")}.`);
  if (readOnly.length > 0) paragraph(`reads for plugins (RPC): ${readOnly.join("; ")}.`);
  paragraph("A value outside the ones shown is refused (exit 2, naming file, line, section, option and value); any other option is ignored.");
  return out;
}

function pluginHelp(app: AgentApp): string[] {
  const out = ["Plugins:"];
  out.push(
    app.plugins.length
      ? `  built in: ${app.plugins.map((p) => `${p.name} ${p.version}`).join(", ")} (options under plugin_options.<name>)`
      : "  built in: none yet",
  );
  for (const note of app.notes ?? []) for (const line of wrap(note, 98)) out.push(`  ${line}`);
  out.push("  More plugins are loaded by npm package name from the config file, resolved from the app's directory:");
  out.push("    plugins:");
  out.push('      - package: "@chainwarden/example-plugin-audit-log"');
  out.push("        options: { path: /var/log/chainwarden/audit.jsonl }");
  return out;
}

function schemaShape(schema: z.ZodType): Record<string, z.ZodType> | undefined {
  const shape = (schema as { shape?: unknown }).shape;
  return typeof shape === "object" && shape !== null ? (shape as Record<string, z.ZodType>) : undefined;
}

/** The default the app or the schema fills in for a missing key: `(none)` when the key is optional without one. */
function defaultText(app: AgentApp, shape: Record<string, z.ZodType> | undefined, key: string): string {
  if (app.defaults && Object.hasOwn(app.defaults, key)) {
    const v = app.defaults[key];
    return typeof v === "string" ? v : JSON.stringify(v);
  }
  const field = shape?.[key];
  if (!field) return "(none)";
  const r = field.safeParse(undefined);
  if (!r.success) return "(required)";
  if (r.data === undefined) return "(none)";
  return typeof r.data === "string" ? r.data : JSON.stringify(r.data);
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines;
}
