import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import type { AgentApp } from "@chainwarden/agent";
import { l2SecgroupPlugin } from "@chainwarden/l2-secgroup";
import { neutronL2RpcPlugin } from "@chainwarden/neutron-rpc";

const manifest = createRequire(import.meta.url)("../package.json") as { version: string };

/**
 * The l2 agent: the framework with l2-secgroup built in. Its config keys and flags are the
 * framework's (`--netns`: the namespace that holds the bridge and the rules) plus the plugin's
 * (`firewall_driver`, `enable_ipset`, `wait_for_devices`, `polling_interval`).
 */
export const l2AgentApp: AgentApp = {
  name: "l2-agent",
  version: manifest.version,
  description: "Neutron's l2 agent firewall (security groups as per-port iptables chains on a Linux bridge)",
  // Neutron's wrap name for this agent, so rules a Neutron agent left behind are adopted without a flush.
  defaults: { wrap_name: "neutron-linuxbri" },
  // Neutron's l2 IptablesFirewallDriver makes IptablesManager(state_less=True): no nat or mangle
  // chains, for the ports and for any plugin's `context.manager()` in this agent.
  managerDefaults: { stateless: true },
  plugins: [l2SecgroupPlugin, neutronL2RpcPlugin],
  appDir: fileURLToPath(new URL("..", import.meta.url)),
  notes: [
    "Built in: l2-secgroup (Neutron's IptablesFirewallDriver, aliases iptables and iptables_hybrid: per-port chains on the bridge, anti-spoofing, DHCP and ICMPv6 rules, remote groups with or without ipset, conntrack zones and cleanup). State: { devices: {port_id: port}, security_groups: {sg_id: [rules]}, sg_member_ips: {...}, trusted_devices: [...] } in Neutron's shapes.",
    "Under OpenStack: with transport_url (--transport-url, or [DEFAULT] transport_url in Neutron's own files), neutron-l2-rpc takes the host's ports from neutron-server (security_group_info_for_devices for the taps on the host, the security group and port fanouts), beside neutron-linuxbridge-agent with firewall_driver = noop (moot here with --firewall-driver iptables).",
  ],
  examples: ["apply --once --state ports.yaml --netns lab-bridge", "plan --netns lab-bridge --state ports.yaml"],
};
