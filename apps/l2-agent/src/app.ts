import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { extendConfigSchema, type AgentApp, type AgentConfig } from "@chainwarden/agent";
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
});

export type L2AgentConfig = z.output<typeof l2AgentConfigSchema>;

export const l2AgentApp: AgentApp = {
  name: "l2-agent",
  version: manifest.version,
  description: "Neutron's l2 agent firewall (security groups as per-port iptables chains on a Linux bridge)",
  configSchema: l2AgentConfigSchema,
  // Neutron's wrap name for this agent, so rules a Neutron agent left behind are adopted without a flush.
  configDefaults: { wrap_name: "neutron-linuxbri" },
  // The security-group plugin (@chainwarden/l2-secgroup) joins this list when it is built; until then
  // every plugin comes from the config file.
  defaultPlugins: [],
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
  ],
  defaultNamespace: (config: AgentConfig) => config.netns as string | undefined,
  notes: [
    "The security-group plugin (IptablesFirewallDriver) is not built yet: this release has no built-in plugins, and rules come only from plugins named in the config file (for example @chainwarden/example-plugin-static-chains).",
  ],
  examples: ["apply --once --state ports.yaml --netns lab-bridge", "plan --netns lab-bridge --state ports.yaml"],
};
