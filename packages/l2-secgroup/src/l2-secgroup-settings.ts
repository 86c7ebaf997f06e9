import type { PluginNeutronOptions, SettingFlag } from "@chainwarden/agent";
import { z } from "zod";
import { FIREWALL_DRIVERS, firewallFlavor, type FirewallFlavor } from "./firewall-flavor.js";
import { DEFAULT_L2_LIMITS, type L2Limits } from "./l2-state.js";

const driverAlias = z.string().refine((v) => FIREWALL_DRIVERS.has(v), { message: `expected one of ${[...FIREWALL_DRIVERS.keys()].join(", ")}` });

/**
 * The agent config keys the plugin owns (Neutron's names where Neutron has them): the l2 agent's
 * top-level keys and flags, declared once here.
 */
export const l2SecgroupSettingsKeys = {
  firewall_driver: driverAlias.default("iptables").describe("Neutron `[securitygroup] firewall_driver`: `iptables`, `iptables_hybrid`, or Neutron's class paths for them."),
  enable_ipset: z.boolean().default(true).describe("Neutron `enable_ipset`: remote-group members as ipsets instead of one rule per address."),
  wait_for_devices: z.boolean().default(true).describe("Filter a port once its tap exists (Neutron's behaviour); off: every port in the state at once."),
  polling_interval: z.number().positive().max(3_600).default(2).describe("Neutron `polling_interval` (seconds): while a port waits for its tap, look for it this often too (a device monitor reports taps as they appear; this is the safety net). An hour at most."),
};

/** The l2 agent's top-level keys (`l2SecgroupSettingsKeys`) as parsed: validated, defaults filled in. */
export type L2SecgroupAgentSettings = z.output<z.ZodObject<typeof l2SecgroupSettingsKeys>>;

/** The command-line flags of those keys (`--firewall-driver`, `--enable-ipset`, ...), one per key. */
export const l2SecgroupSettingsFlags: readonly SettingFlag[] = [
  { flag: "firewall-driver", key: "firewall_driver", type: "string", description: "iptables or iptables_hybrid (or Neutron's class paths for them)" },
  { flag: "enable-ipset", key: "enable_ipset", type: "boolean", description: "match remote security group members with ipsets" },
  { flag: "wait-for-devices", key: "wait_for_devices", type: "boolean", description: "filter a port only once its tap device exists (off: filter every port in the state at once)" },
  { flag: "polling-interval", key: "polling_interval", type: "number", description: "seconds between looks for a waiting port's tap, besides the device monitor's events" },
];

/**
 * Neutron's Linux bridge agent options (`neutron.conf`, `linuxbridge_agent.ini` given with
 * `--config-file`) that set the plugin's settings, and those it only checks. Unset, `firewall_driver`
 * is `iptables` here (Neutron's is `noop`, which this agent does not do); `wait_for_devices` has no
 * Neutron option.
 */
export const l2SecgroupNeutronOptions: PluginNeutronOptions<typeof l2SecgroupSettingsKeys> = {
  keys: {
    firewall_driver: {
      section: "SECURITYGROUP",
      option: "firewall_driver",
      type: "string",
      values: Object.fromEntries([...FIREWALL_DRIVERS.keys()].map((name) => [name, name])),
      unsupported: "this agent is Neutron's iptables firewall; noop and openvswitch are not supported",
    },
    enable_ipset: { section: "SECURITYGROUP", option: "enable_ipset", type: "boolean", default: true },
    polling_interval: { section: "AGENT", option: "polling_interval", type: "integer", default: 2 },
  },
  reads: [
    {
      section: "SECURITYGROUP",
      option: "enable_security_group",
      type: "boolean",
      default: true,
      values: { true: true },
      unsupported: "security groups are this agent's only job: with them off, run no l2-agent",
    },
    {
      // Registered by Neutron in the group `agent`.
      section: "agent",
      option: "extensions",
      type: "list",
      default: [],
      values: {},
      unsupported: "no l2 agent extension (qos, fdb, log, dhcp, local_ip) is implemented",
    },
  ],
};

/** The plugin's options (`plugin_options.l2-secgroup`): what is not a Neutron option. */
export const l2SecgroupOptionsSchema = z.strictObject({
  wrap_name: z
    .string()
    .min(1)
    .max(16)
    .regex(/^[A-Za-z0-9_.-]+$/, "letters, digits, _ . - only")
    .optional().describe("The chain prefix; default the agent's `wrap_name` for `iptables`, `neutron-openvswi` (Neutron's OVS agent) for `iptables_hybrid`."),
  max_rules_per_port: z
    .number()
    .int()
    .min(1)
    .max(1_000_000)
    .default(DEFAULT_L2_LIMITS.maxRulesPerPort)
    .describe("The most rules one port's security groups may make (its groups' rules and its own, remote groups expanded one rule per member when ipsets are off); a port over it is an invalid resource, kept as the kernel has it."),
  max_members_per_group: z
    .number()
    .int()
    .min(1)
    .max(DEFAULT_L2_LIMITS.maxMembersPerGroup)
    .default(DEFAULT_L2_LIMITS.maxMembersPerGroup)
    .describe("The most members of one remote group or address group, per ethertype (an ipset's `maxelem`); the ports that use a group over it are invalid resources."),
});

/** `plugin_options.l2-secgroup` as `l2SecgroupOptionsSchema` leaves it: validated, defaults filled in. */
export type L2SecgroupOptions = z.output<typeof l2SecgroupOptionsSchema>;

/** Everything the plugin's handler needs, resolved once from its settings and options. */
export interface L2SecgroupSettings {
  readonly flavor: FirewallFlavor;
  readonly enableIpset: boolean;
  readonly waitForDevices: boolean;
  readonly devicePollIntervalMs: number;
  /** Undefined: the agent's `wrap_name`. */
  readonly wrapName: string | undefined;
  readonly limits: L2Limits;
}

/**
 * The handler's settings from the plugin's keys and options, resolved once: the firewall layout, the poll interval in milliseconds,
 * the wrap name (the layout's Neutron default for `iptables_hybrid` unless set). Throws `PluginError` for an unknown `firewall_driver`.
 */
export function resolveL2SecgroupSettings(settings: L2SecgroupAgentSettings, options: L2SecgroupOptions): L2SecgroupSettings {
  const flavor = firewallFlavor(settings.firewall_driver);
  return {
    flavor,
    enableIpset: settings.enable_ipset,
    waitForDevices: settings.wait_for_devices,
    devicePollIntervalMs: settings.polling_interval * 1000,
    wrapName: options.wrap_name ?? (flavor.alias === "iptables" ? undefined : flavor.defaultWrapName),
    limits: { maxRulesPerPort: options.max_rules_per_port, maxMembersPerGroup: options.max_members_per_group },
  };
}
