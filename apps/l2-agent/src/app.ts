import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { extendConfigSchema, type AgentApp, type AgentConfig } from "@chainwarden/agent";
import { l2SecgroupPlugin } from "@chainwarden/l2-secgroup";
import { z } from "zod";

const manifest = createRequire(import.meta.url)("../package.json") as { version: string };

/** The names `ip netns` accepts (a file under /run/netns). */
const NETNS = /^(?![.-])[A-Za-z0-9_.-]{1,64}$/;

/** The l2 agent's config: the framework's keys plus Neutron's l2 (Linux bridge) firewall options. */
export const l2AgentConfigSchema = extendConfigSchema({
  /** The namespace that holds the bridge and the rules; unset: the host's own. */
  netns: z.string().regex(NETNS, "not a valid network namespace name").optional(),
  /** Neutron `enable_ipset`: remote-group members as ipsets instead of one rule per address. */
  enable_ipset: z.boolean().default(true),
  /** Neutron `firewall_driver` (securitygroup section): hybrid plugs each port through its own bridge. */
  firewall_driver: z.enum(["iptables", "iptables_hybrid"]).default("iptables"),
  /** Filter a port once its tap device exists on the host (Neutron's behaviour); off: every port in the state at once. */
  wait_for_devices: z.boolean().default(true),
  /**
   * Neutron `polling_interval` (seconds): while a port waits for its tap, look for it this often too.
   * Taps are reported as they appear by a device monitor; this is the safety net.
   */
  polling_interval: z.number().positive().max(3_600).default(2),
});

export type L2AgentConfig = z.output<typeof l2AgentConfigSchema>;

export const l2AgentApp: AgentApp = {
  name: "l2-agent",
  version: manifest.version,
  description: "Neutron's l2 agent firewall (security groups as per-port iptables chains on a Linux bridge)",
  configSchema: l2AgentConfigSchema,
  // Neutron's wrap name for this agent, so rules a Neutron agent left behind are adopted without a flush.
  configDefaults: { wrap_name: "neutron-linuxbri" },
  defaultPlugins: [l2SecgroupPlugin],
  appDir: fileURLToPath(new URL("..", import.meta.url)),
  appFlags: [
    {
      flag: "netns",
      key: "netns",
      type: "string",
      description: "the network namespace that holds the bridge and the rules (default: the host's own)",
    },
    { flag: "wrap-name", key: "wrap_name", type: "string", description: "the prefix of this agent's chains (at most 16 characters)" },
    { flag: "enable-ipset", key: "enable_ipset", type: "boolean", description: "match remote security group members with ipsets" },
    { flag: "firewall-driver", key: "firewall_driver", type: "string", description: "iptables or iptables_hybrid" },
    { flag: "wait-for-devices", key: "wait_for_devices", type: "boolean", description: "filter a port only once its tap device exists (off: filter every port in the state at once)" },
    { flag: "polling-interval", key: "polling_interval", type: "number", description: "seconds between looks for a waiting port's tap, besides the device monitor's events" },
  ],
  defaultNamespace: (config: AgentConfig) => config.netns as string | undefined,
  notes: [
    "Built in: l2-secgroup (Neutron's IptablesFirewallDriver, aliases iptables and iptables_hybrid: per-port chains on the bridge, anti-spoofing, DHCP and ICMPv6 rules, remote groups with or without ipset, conntrack zones and cleanup). State: { devices: {port_id: port}, security_groups: {sg_id: [rules]}, sg_member_ips: {...}, trusted_devices: [...] } in Neutron's shapes.",
  ],
  examples: ["apply --once --state ports.yaml --netns lab-bridge", "plan --netns lab-bridge --state ports.yaml"],
};
