import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { extendConfigSchema, type AgentApp } from "@chainwarden/agent";
import { fwaasIptablesPlugin } from "@chainwarden/fwaas-iptables";
import { l3NatPlugin } from "@chainwarden/l3-nat";
import { z } from "zod";

const manifest = createRequire(import.meta.url)("../package.json") as { version: string };

/**
 * Router namespaces are `<namespace_prefix><router id>`: a router id is a 36-character UUID and
 * `ip netns` names stop at 64 characters, so the prefix keeps to 28 safe characters.
 */
const NAMESPACE_PREFIX = /^(?![.-])[A-Za-z0-9_.-]{1,28}$/;

/** The l3 agent's config: the framework's keys plus Neutron's l3-agent options. */
export const l3AgentConfigSchema = extendConfigSchema({
  namespace_prefix: z.string().regex(NAMESPACE_PREFIX, "1 to 28 letters, digits, _ . - (not first)").default("qrouter-"),
  /** Neutron `metadata_port`: where the metadata proxy listens inside a router namespace. */
  metadata_port: z.number().int().min(1).max(65535).default(9697),
  /** Neutron `enable_metadata_proxy`: redirect 169.254.169.254:80 to the proxy. */
  enable_metadata_proxy: z.boolean().default(true),
});

export type L3AgentConfig = z.output<typeof l3AgentConfigSchema>;

export const l3AgentApp: AgentApp = {
  name: "l3-agent",
  version: manifest.version,
  description: "Neutron's l3 agent iptables (routers as namespaces: NAT, metadata, floating IPs, FWaaS)",
  configSchema: l3AgentConfigSchema,
  // Neutron's wrap name for this agent, so rules a Neutron agent left behind are adopted without a flush.
  configDefaults: { wrap_name: "neutron-l3-agent" },
  // Routers (NAT, metadata, floating IPs) first; FWaaS hangs off its router extension point.
  defaultPlugins: [l3NatPlugin, fwaasIptablesPlugin],
  appDir: fileURLToPath(new URL("..", import.meta.url)),
  appFlags: [
    {
      flag: "namespace-prefix",
      key: "namespace_prefix",
      type: "string",
      description: "router namespaces are PREFIX<router id>; a prefix of your own runs isolated from the host's routers",
    },
    { flag: "wrap-name", key: "wrap_name", type: "string", description: "the prefix of this agent's chains (at most 16 characters)" },
    { flag: "metadata-port", key: "metadata_port", type: "number", description: "port of the metadata proxy inside a router namespace" },
    { flag: "enable-metadata-proxy", key: "enable_metadata_proxy", type: "boolean", description: "redirect 169.254.169.254:80 to the metadata proxy" },
  ],
  notes: [
    "Built in: l3-nat (routers in namespaces: interfaces, metadata redirect and proxy, SNAT, floating IPs; options under plugin_options.l3-nat: interface_driver linuxbridge|noop, bridge_namespace, metadata_upstream, metadata_proxy process|external, use_random_fully) and fwaas-iptables (FWaaS v1 firewalls and v2 firewall groups on router ports). State: { routers: [...], firewalls: [...], firewall_groups: [...] } in Neutron's shapes.",
  ],
  examples: [
    "apply --once --state routers.json --namespace-prefix test-",
    "status --config /etc/chainwarden/l3-agent.yaml",
  ],
};
