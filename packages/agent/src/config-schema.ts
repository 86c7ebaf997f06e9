import { NAMESPACE_NAME } from "@chainwarden/core";
import { z } from "zod";

/** A network namespace name as core accepts it (a file under /run/netns, an ip(8) argument). */
export const namespaceNameSchema = z.string().regex(NAMESPACE_NAME, "not a valid network namespace name: letters, digits, _ . - (not first), at most 64");

const HOST_PORT = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/;

/**
 * The options every agent has. Names follow Neutron's where Neutron has one (`comment_iptables_rules`,
 * `use_ipv6`); the rest are ours. Some are also CLI flags: `log_level` ↔ `--log-level`. An app's
 * configuration adds its built-in plugins' settings (`composeAgentConfig`); unknown keys are errors.
 * Every key says what it is with `.describe()`: `docs/configuration.md` is generated from it
 * (`configReference`).
 */
export const baseConfigShape = {
  state: z.string().min(1).optional().describe("The default file state source: a JSON/YAML file or a directory of them, watched during `run`. Unset: no file source (a plugin's source, such as the RPC one, delivers the state)."),
  state_max_bytes: z
    .number()
    .int()
    .min(1)
    .max(256 * 1024 * 1024)
    .default(64 * 1024 * 1024)
    .describe(
      "The largest state file the file state source reads, in bytes; a larger file is a problem and the last good state stays in force. At most 256 MiB: a file is decoded into one string, and parsing YAML takes tens of times the file's size in memory.",
    ),
  state_path: z
    .string()
    .regex(/^\/[^\0]*$/, "an absolute path")
    .default("/var/lib/chainwarden")
    .describe("Neutron's `state_path`: where the agent keeps what must outlive its process (metadata proxies' pid files under `external/pids/`, as Neutron keeps them)."),
  backend: z.enum(["auto", "nft", "legacy"]).default("auto").describe("Which iptables to drive: `nft` (iptables-nft), `legacy` (iptables-legacy), or `auto`: the one whose rules the host already has (nft when neither has any)."),
  log_level: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info").describe("The pino log level, or `silent`. Neutron's `[DEFAULT] debug = true` makes it `debug` (false leaves it)."),
  log_format: z
    .enum(["auto", "json", "pretty"])
    .default("auto")
    .describe("How log lines are written: `json` (pino's JSON lines, one object per line), `pretty` (pino-pretty's text, for a human), `auto`: JSON unless the output is a terminal (under systemd it never is)."),
  log_time: z
    .enum(["epoch", "iso"])
    .default("epoch")
    .describe("The `time` of each log line: `epoch` (pino's own: milliseconds since 1970 as a number) or `iso` (ISO 8601 text in UTC, `2026-01-31T12:00:00.000Z`)."),
  metrics_address: z
    .string()
    .transform((v) => (/^\d+$/.test(v) ? `127.0.0.1:${v}` : v))
    .pipe(z.string().regex(HOST_PORT, "expected HOST:PORT"))
    .optional()
    .describe("`HOST:PORT` (or `[IPV6]:PORT`) to serve Prometheus metrics on (`/metrics`) and health (`/healthz`, `/readyz`) during `run`; a bare port binds 127.0.0.1. Off unless set."),
  stuck_after_seconds: z
    .number()
    .int()
    .min(1)
    .default(300)
    .describe("A namespace run (the handlers and iptables-restore of one namespace) in flight for longer than this makes `/healthz` answer 503: the reconcile loop is stuck."),
  netns: namespaceNameSchema
    .optional()
    .describe("The network namespace for resources that name none (the l2 agent's bridge namespace). Unset: the host's own. A namespace of your own runs the agent isolated from the host's rules."),
  wrap_name: z
    .string()
    .min(1)
    .max(16)
    .regex(/^[A-Za-z0-9_.-]+$/, "letters, digits, _ . - only")
    .describe("The agent's wrap name, the prefix of its chains (Neutron: the binary name cut to 16 characters)."),
  comment_iptables_rules: z.boolean().default(true).describe("Neutron's `comment_iptables_rules`: add Neutron's comments to the rules that have one."),
  use_ipv6: z.boolean().default(true).describe("Program IPv6 (ip6tables) as well as IPv4."),
  resync_interval: z.number().int().min(0).default(60).describe("Seconds between full resyncs, which also repair drift (rules changed behind the agent's back); 0 turns them off."),
  coalesce_ms: z
    .number()
    .int()
    .min(0)
    .max(60_000)
    .default(50)
    .describe("Least time between the starts of two runs of a namespace: a change to a namespace that has not run within it applies at once; changes within it wait for its end and apply as one run."),
  max_parallel_namespaces: z.number().int().min(1).max(256).default(4).describe("Namespaces applied in parallel."),
  retry_initial_delay_ms: z.number().int().min(1).default(500).describe("The first wait before a failed namespace is retried; it doubles with each failure in a row."),
  retry_max_delay_ms: z.number().int().min(1).default(30_000).describe("The longest wait between retries of a failed namespace."),
  lock_wait_seconds: z.number().int().min(1).max(600).default(5).describe("Seconds iptables-restore waits for the xtables lock per attempt (`-w`)."),
  plugins: z
    .array(z.strictObject({ package: z.string().min(1), options: z.record(z.string(), z.unknown()).optional() }))
    .default([])
    .describe("Extra plugins by npm package name, in order, each with its options: `[{ package, options }]`; resolved from the app's directory."),
  plugin_options: z
    .record(z.string(), z.record(z.string(), z.unknown()))
    .default({})
    .describe("Options for the app's built-in plugins, by plugin name (`plugin_options.l3-nat.interface_driver`)."),
};

/**
 * The framework's config keys (`state`, `backend`, `wrap_name`, `log_level`, ...), strict: an
 * unknown key is a problem. An app's schema is this plus its built-in plugins' settings
 * (`composeAgentConfig`).
 */
export const baseConfigSchema = z.strictObject(baseConfigShape);

/** The framework's config, as `baseConfigSchema` parses it. */
export type BaseConfig = z.infer<typeof baseConfigSchema>;

/** The validated configuration: the base keys plus whatever the app added. */
export type AgentConfig = BaseConfig & Record<string, unknown>;

/** An app's schema: the base keys plus its own (defaults included). */
export function extendConfigSchema<S extends z.ZodRawShape>(shape: S) {
  // The cast keeps an app's override of a base key (e.g. `wrap_name` with a default) typed as the app's.
  return z.strictObject({ ...baseConfigShape, ...shape } as Omit<typeof baseConfigShape, keyof S> & S);
}
