import { createServiceToken, namespaceNameSchema, PluginError, type BaseConfig, type PluginNeutronOptions, type SettingFlag } from "@chainwarden/agent";
import { z } from "zod";
import type { BridgeMode } from "./linuxbridge-interface-driver.js";
import { parseMetadataUpstream, type MetadataUpstream } from "./metadata-proxy.js";

const MARK = /^0x[0-9a-f]{1,4}$/;

/** Neutron's default `metadata_proxy_socket` (`$state_path/metadata_proxy`), where its metadata agent listens. */
export const DEFAULT_METADATA_UPSTREAM = "/var/lib/neutron/metadata_proxy";

/**
 * The plugin's options (`plugin_options.l3-nat` in the agent config). Names are Neutron's where
 * Neutron has the option.
 */
export const l3NatOptionsSchema = z.strictObject({
  interface_driver: z.string().regex(/^[a-z][a-z0-9_-]*$/, "a driver name such as linuxbridge or noop").default("linuxbridge").describe("Which interface driver plugs router ports: `linuxbridge`, `noop`, or one another plugin adds."),
  bridge_namespace: namespaceNameSchema.optional().describe("linuxbridge: the namespace that holds the bridges and the outer veth ends (default: the host's)."),
  bridge_mode: z.enum(["auto", "neutron", "standalone"]).default("auto").describe("linuxbridge: who owns the networks' bridges. `neutron`: neutron-linuxbridge-agent (the driver makes and removes veths only, as Neutron's BridgeInterfaceDriver); `standalone`: this agent (it creates a missing bridge, marks it, and deletes a bridge of its own with its last port); `auto`: `neutron` when neutron-server delivers the routers (neutron-l3-rpc with a transport_url), else `standalone`."),
  metadata_upstream: z
    .string()
    .default(DEFAULT_METADATA_UPSTREAM)
    .superRefine((v, ctx) => {
      try {
        parseMetadataUpstream(v);
      } catch (err) {
        ctx.addIssue({ code: "custom", message: err instanceof Error ? err.message : String(err) });
      }
    }).describe("Where the metadata proxies forward to: a unix socket path (Neutron's metadata agent) or an http(s) URL."),
  metadata_proxy: z.enum(["process", "external"]).default("process").describe("`process`: a metadata proxy per router, run by the agent. `external`: only the rules; something else listens on `metadata_port` in each router namespace."),
  check_child_processes_interval: z.number().min(0).max(3600).default(5).describe("Neutron `[AGENT] check_child_processes_interval`, in seconds: how often the metadata proxies (adopted ones too) are checked and a dead one started again; 0 leaves it to the router's next reconcile. Neutron's default is 60; ours is 5."),
  use_random_fully: z.boolean().default(true).describe("Neutron `[AGENT] use_random_fully`: `--random-fully` on SNAT where iptables has it."),
  metadata_access_mark: z.string().regex(MARK, "a mark such as 0x1 (lower 16 bits)").default("0x1").describe("Neutron `metadata_access_mark`."),
  external_ingress_mark: z.string().regex(MARK, "a mark such as 0x2 (lower 16 bits)").default("0x2").describe("Neutron `external_ingress_mark`."),
});

/** `plugin_options.l3-nat` as `l3NatOptionsSchema` leaves it: validated, every default filled in. */
export type L3NatOptions = z.output<typeof l3NatOptionsSchema>;

/**
 * The agent config keys the plugin owns (Neutron's l3-agent options): they are the l3 agent's
 * top-level keys and flags. Router namespaces are `<namespace_prefix><router id>`: a router id is a
 * 36-character UUID and `ip netns` names stop at 64 characters, so the prefix keeps to 28.
 */
export const l3NatSettingsKeys = {
  namespace_prefix: z
    .string()
    .regex(/^(?![.-])[A-Za-z0-9_.-]{1,28}$/, "1 to 28 letters, digits, _ . - (not first)")
    .default("qrouter-")
    .describe("Router namespaces are `<namespace_prefix><router id>` (Neutron's are `qrouter-`); a prefix of your own runs the agent isolated from the host's routers. At most 28 characters."),
  metadata_port: z.number().int().min(1).max(65535).default(9697).describe("Neutron `metadata_port`: where the metadata proxy listens inside a router namespace."),
  enable_metadata_proxy: z.boolean().default(true).describe("Neutron `enable_metadata_proxy`: redirect 169.254.169.254:80 to the proxy."),
};

/** The l3 agent's top-level keys (`l3NatSettingsKeys`) as parsed: validated, defaults filled in. */
export type L3NatAgentSettings = z.output<z.ZodObject<typeof l3NatSettingsKeys>>;

/** The flags of those keys. */
export const l3NatSettingsFlags: readonly SettingFlag[] = [
  {
    flag: "namespace-prefix",
    key: "namespace_prefix",
    type: "string",
    description: "router namespaces are PREFIX<router id>; a prefix of your own runs isolated from the host's routers",
  },
  { flag: "metadata-port", key: "metadata_port", type: "number", description: "port of the metadata proxy inside a router namespace" },
  { flag: "enable-metadata-proxy", key: "enable_metadata_proxy", type: "boolean", description: "redirect 169.254.169.254:80 to the metadata proxy" },
];

/**
 * Neutron's l3 agent options (`neutron.conf`, `l3_agent.ini` given with `--config-file`) that set the
 * plugin's settings and options, and those it only checks. `namespace_prefix`, `bridge_namespace`
 * and `metadata_proxy` have no Neutron option. Neutron's defaults are given for `$name`s; an option
 * no file sets leaves ours (`check_child_processes_interval`: 5 here, 60 in Neutron).
 */
export const l3NatNeutronOptions: PluginNeutronOptions<typeof l3NatSettingsKeys> = {
  keys: {
    metadata_port: { section: "DEFAULT", option: "metadata_port", type: "port", default: 9697 },
    enable_metadata_proxy: { section: "DEFAULT", option: "enable_metadata_proxy", type: "boolean", default: true },
  },
  options: {
    interface_driver: {
      section: "DEFAULT",
      option: "interface_driver",
      type: "string",
      // Neutron loads a driver by its alias or its class path.
      values: {
        linuxbridge: "linuxbridge",
        "neutron.agent.linux.interface.BridgeInterfaceDriver": "linuxbridge",
        null: "noop",
        "neutron.agent.linux.interface.NullDriver": "noop",
      },
      unsupported: "router ports are plugged into Linux bridges or left to something else; Open vSwitch is not supported",
    },
    // Where Neutron's metadata agent listens: the socket the proxies forward to.
    metadata_upstream: { section: "DEFAULT", option: "metadata_proxy_socket", type: "string", default: "$state_path/metadata_proxy" },
    use_random_fully: { section: "AGENT", option: "use_random_fully", type: "boolean", default: true },
    check_child_processes_interval: { section: "AGENT", option: "check_child_processes_interval", type: "integer", default: 60 },
    metadata_access_mark: { section: "DEFAULT", option: "metadata_access_mark", type: "string", default: "0x1" },
    external_ingress_mark: { section: "DEFAULT", option: "external_ingress_mark", type: "string", default: "0x2" },
  },
  reads: [
    {
      section: "DEFAULT",
      option: "agent_mode",
      type: "string",
      default: "legacy",
      values: { legacy: "legacy" },
      unsupported: "DVR is not implemented: routers are legacy (centralised) routers",
    },
    {
      section: "DEFAULT",
      option: "handle_internal_only_routers",
      type: "boolean",
      default: true,
      values: { true: true },
      unsupported: "every router in the state is handled, with or without a gateway",
    },
    {
      section: "AGENT",
      option: "check_child_processes_action",
      type: "string",
      default: "respawn",
      values: { respawn: "respawn" },
      unsupported: "a metadata proxy that dies is started again; the agent does not exit",
    },
  ],
};

/**
 * The plugin's settings resolved once (`resolveL3NatSettings`) from its keys, its options and the framework config; read-only,
 * shared with other plugins through `l3NatSettingsService`.
 */
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
  /** `bridge_mode` as configured (`auto` is decided on first use: `resolveBridgeMode`). */
  readonly bridgeMode: "auto" | BridgeMode;
  /** Neutron's `state_path` (agent config): metadata proxy pid files in `external/pids/<router id>.pid`. */
  readonly statePath: string;
  /** `check_child_processes_interval` in milliseconds (0: no polling). */
  readonly checkChildProcessesIntervalMs: number;
}

/** The plugin's settings, options and the framework keys it reads, resolved once. */
export function resolveL3NatSettings(settings: L3NatAgentSettings, options: L3NatOptions, config: Pick<BaseConfig, "use_ipv6" | "state_path">): L3NatSettings {
  if (options.metadata_access_mark === options.external_ingress_mark) {
    throw new PluginError("PLUGIN_OPTIONS", "invalid options for plugin l3-nat: metadata_access_mark and external_ingress_mark must differ", "l3-nat");
  }
  return {
    namespacePrefix: settings.namespace_prefix,
    metadataPort: settings.metadata_port,
    enableMetadataProxy: settings.enable_metadata_proxy,
    runMetadataProxy: settings.enable_metadata_proxy && options.metadata_proxy === "process",
    useIpv6: config.use_ipv6,
    metadataUpstream: parseMetadataUpstream(options.metadata_upstream),
    useRandomFully: options.use_random_fully,
    metadataAccessMark: options.metadata_access_mark,
    externalIngressMark: options.external_ingress_mark,
    interfaceDriver: options.interface_driver,
    bridgeNamespace: options.bridge_namespace,
    bridgeMode: options.bridge_mode,
    statePath: config.state_path,
    checkChildProcessesIntervalMs: Math.round(options.check_child_processes_interval * 1000),
  };
}

/**
 * The l3 plugin's resolved settings, for plugins that work on its routers (FWaaS reads the namespace
 * prefix here instead of declaring it again): `env.use(l3NatSettingsService)` after l3-nat.
 */
export const l3NatSettingsService = createServiceToken<L3NatSettings>({ id: "l3-nat.settings" });

/**
 * Where the routers come from, as the plugins that deliver them say: a state source fed by
 * neutron-server (neutron-l3-rpc) calls `neutron(itsName)` while it registers (after l3-nat:
 * `env.use(l3NatControlPlaneService)`). `bridge_mode: auto` reads it on first use, once every plugin
 * has registered.
 */
export interface L3NatControlPlane {
  /** A Neutron control plane delivers the routers: neutron-linuxbridge-agent owns the bridges. */
  neutron(source: string): void;
  /** The source that said so; undefined: the routers come from files (or a source that did not say). */
  readonly neutronSource: string | undefined;
}

/** The service through which a state source says it delivers routers from neutron-server (`L3NatControlPlane`); provided by l3-nat, so `env.use` it after l3-nat. */
export const l3NatControlPlaneService = createServiceToken<L3NatControlPlane>({ id: "l3-nat.control-plane" });

/** A fresh `L3NatControlPlane`: files until a source says otherwise. */
export function createL3NatControlPlane(): L3NatControlPlane {
  let source: string | undefined;
  return {
    neutron(name: string) {
      source ??= name;
    },
    get neutronSource() {
      return source;
    },
  };
}

/** The bridge mode in force, and why (for the log line that says it). */
export function resolveBridgeMode(configured: "auto" | BridgeMode, controlPlane: L3NatControlPlane): { mode: BridgeMode; why: string } {
  if (configured !== "auto") return { mode: configured, why: "bridge_mode" };
  const source = controlPlane.neutronSource;
  return source !== undefined
    ? { mode: "neutron", why: `bridge_mode auto: routers come from neutron-server (${source}); its linuxbridge agent owns the bridges` }
    : { mode: "standalone", why: "bridge_mode auto: no Neutron control plane; this agent creates the bridges it needs and deletes its own" };
}
