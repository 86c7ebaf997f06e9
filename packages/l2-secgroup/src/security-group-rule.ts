/**
 * One security group rule in Neutron's shape (`security_group_info_for_devices`), validated as the
 * Neutron server validates rules (`_validate_security_group_rule`) plus what the driver needs to
 * build iptables text safely. Unknown keys a server sends (id, tenant_id, description, ...) are
 * ignored; every field that reaches a rule is checked and normalized here.
 */
import { z } from "zod";
import { formatCidr, parseIpPrefix } from "./ip-address.js";
import { ETHERTYPES, type Direction, type Ethertype } from "./neutron-constants.js";
import { ICMP, ICMPV6, PORT_PROTOCOLS, resolveProtocol } from "./protocols.js";
import { describe, idSchema, integerSchema, misspelledIssues, zodIssues, type Issue } from "./validation.js";

/** A validated rule. Prefixes are canonical CIDRs (host bits cleared); absent fields are absent. */
export interface SecurityGroupRule {
  readonly direction: Direction;
  readonly ethertype: Ethertype;
  /** IP protocol number; absent means any protocol. */
  readonly protocol?: number;
  /** The protocol as Neutron passes it to `conntrack -p`. */
  readonly conntrack_protocol?: string;
  /**
   * Destination port range, or ICMP type (min) and code (max). An ICMP type/code given in
   * source_port_range_min/max (as the server's RA rule does) is moved here: Neutron reads both alike.
   */
  readonly port_range_min?: number;
  readonly port_range_max?: number;
  /** Source port range (port protocols only). */
  readonly source_port_range_min?: number;
  readonly source_port_range_max?: number;
  readonly source_ip_prefix?: string;
  readonly dest_ip_prefix?: string;
  readonly remote_group_id?: string;
  /** Neutron's address groups; expanded like remote groups (see the README's deviations). */
  readonly remote_address_group_id?: string;
  /** The security group's `stateful` flag, which the server copies into each rule. */
  readonly stateful: boolean;
}

const portField = integerSchema.pipe(z.number().min(0, "must be 0-65535").max(65535, "must be 0-65535")).nullish();

const ruleShape = z.looseObject({
  direction: z.enum(["ingress", "egress"], { error: 'expected "ingress" or "egress"' }),
  ethertype: z.enum(ETHERTYPES as [Ethertype, ...Ethertype[]], { error: 'expected "IPv4" or "IPv6"' }),
  protocol: z.union([z.string(), z.number(), z.null()]).optional(),
  port_range_min: portField,
  port_range_max: portField,
  source_port_range_min: portField,
  source_port_range_max: portField,
  remote_ip_prefix: z.string().nullish(),
  source_ip_prefix: z.string().nullish(),
  dest_ip_prefix: z.string().nullish(),
  remote_group_id: idSchema.nullish(),
  remote_address_group_id: idSchema.nullish(),
  stateful: z.boolean().nullish(),
});

type RuleShape = z.infer<typeof ruleShape>;

/** What `parseSecurityGroupRule` returns: the valid rule, or the issues found (paths are field names); never both. */
export type RuleResult = { rule: SecurityGroupRule } | { issues: Issue[] };

/** Validates one rule. Issues carry the field name as their path. */
export function parseSecurityGroupRule(raw: unknown): RuleResult {
  const typos = misspelledIssues(raw, ruleShape);
  const shaped = ruleShape.safeParse(raw);
  if (!shaped.success) return { issues: [...typos, ...zodIssues(shaped.error)] };
  const r: RuleShape = shaped.data;
  const issues: Issue[] = [...typos];
  const issue = (field: string, message: string) => issues.push({ path: [field], message });
  const version = r.ethertype === "IPv4" ? 4 : 6;

  const protocol = resolveProtocol(r.protocol, r.ethertype);
  if (typeof protocol === "string") issue("protocol", protocol);
  const proto = typeof protocol === "string" ? undefined : protocol.number;

  // remote_ip_prefix is the API's name; the server hands the driver source_ip_prefix (ingress) or
  // dest_ip_prefix (egress).
  let source = r.source_ip_prefix ?? undefined;
  let dest = r.dest_ip_prefix ?? undefined;
  if (r.remote_ip_prefix !== undefined && r.remote_ip_prefix !== null) {
    const field = r.direction === "ingress" ? "source_ip_prefix" : "dest_ip_prefix";
    const given = r.direction === "ingress" ? source : dest;
    if (given !== undefined && given !== r.remote_ip_prefix) issue("remote_ip_prefix", `conflicts with ${field} ${describe(given)}`);
    if (r.direction === "ingress") source = r.remote_ip_prefix;
    else dest = r.remote_ip_prefix;
  }
  const prefix = (field: string, text: string | undefined): string | undefined => {
    if (text === undefined) return undefined;
    const p = parseIpPrefix(text);
    if (!p) {
      issue(field, `invalid CIDR ${describe(text)}`);
      return undefined;
    }
    if (p.version !== version) {
      issue(field, `${describe(text)} is an IPv${p.version} prefix but the rule's ethertype is ${r.ethertype}`);
      return undefined;
    }
    return formatCidr(p);
  };
  const sourcePrefix = prefix(r.remote_ip_prefix != null && r.direction === "ingress" ? "remote_ip_prefix" : "source_ip_prefix", source);
  const destPrefix = prefix(r.remote_ip_prefix != null && r.direction === "egress" ? "remote_ip_prefix" : "dest_ip_prefix", dest);

  // The server allows one remote: a prefix, a remote group or an address group.
  const remotePrefix = r.direction === "ingress" ? source : dest;
  const remotes = [remotePrefix !== undefined, !!r.remote_group_id, !!r.remote_address_group_id].filter(Boolean).length;
  if (remotes > 1) issue("remote_group_id", "only one of remote_ip_prefix, remote_group_id and remote_address_group_id may be given");

  const min = r.port_range_min ?? undefined;
  const max = r.port_range_max ?? undefined;
  const smin = r.source_port_range_min ?? undefined;
  const smax = r.source_port_range_max ?? undefined;
  const hasPorts = min !== undefined || max !== undefined;
  const hasSourcePorts = smin !== undefined || smax !== undefined;
  if ((hasPorts || hasSourcePorts) && proto === undefined && typeof protocol !== "string") {
    issue(hasPorts ? "port_range_min" : "source_port_range_min", "a port range needs a protocol (tcp, udp, dccp, sctp, udplite, or icmp type/code)");
  } else if (proto !== undefined && PORT_PROTOCOLS.has(proto)) {
    const range = (lo: number | undefined, hi: number | undefined, what: string) => {
      if (lo === undefined && hi === undefined) return;
      if (lo === undefined || hi === undefined) issue(lo === undefined ? `${what}_min` : `${what}_max`, `${what}_min and ${what}_max must both be given`);
      else if (lo > hi) issue(`${what}_max`, `${what}_max ${hi} is below ${what}_min ${lo}`);
    };
    range(min, max, "port_range");
    range(smin, smax, "source_port_range");
  } else if (proto === ICMP || proto === ICMPV6) {
    // Neutron's driver (`_port_arg`) reads both ranges of an ICMP rule as type (min) and code (max);
    // the server's own RA rule for IPv6 ports uses source_port_range_min. A code without its type
    // is refused as the API refuses it (the driver would drop it silently).
    const icmpRange = (type: number | undefined, code: number | undefined, what: string) => {
      if (type !== undefined && type > 255) issue(`${what}_min`, `ICMP type ${type} is not 0-255`);
      if (code !== undefined && code > 255) issue(`${what}_max`, `ICMP code ${code} is not 0-255`);
      if (type === undefined && code !== undefined) issue(`${what}_max`, `an ICMP code needs an ICMP type (${what}_min)`);
    };
    icmpRange(min, max, "port_range");
    icmpRange(smin, smax, "source_port_range");
    // Neutron would write two --icmp-type options, which iptables refuses (its whole restore fails).
    if (min !== undefined && smin !== undefined) {
      issue("source_port_range_min", "an ICMP type in both port_range_min and source_port_range_min (iptables takes one --icmp-type)");
    }
  } else if (proto !== undefined && (hasPorts || hasSourcePorts)) {
    issue(hasPorts ? "port_range_min" : "source_port_range_min", `protocol ${describe(r.protocol)} has no ports (only tcp, udp, dccp, sctp, udplite, and icmp type/code)`);
  }

  if (issues.length > 0 || typeof protocol === "string") return { issues };
  const rule: Record<string, unknown> = { direction: r.direction, ethertype: r.ethertype };
  if (proto !== undefined) {
    rule["protocol"] = proto;
    rule["conntrack_protocol"] = protocol.conntrackName;
  }
  if (proto === ICMP || proto === ICMPV6) {
    // One ICMP type/code, from whichever range holds it: equal rules get equal keys and text.
    const [type, code] = smin !== undefined ? [smin, smax] : [min, max];
    if (type !== undefined) rule["port_range_min"] = type;
    if (code !== undefined) rule["port_range_max"] = code;
  } else {
    if (min !== undefined) rule["port_range_min"] = min;
    if (max !== undefined) rule["port_range_max"] = max;
    if (smin !== undefined) rule["source_port_range_min"] = smin;
    if (smax !== undefined) rule["source_port_range_max"] = smax;
  }
  if (sourcePrefix !== undefined) rule["source_ip_prefix"] = sourcePrefix;
  if (destPrefix !== undefined) rule["dest_ip_prefix"] = destPrefix;
  if (r.remote_group_id) rule["remote_group_id"] = r.remote_group_id;
  if (r.remote_address_group_id) rule["remote_address_group_id"] = r.remote_address_group_id;
  rule["stateful"] = r.stateful ?? true;
  return { rule: rule as unknown as SecurityGroupRule };
}

/** The remote (group or address group) a rule expands to member addresses, if any. */
export function remoteIdOf(rule: SecurityGroupRule): string | undefined {
  return rule.remote_group_id ?? rule.remote_address_group_id;
}

/** Structural equality of two validated rules (for "which rules were deleted"). */
export function sameRule(a: SecurityGroupRule, b: SecurityGroupRule): boolean {
  return ruleKey(a) === ruleKey(b);
}

export function ruleKey(rule: SecurityGroupRule): string {
  return JSON.stringify([
    rule.direction, rule.ethertype, rule.protocol, rule.port_range_min, rule.port_range_max,
    rule.source_port_range_min, rule.source_port_range_max, rule.source_ip_prefix, rule.dest_ip_prefix,
    rule.remote_group_id, rule.remote_address_group_id, rule.stateful,
  ]);
}
