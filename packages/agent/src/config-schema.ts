import { NAMESPACE_NAME } from "@chainwarden/core";
import { z } from "zod";

/** A network namespace name as core accepts it (a file under /run/netns, an ip(8) argument). */
export const namespaceNameSchema = z.string().regex(NAMESPACE_NAME, "not a valid network namespace name: letters, digits, _ . - (not first), at most 64");

const HOST_PORT = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/;

/**
 * The options every agent has. Names follow Neutron's where Neutron has one (`comment_iptables_rules`,
 * `use_ipv6`); the rest are ours. Some are also CLI flags: `log_level` ↔ `--log-level`. An app's
 * configuration adds its built-in plugins' settings (`composeAgentConfig`); unknown keys are errors.
 */
export const baseConfigShape = {
  /** The default file state source: a JSON/YAML file or a directory of them. */
  state: z.string().min(1).optional(),
  /**
   * The largest state file the file state source reads, in bytes (64 MiB); a larger file is a problem
   * and the last good state stays in force. At most 256 MiB: a file is decoded into one string, and
   * parsing YAML takes tens of times the file's size in memory.
   */
  state_max_bytes: z.number().int().min(1).max(256 * 1024 * 1024).default(64 * 1024 * 1024),
  /**
   * Neutron's `state_path`: where the agent keeps what must outlive its process (metadata proxies'
   * pid files under `external/pids/`, as Neutron keeps them).
   */
  state_path: z.string().regex(/^\/[^\0]*$/, "an absolute path").default("/var/lib/chainwarden"),
  backend: z.enum(["auto", "nft", "legacy"]).default("auto"),
  log_level: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
  /** `HOST:PORT` for the Prometheus endpoint; off unless set. A bare port binds 127.0.0.1. */
  metrics_address: z
    .string()
    .transform((v) => (/^\d+$/.test(v) ? `127.0.0.1:${v}` : v))
    .pipe(z.string().regex(HOST_PORT, "expected HOST:PORT"))
    .optional(),
  /**
   * The namespace for resources that name none (the l2 agent's bridge namespace); unset: the
   * host's own. A namespace of your own runs the agent isolated from the host's rules.
   */
  netns: namespaceNameSchema.optional(),
  /** The agent's wrap name (Neutron: the binary name cut to 16 characters). */
  wrap_name: z.string().min(1).max(16).regex(/^[A-Za-z0-9_.-]+$/, "letters, digits, _ . - only"),
  comment_iptables_rules: z.boolean().default(true),
  use_ipv6: z.boolean().default(true),
  /** Seconds between full resyncs (with drift repair); 0 turns them off. */
  resync_interval: z.number().int().min(0).default(60),
  /**
   * Least time between the starts of two runs of a namespace: a change to a namespace that has not
   * run within it applies at once; changes within it wait for its end and apply as one run.
   */
  coalesce_ms: z.number().int().min(0).max(60_000).default(50),
  /** Namespaces applied in parallel. */
  max_parallel_namespaces: z.number().int().min(1).max(256).default(4),
  retry_initial_delay_ms: z.number().int().min(1).default(500),
  retry_max_delay_ms: z.number().int().min(1).default(30_000),
  /** Seconds iptables-restore waits for the xtables lock per attempt (`-w`). */
  lock_wait_seconds: z.number().int().min(1).max(600).default(5),
  /** Extra plugins by npm package name, resolved from the app. */
  plugins: z
    .array(z.strictObject({ package: z.string().min(1), options: z.record(z.string(), z.unknown()).optional() }))
    .default([]),
  /** Options for the app's default plugins, by plugin name. */
  plugin_options: z.record(z.string(), z.record(z.string(), z.unknown())).default({}),
};

export const baseConfigSchema = z.strictObject(baseConfigShape);

export type BaseConfig = z.infer<typeof baseConfigSchema>;

/** The validated configuration: the base keys plus whatever the app added. */
export type AgentConfig = BaseConfig & Record<string, unknown>;

/** An app's schema: the base keys plus its own (defaults included). */
export function extendConfigSchema<S extends z.ZodRawShape>(shape: S) {
  // The cast keeps an app's override of a base key (e.g. `wrap_name` with a default) typed as the app's.
  return z.strictObject({ ...baseConfigShape, ...shape } as Omit<typeof baseConfigShape, keyof S> & S);
}
