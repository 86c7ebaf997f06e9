/** Small builders for ports and state documents in Neutron's shapes. */
import { iptablesFlavor, type FirewallFlavor } from "../firewall-flavor.js";
import { parseL2State, type L2Resource, type PortFilterResource } from "../l2-state.js";

export const WEB_SG = "5a1e0000-0000-4000-8000-00000000a001";
export const NET_A = "7e7e7e7e-0000-4000-8000-00000000ee01";
export const NET_B = "8e8e8e8e-0000-4000-8000-00000000ee02";

export interface PortSpec {
  id: string;
  device: string;
  ip?: string | string[];
  mac?: string;
  network?: string;
  groups?: string[];
  portSecurity?: boolean;
  pairs?: { ip_address: string; mac_address?: string }[];
  owner?: string;
}

export function portDict(p: PortSpec): Record<string, unknown> {
  return {
    id: p.id,
    device: p.device,
    mac_address: p.mac ?? "fa:16:3e:00:00:01",
    fixed_ips: p.ip === undefined ? [] : Array.isArray(p.ip) ? p.ip : [p.ip],
    network_id: p.network ?? NET_A,
    device_owner: p.owner ?? "compute:nova",
    port_security_enabled: p.portSecurity ?? true,
    security_groups: p.groups ?? [WEB_SG],
    security_group_rules: [],
    allowed_address_pairs: p.pairs ?? [],
  };
}

export const DEFAULT_GROUPS: Record<string, unknown[]> = {
  [WEB_SG]: [
    { direction: "egress", ethertype: "IPv4" },
    { direction: "egress", ethertype: "IPv6" },
    { direction: "ingress", ethertype: "IPv4", protocol: "tcp", port_range_min: 22, port_range_max: 22, remote_ip_prefix: "10.0.0.0/8" },
    { direction: "ingress", ethertype: "IPv4", protocol: "icmp" },
  ],
};

export interface StateSpec {
  ports: PortSpec[];
  groups?: Record<string, unknown[]>;
  members?: Record<string, unknown>;
  trusted?: string[];
}

export function stateDocument(s: StateSpec): Record<string, unknown> {
  return {
    devices: Object.fromEntries(s.ports.map((p) => [p.id, portDict(p)])),
    security_groups: s.groups ?? DEFAULT_GROUPS,
    sg_member_ips: s.members ?? {},
    trusted_devices: s.trusted ?? [],
  };
}

/** Parses a state and fails on any problem (for tests that build valid input). */
export function resources(s: StateSpec, options: { flavor?: FirewallFlavor; enableIpset?: boolean } = {}): L2Resource[] {
  const parsed = parseL2State(stateDocument(s), "test", { flavor: options.flavor ?? iptablesFlavor, enableIpset: options.enableIpset ?? false });
  if (parsed.problems.length) throw new Error(`invalid test state: ${JSON.stringify(parsed.problems)}`);
  return [...parsed.resources.values()];
}

export function ports(list: L2Resource[]): PortFilterResource[] {
  return list.filter((r): r is PortFilterResource => r.type === "port");
}
