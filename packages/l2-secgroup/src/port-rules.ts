/**
 * The rules of one port, as Neutron's `IptablesFirewallDriver` writes them, computed as plain data:
 * the contents of the port's ingress (`i…`), egress (`o…`) and anti-spoofing (`s…`) chains per IP
 * family, and the rules it adds to the shared chains. Everything here is pure; the driver puts the
 * result into an `IptablesManager`.
 *
 * Rule text is written directly in `iptables-save` form (the order iptables prints options in, host
 * bits cleared, `-m tcp` before `-m multiport`, lower-case MACs), so the manager's strict mode accepts
 * it and the applier's diff converges. Neutron writes a few shapes that iptables prints differently
 * (a single `--dport` after a multiport `--sports`); we write what iptables prints.
 */
import { formatCidr, linkLocalFromMac, parseIpPrefix } from "./ip-address.js";
import type { FirewallFlavor } from "./firewall-flavor.js";
import { ipsetName, type MemberIps, type PortFilterResource } from "./l2-state.js";
import {
  COMMENTS,
  DEVICE_OWNER_PREFIXES,
  type Direction,
  ICMPV6_ALLOWED_INGRESS_TYPES,
  ICMPV6_ALLOWED_UNSPEC_ADDR_TYPES,
  ICMPV6_TYPE_RA,
  type IpVersion,
  SG_FALLBACK_CHAIN,
  ethertypeOf,
} from "./neutron-constants.js";
import { ICMP, ICMPV6, iptablesProtocolName, MULTIPORT_ONLY_PROTOCOLS, PORT_PROTOCOLS, portMatchModule } from "./protocols.js";
import { remoteIdOf, type SecurityGroupRule } from "./security-group-rule.js";

/** A rule for `IptablesTable.addRule`: text (with `$chain` references) and its comment. */
export interface RuleSpec {
  readonly rule: string;
  readonly comment?: string;
}

/** One IP family's rules of a port: the contents of its ingress, egress and anti-spoofing chains, in order. */
export interface FamilyChains {
  readonly ingress: readonly RuleSpec[];
  readonly egress: readonly RuleSpec[];
  /** Absent when the port has no address of this family to allow (no chain, no jump). */
  readonly spoof: readonly RuleSpec[] | undefined;
}

/** A port's chain names (unwrapped, already cut to their kernel length), from its layout. */
export interface PortChainNames {
  readonly ingress: string;
  readonly egress: string;
  readonly spoof: string;
}

/**
 * Everything the driver writes for one filtered port (`buildPortRules`): its chain names, each family's chain contents, and whether its traffic is tracked.
 * Pure data in `iptables-save` form; equal inputs give equal rules.
 */
export interface PortRules {
  readonly chains: PortChainNames;
  readonly families: Readonly<Record<IpVersion, FamilyChains>>;
  /** Conntrack zone (true) or `CT --notrack` (false) for the port's traffic. */
  readonly stateful: boolean;
}

/** What shapes a port's rules besides the port: the layout, and whether remote groups are ipset matches. */
export interface PortRuleOptions {
  readonly flavor: FirewallFlavor;
  readonly enableIpset: boolean;
}

const RETURN = "-j RETURN";

/** `-m state --state RELATED,ESTABLISHED -j RETURN`, first in both of a port's chains. */
const ALLOW_ESTABLISHED: RuleSpec = { rule: "-m state --state RELATED,ESTABLISHED -j RETURN", comment: COMMENTS.ALLOW_ASSOC };
const DROP_INVALID: RuleSpec = { rule: "-m state --state INVALID -j DROP", comment: COMMENTS.INVALID_DROP };
const TO_FALLBACK: RuleSpec = { rule: `-j $${SG_FALLBACK_CHAIN}`, comment: COMMENTS.UNMATCHED };

export function portChainNames(flavor: FirewallFlavor, port: PortFilterResource["port"]): PortChainNames {
  return {
    ingress: flavor.chainName(port, "ingress"),
    egress: flavor.chainName(port, "egress"),
    spoof: flavor.chainName(port, "spoof"),
  };
}

/** Computes everything the driver writes for a filtered port. */
export function buildPortRules(resource: PortFilterResource, options: PortRuleOptions): PortRules {
  const chains = portChainNames(options.flavor, resource.port);
  const spoof = spoofRules(resource);
  const families = {} as Record<IpVersion, FamilyChains>;
  for (const version of [4, 6] as const) {
    const ingress: RuleSpec[] = [];
    const egress: RuleSpec[] = [];
    const spoofChain = spoof[version];
    if (version === 6) {
      for (const t of ICMPV6_ALLOWED_INGRESS_TYPES) ingress.push({ rule: `-p ipv6-icmp -m icmp6 --icmpv6-type ${t} ${RETURN}` });
    }
    fixedEgressRules(version, spoofChain ? chains.spoof : undefined, egress);
    ingress.push(...convertRules(selectRules(resource, "ingress", version, options.enableIpset), resource.members, options.enableIpset));
    egress.push(...convertRules(selectRules(resource, "egress", version, options.enableIpset), resource.members, options.enableIpset));
    families[version] = { ingress, egress, spoof: spoofChain };
  }
  return { chains, families, stateful: isStateful(resource) };
}

/**
 * Neutron's `_spoofing_rule` + `_drop_dhcp_rule`: DHCP discovery from 0.0.0.0, DAD from ::, the jump
 * to the anti-spoofing chain, DHCP renewal, no router advertisements, any other ICMPv6, DHCPv6 client,
 * and no DHCP server replies from the VM.
 */
function fixedEgressRules(version: IpVersion, spoofChain: string | undefined, out: RuleSpec[]): void {
  if (version === 4) {
    out.push({ rule: `-s 0.0.0.0/32 -d 255.255.255.255/32 -p udp -m udp --sport 68 --dport 67 ${RETURN}`, comment: COMMENTS.DHCP_CLIENT });
    if (spoofChain) out.push({ rule: `-j $${spoofChain}` });
    out.push({ rule: `-p udp -m udp --sport 68 --dport 67 ${RETURN}`, comment: COMMENTS.DHCP_CLIENT });
    out.push({ rule: "-p udp -m udp --sport 67 --dport 68 -j DROP", comment: COMMENTS.DHCP_SPOOF });
    return;
  }
  for (const t of ICMPV6_ALLOWED_UNSPEC_ADDR_TYPES) {
    out.push({ rule: `-s ::/128 -d ff02::/16 -p ipv6-icmp -m icmp6 --icmpv6-type ${t} ${RETURN}`, comment: COMMENTS.IPV6_ICMP_ALLOW });
  }
  if (spoofChain) out.push({ rule: `-j $${spoofChain}` });
  out.push({ rule: `-p ipv6-icmp -m icmp6 --icmpv6-type ${ICMPV6_TYPE_RA} -j DROP`, comment: COMMENTS.IPV6_RA_DROP });
  out.push({ rule: `-p ipv6-icmp ${RETURN}`, comment: COMMENTS.IPV6_ICMP_ALLOW });
  out.push({ rule: `-p udp -m udp --sport 546 --dport 547 ${RETURN}`, comment: COMMENTS.DHCP_CLIENT });
  out.push({ rule: "-p udp -m udp --sport 547 --dport 546 -j DROP", comment: COMMENTS.DHCP_SPOOF });
}

/**
 * The anti-spoofing chains: one RETURN per allowed (MAC, source) pair — allowed address pairs first,
 * then the fixed IPs, each IPv6 address followed once by the link-local address of its MAC — then DROP.
 * A port without fixed IPs may send from any address with its own MAC.
 */
function spoofRules(resource: PortFilterResource): Record<IpVersion, RuleSpec[] | undefined> {
  const port = resource.port;
  const pairs: Record<IpVersion, [string, string | undefined][]> = { 4: [], 6: [] };
  const add = (mac: string, address: string, version: IpVersion, host: boolean) => {
    const list = pairs[version];
    // A bare address gets /32 or /128 (Neutron's ip_to_cidr); a CIDR keeps its length.
    const p = parseIpPrefix(address)!;
    const cidr = host ? `${address}/${version === 4 ? 32 : 128}` : formatCidr(p);
    list.push([mac, cidr]);
    if (version === 6) {
      const lla = `${linkLocalFromMac(mac)}/128`;
      if (!list.some(([m, a]) => m === mac && a === lla)) list.push([mac, lla]);
    }
  };
  for (const pair of port.allowed_address_pairs) add(pair.mac_address, pair.ip_address, pair.version, pair.host);
  for (const ip of port.fixed_ips) add(port.mac_address, ip, ip.includes(":") ? 6 : 4, true);
  if (port.fixed_ips.length === 0) {
    pairs[4].push([port.mac_address, undefined]);
    pairs[6].push([port.mac_address, undefined]);
  }
  const out: Record<IpVersion, RuleSpec[] | undefined> = { 4: undefined, 6: undefined };
  for (const version of [4, 6] as const) {
    if (pairs[version].length === 0) continue;
    const rules: RuleSpec[] = pairs[version].map(([mac, cidr]) => ({
      rule: cidr === undefined ? `-m mac --mac-source ${mac} ${RETURN}` : `-s ${cidr} -m mac --mac-source ${mac} ${RETURN}`,
      comment: COMMENTS.PAIR_ALLOW,
    }));
    rules.push({ rule: "-j DROP", comment: COMMENTS.PAIR_DROP });
    out[version] = rules;
  }
  return out;
}

/** A rule after remote-group expansion: a remote prefix may have been filled in. */
type ExpandedRule = SecurityGroupRule;

/**
 * Neutron's `_select_sgr_by_direction` + `_select_sg_rules_for_port`: the port's own rules, then its
 * groups' rules in the order of `security_groups`, for one direction and family. Without ipset a
 * remote-group rule becomes one rule per member address, skipping the port's own addresses.
 */
function selectRules(resource: PortFilterResource, direction: Direction, version: IpVersion, enableIpset: boolean): ExpandedRule[] {
  const ethertype = ethertypeOf(version);
  const out: ExpandedRule[] = [];
  const take = (rule: SecurityGroupRule) => {
    if (rule.direction !== direction || rule.ethertype !== ethertype) return;
    const remote = remoteIdOf(rule);
    if (remote === undefined || enableIpset) {
      out.push(rule);
      return;
    }
    const members = resource.members[remote]?.[ethertype] ?? [];
    const own = new Set(resource.port.fixed_ips);
    const key = direction === "ingress" ? "source_ip_prefix" : "dest_ip_prefix";
    for (const member of members) {
      // Neutron skips the port's own addresses for remote security groups; address groups name
      // networks, not ports, so nothing is skipped for them.
      if (rule.remote_group_id !== undefined && own.has(member)) continue;
      const p = parseIpPrefix(member)!;
      out.push({ ...rule, [key]: formatCidr(p), remote_group_id: undefined, remote_address_group_id: undefined } as ExpandedRule);
    }
  };
  for (const rule of resource.port.security_group_rules) take(rule);
  for (const sgId of resource.port.security_groups) for (const rule of resource.security_groups[sgId] ?? []) take(rule);
  return out;
}

/** Neutron's `_convert_sgr_to_iptables_rules`: established first, each distinct rule, invalid, fallback. */
function convertRules(rules: readonly ExpandedRule[], members: Readonly<Record<string, MemberIps>>, enableIpset: boolean): RuleSpec[] {
  const out: RuleSpec[] = [ALLOW_ESTABLISHED];
  const seen = new Set<string>();
  for (const rule of rules) {
    const text = securityGroupRuleText(rule, enableIpset ? members : undefined);
    if (text === undefined || seen.has(text)) continue;
    seen.add(text);
    out.push({ rule: text });
  }
  out.push(DROP_INVALID, TO_FALLBACK);
  return out;
}

/**
 * One security group rule as iptables text (Neutron's `_convert_sg_rule_to_iptables_args`). With
 * `ipsetMembers`, a remote-group rule matches the group's ipset, and is left out while the state has
 * no member list for its family (Neutron creates no set then, and a rule cannot name a missing set).
 */
export function securityGroupRuleText(rule: SecurityGroupRule, ipsetMembers?: Readonly<Record<string, MemberIps>>): string | undefined {
  const version: IpVersion = rule.ethertype === "IPv4" ? 4 : 6;
  const remote = remoteIdOf(rule);
  const parts: string[] = [];
  if (ipsetMembers !== undefined && remote !== undefined) {
    if (ipsetMembers[remote]?.[rule.ethertype] === undefined) return undefined;
    parts.push(...protocolAndPortArgs(rule, version));
    parts.push("-m set --match-set", ipsetName(remote, rule.ethertype), rule.direction === "ingress" ? "src" : "dst");
  } else {
    // A /0 prefix constrains nothing and iptables prints nothing for it.
    if (rule.source_ip_prefix !== undefined && !rule.source_ip_prefix.endsWith("/0")) parts.push("-s", rule.source_ip_prefix);
    if (rule.dest_ip_prefix !== undefined && !rule.dest_ip_prefix.endsWith("/0")) parts.push("-d", rule.dest_ip_prefix);
    parts.push(...protocolAndPortArgs(rule, version));
  }
  parts.push(RETURN);
  return parts.join(" ");
}

function protocolAndPortArgs(rule: SecurityGroupRule, version: IpVersion): string[] {
  const proto = rule.protocol;
  if (proto === undefined) return [];
  const isPort = rule.port_range_min !== undefined || rule.source_port_range_min !== undefined;
  const args = ["-p", iptablesProtocolName(proto, version)];
  const module = isPort ? portMatchModule(proto, version) : undefined;
  if (module !== undefined) args.push("-m", module);
  if (!isPort) return args;
  if (proto === ICMP || proto === ICMPV6) {
    if (rule.port_range_min !== undefined) args.push(version === 4 ? "--icmp-type" : "--icmpv6-type", icmpTypeText(rule, version));
    return args;
  }
  if (!PORT_PROTOCOLS.has(proto)) return args;
  // iptables prints the port match's own --sport/--dport first, then the multiport matches.
  const single: string[] = [];
  const multi: string[] = [];
  const ports = (min: number | undefined, max: number | undefined, dir: "sport" | "dport") => {
    if (min === undefined || max === undefined) return;
    if (min === max && !MULTIPORT_ONLY_PROTOCOLS.has(proto)) single.push(`--${dir}`, String(min));
    else multi.push("-m", "multiport", `--${dir}s`, min === max ? String(min) : `${min}:${max}`);
  };
  ports(rule.source_port_range_min, rule.source_port_range_max, "sport");
  ports(rule.port_range_min, rule.port_range_max, "dport");
  return [...args, ...single, ...multi];
}

/** `TYPE` or `TYPE/CODE`; IPv4 type 255 is iptables' `any`. */
function icmpTypeText(rule: SecurityGroupRule, version: IpVersion): string {
  const type = rule.port_range_min!;
  if (version === 4 && type === 255) return "any";
  return rule.port_range_max === undefined ? String(type) : `${type}/${rule.port_range_max}`;
}

/**
 * Whether the port's traffic is tracked (a zone) or not (`--notrack`): Neutron's own ports always
 * are; otherwise the `stateful` flag of the port's first security group, read from its first rule.
 */
function isStateful(resource: PortFilterResource): boolean {
  const port = resource.port;
  if (DEVICE_OWNER_PREFIXES.some((p) => port.device_owner.startsWith(p))) return true;
  const first = port.security_groups[0];
  const rules = first === undefined ? undefined : resource.security_groups[first];
  return rules?.[0]?.stateful ?? true;
}

/** Neutron's `_get_jump_rules`: where the port's traffic gets its zone (or is left untracked). */
export function conntrackRules(flavor: FirewallFlavor, port: PortFilterResource["port"], stateful: boolean, zone: number): string[] {
  const name = flavor.commentName(port);
  const comment = stateful ? `"Set zone for ${name}"` : `"Make ${name} stateless"`;
  const target = stateful ? `CT --zone ${zone}` : "CT --notrack";
  const br = flavor.bridgeDevice(port);
  const tap = flavor.tapDevice(port);
  return [
    `-m physdev --physdev-in ${br} -m comment --comment ${comment} -j ${target}`,
    `-i ${br} -m comment --comment ${comment} -j ${target}`,
    `-m physdev --physdev-in ${tap} -m comment --comment ${comment} -j ${target}`,
  ];
}

/** The `physdev` match of a port's tap for traffic to it (ingress) or from it (egress). */
export function physdevMatch(tap: string, direction: Direction): string {
  return `-m physdev --${direction === "ingress" ? "physdev-out" : "physdev-in"} ${tap} --physdev-is-bridged`;
}

