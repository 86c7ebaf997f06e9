/**
 * The fixed texts and numbers of Neutron's iptables firewall (neutron-lib constants,
 * `iptables_comments.py`, `ip_conntrack.py`), in one place so the kernel-facing strings are easy to
 * check against Neutron. Changing any of them changes rule text, and every node running the old text
 * would see all its rules as "changed".
 */

/** Neutron's `iptables_comments`; the rule comments an operator sees in `iptables-save`. */
export const COMMENTS = {
  UNMATCH_DROP: "Default drop rule for unmatched traffic.",
  VM_INT_SG: "Direct traffic from the VM interface to the security group chain.",
  SG_TO_VM_SG: "Jump to the VM specific chain.",
  INPUT_TO_SG: "Direct incoming traffic from VM to the security group chain.",
  PAIR_ALLOW: "Allow traffic from defined IP/MAC pairs.",
  PAIR_DROP: "Drop traffic without an IP/MAC allow rule.",
  DHCP_CLIENT: "Allow DHCP client traffic.",
  DHCP_SPOOF: "Prevent DHCP Spoofing by VM.",
  UNMATCHED: "Send unmatched traffic to the fallback chain.",
  INVALID_DROP: "Drop packets that appear related to an existing connection (e.g. TCP ACK/FIN) but do not have an entry in conntrack.",
  ALLOW_ASSOC: "Direct packets associated with a known session to the RETURN chain.",
  PORT_SEC_ACCEPT: "Accept all packets when port security is disabled.",
  TRUSTED_ACCEPT: "Accept all packets when port is trusted.",
  IPV6_RA_DROP: "Drop IPv6 Router Advts from VM Instance.",
  IPV6_ICMP_ALLOW: "Allow IPv6 ICMP traffic.",
} as const;

/** The shared chains of the driver (wrapped). */
export const SG_CHAIN = "sg-chain";
/** Neutron's `sg-fallback` (wrapped): one `-j DROP` rule; a port chain's traffic that no rule of its security groups accepted ends here. */
export const SG_FALLBACK_CHAIN = "sg-fallback";

/** Per-port chain prefixes: ingress, egress and the anti-spoofing chain. */
export const CHAIN_PREFIX = { ingress: "i", egress: "o", spoof: "s" } as const;

/** ICMPv6 types a port may receive whatever its rules say (MLD query, NS, NA). */
export const ICMPV6_ALLOWED_INGRESS_TYPES = [130, 135, 136] as const;
/** ICMPv6 types a port may send from `::` for duplicate address detection (MLD report, NS, MLDv2 report). */
export const ICMPV6_ALLOWED_UNSPEC_ADDR_TYPES = [131, 135, 143] as const;
/** Router advertisements from a VM are dropped. */
export const ICMPV6_TYPE_RA = 134;

/** Ports whose `device_owner` starts with one of these are Neutron's own (DHCP, router): always stateful. */
export const DEVICE_OWNER_PREFIXES = ["network:", "neutron:"] as const;

/** Linux interface names Neutron builds are cut to this length (`LINUX_DEV_LEN`). */
export const LINUX_DEV_LEN = 14;
/** `tap`, `qvb`, `brq`: the prefix Neutron strips to key devices (`LINUX_DEV_PREFIX_LEN`). */
export const LINUX_DEV_PREFIX_LEN = 3;
/** The kernel's IFNAMSIZ - 1. */
export const MAX_DEVICE_NAME_LENGTH = 15;

/** Conntrack zones Neutron hands out (`ip_conntrack.ZONE_START`, `MAX_CONNTRACK_ZONES`). */
export const ZONE_START = 4097;
export const MAX_CONNTRACK_ZONES = 65535;

/** ipset names: `N` + ethertype + id, cut so that the `-n` swap set still fits in 31 characters. */
export const IPSET_PREFIX = "N";
export const IPSET_SWAP_SUFFIX = "-n";
export const IPSET_NAME_MAX_LENGTH = 31 - IPSET_SWAP_SUFFIX.length;

/** The link-local prefix the EUI-64 address of every port's MAC lives in. */
export const IPV6_LLA_PREFIX = "fe80::/64";

/** Neutron's `ethertype` of a security group rule (and the keys of `sg_member_ips`). */
export type Ethertype = "IPv4" | "IPv6";
/** A security group rule's direction, as Neutron names it, seen from the port: `ingress` to it, `egress` from it. */
export type Direction = "ingress" | "egress";
/** An IP family as a number: 4 for `IPv4`, 6 for `IPv6` (`ipVersionOf`, `ethertypeOf`). */
export type IpVersion = 4 | 6;

export const ETHERTYPES: readonly Ethertype[] = ["IPv4", "IPv6"];

export function ipVersionOf(ethertype: Ethertype): IpVersion {
  return ethertype === "IPv4" ? 4 : 6;
}

export function ethertypeOf(version: IpVersion): Ethertype {
  return version === 4 ? "IPv4" : "IPv6";
}
