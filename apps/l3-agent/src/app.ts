import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import type { AgentApp } from "@chainwarden/agent";
import { fwaasIptablesPlugin } from "@chainwarden/fwaas-iptables";
import { l3NatPlugin } from "@chainwarden/l3-nat";
import { neutronL3RpcPlugin } from "@chainwarden/neutron-rpc";

const manifest = createRequire(import.meta.url)("../package.json") as { version: string };

/**
 * The l3 agent: the framework with l3-nat and fwaas-iptables built in. Its config keys and flags
 * are the framework's plus those the plugins declare (`namespace_prefix`, `metadata_port`,
 * `enable_metadata_proxy` are l3-nat's).
 */
export const l3AgentApp: AgentApp = {
  name: "l3-agent",
  version: manifest.version,
  description: "Neutron's l3 agent iptables (routers as namespaces: NAT, metadata, floating IPs, FWaaS)",
  // Neutron's wrap name for this agent, so rules a Neutron agent left behind are adopted without a flush.
  defaults: { wrap_name: "neutron-l3-agent" },
  // Neutron's l3 agent's IptablesManager: stateful, with nat (the framework's default, said here).
  managerDefaults: { stateless: false, nat: true },
  // Routers (NAT, metadata, floating IPs) first; FWaaS hangs off its router extension point and settings;
  // the Neutron RPC source reads l3-nat's settings (what it reports to the server).
  plugins: [l3NatPlugin, fwaasIptablesPlugin, neutronL3RpcPlugin],
  appDir: fileURLToPath(new URL("..", import.meta.url)),
  notes: [
    "Built in: l3-nat (routers in namespaces: interfaces, metadata redirect and proxy, SNAT, floating IPs; options under plugin_options.l3-nat: interface_driver linuxbridge|noop, bridge_namespace, bridge_mode auto|neutron|standalone, metadata_upstream, metadata_proxy process|external, use_random_fully, check_child_processes_interval) and fwaas-iptables (FWaaS v1 firewalls and v2 firewall groups on router ports). State: { routers: [...], firewalls: [...], firewall_groups: [...] } in Neutron's shapes.",
    "Under OpenStack: with transport_url (--transport-url, or [DEFAULT] transport_url in Neutron's own files), neutron-l3-rpc takes the routers from neutron-server instead of files, as neutron-l3-agent does: report_state, sync_routers, the l3_agent casts, floating IP statuses.",
  ],
  examples: ["apply --once --state routers.json --namespace-prefix test-", "status --config /etc/chainwarden/l3-agent.yaml"],
};
