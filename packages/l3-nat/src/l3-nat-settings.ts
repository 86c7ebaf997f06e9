import type { AgentConfig } from "@chainwarden/agent";
import { z } from "zod";
import { parseMetadataUpstream, type MetadataUpstream } from "./metadata-proxy.js";

const NAMESPACE = /^(?![.-])[A-Za-z0-9_.-]{1,64}$/;
const MARK = /^0x[0-9a-f]{1,4}$/;

/** Neutron's default `metadata_proxy_socket` (`$state_path/metadata_proxy`), where its metadata agent listens. */
export const DEFAULT_METADATA_UPSTREAM = "/var/lib/neutron/metadata_proxy";

/**
 * The plugin's options (`plugin_options.l3-nat` in the agent config). Names are Neutron's where
 * Neutron has the option.
 */
export const l3NatOptionsSchema = z.strictObject({
  /** Which interface driver plugs router ports: `linuxbridge`, `noop`, or one another plugin adds. */
  interface_driver: z.string().regex(/^[a-z][a-z0-9_-]*$/, "a driver name such as linuxbridge or noop").default("linuxbridge"),
  /** linuxbridge: the namespace that holds the bridges and the outer veth ends (default: the host's). */
  bridge_namespace: z.string().regex(NAMESPACE, "not a valid network namespace name").optional(),
  /** Where the metadata proxies forward to: a unix socket path (Neutron's metadata agent) or an http(s) URL. */
  metadata_upstream: z
    .string()
    .default(DEFAULT_METADATA_UPSTREAM)
    .superRefine((v, ctx) => {
      try {
        parseMetadataUpstream(v);
      } catch (err) {
        ctx.addIssue({ code: "custom", message: err instanceof Error ? err.message : String(err) });
      }
    }),
  /**
   * `process`: a metadata proxy per router, run by the agent. `external`: only the rules; something
   * else listens on `metadata_port` in each router namespace.
   */
  metadata_proxy: z.enum(["process", "external"]).default("process"),
  /**
   * Neutron `[AGENT] check_child_processes_interval`, in seconds: how often the metadata proxies
   * (adopted ones too) are checked and a dead one started again; 0 leaves it to the router's next
   * reconcile. Neutron's default is 60; ours is 5.
   */
  check_child_processes_interval: z.number().min(0).max(3600).default(5),
  /** Neutron `[AGENT] use_random_fully`: `--random-fully` on SNAT where iptables has it. */
  use_random_fully: z.boolean().default(true),
  /** Neutron `metadata_access_mark`. */
  metadata_access_mark: z.string().regex(MARK, "a mark such as 0x1 (lower 16 bits)").default("0x1"),
  /** Neutron `external_ingress_mark`. */
  external_ingress_mark: z.string().regex(MARK, "a mark such as 0x2 (lower 16 bits)").default("0x2"),
});

export type L3NatOptions = z.output<typeof l3NatOptionsSchema>;

/** The agent config keys the plugin reads (the l3-agent app declares them; other apps get the defaults). */
const agentKeys = z.object({
  namespace_prefix: z.string().regex(/^(?![.-])[A-Za-z0-9_.-]{1,28}$/, "1 to 28 letters, digits, _ . - (not first)").default("qrouter-"),
  metadata_port: z.number().int().min(1).max(65535).default(9697),
  enable_metadata_proxy: z.boolean().default(true),
  state_path: z.string().regex(/^\/[^\0]*$/, "an absolute path").default("/var/lib/chainwarden"),
});

export interface L3NatSettings {
  readonly namespacePrefix: string;
  readonly metadataPort: number;
  readonly enableMetadataProxy: boolean;
  /** Run a proxy process per router (`metadata_proxy: process`). */
  readonly runMetadataProxy: boolean;
  readonly useIpv6: boolean;
  readonly metadataUpstream: MetadataUpstream;
  readonly useRandomFully: boolean;
  readonly metadataAccessMark: string;
  readonly externalIngressMark: string;
  readonly interfaceDriver: string;
  readonly bridgeNamespace: string | undefined;
  /** Neutron's `state_path` (agent config): metadata proxy pid files in `external/pids/<router id>.pid`. */
  readonly statePath: string;
  /** `check_child_processes_interval` in milliseconds (0: no polling). */
  readonly checkChildProcessesIntervalMs: number;
}

/** Options plus the agent's keys; throws naming the bad key. */
export function resolveL3NatSettings(config: AgentConfig, options: L3NatOptions): L3NatSettings {
  const keys = agentKeys.safeParse({
    namespace_prefix: config["namespace_prefix"],
    metadata_port: config["metadata_port"],
    enable_metadata_proxy: config["enable_metadata_proxy"],
    state_path: config["state_path"],
  });
  if (!keys.success) {
    throw new Error(`invalid agent config for l3-nat: ${keys.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  }
  if (options.metadata_access_mark === options.external_ingress_mark) throw new Error("metadata_access_mark and external_ingress_mark must differ");
  return {
    namespacePrefix: keys.data.namespace_prefix,
    metadataPort: keys.data.metadata_port,
    enableMetadataProxy: keys.data.enable_metadata_proxy,
    runMetadataProxy: keys.data.enable_metadata_proxy && options.metadata_proxy === "process",
    useIpv6: config.use_ipv6,
    metadataUpstream: parseMetadataUpstream(options.metadata_upstream),
    useRandomFully: options.use_random_fully,
    metadataAccessMark: options.metadata_access_mark,
    externalIngressMark: options.external_ingress_mark,
    interfaceDriver: options.interface_driver,
    bridgeNamespace: options.bridge_namespace,
    statePath: keys.data.state_path,
    checkChildProcessesIntervalMs: Math.round(options.check_child_processes_interval * 1000),
  };
}
