import { misspelledKeys } from "@chainwarden/agent";
import { canonicalizeRule } from "@chainwarden/core";
import { z } from "zod";
import { parseIpNetwork, type IpNetwork } from "./ip-network.js";

/** A firewall rule's action, as Neutron names it; v1 rules jump to ACCEPT / DROP / REJECT, v2 rules to the `accepted` / `dropped` / `rejected` chains. */
export type FirewallAction = "allow" | "deny" | "reject";
/** A firewall rule's IP version (Neutron's `ip_version`): which family's chains it goes into. */
export type IpVersion = 4 | 6;

/** A port or an inclusive range, as Neutron writes it (`80`, `1000:2000`). */
export interface PortRange {
  readonly min: number;
  readonly max: number;
}

/**
 * One firewall rule, validated and normalized: everything iptables and conntrack will be given is
 * decided here, so the translation below cannot produce a rule the tools would read differently.
 */
export interface FirewallRule {
  /** Neutron's rule id; absent in hand-written state (then the rule's content is its identity). */
  readonly id: string | undefined;
  /**
   * The `-p` value for the rule's family: `tcp`, `udp`, `icmp`, `ipv6-icmp`, or a protocol number
   * as a decimal string; undefined matches every protocol.
   */
  readonly protocol: string | undefined;
  /** The IANA protocol number (conntrack reports numbers); undefined: any. */
  readonly protocolNumber: number | undefined;
  readonly ipVersion: IpVersion;
  readonly source: IpNetwork | undefined;
  readonly destination: IpNetwork | undefined;
  readonly sourcePort: PortRange | undefined;
  readonly destinationPort: PortRange | undefined;
  readonly action: FirewallAction;
  readonly enabled: boolean;
}

/** One thing wrong with an input, relative to the object being parsed. */
export interface ParseIssue {
  /** Dotted path below the parsed object (`protocol`, `ingress_rules.2.source_port`). */
  readonly path: string;
  readonly message: string;
}

const portValue = z.union([z.string(), z.number()]).nullable().optional();

/**
 * The shape of a rule as Neutron sends it (extra keys such as `name`, `description`, `shared`,
 * `position`, `firewall_policy_id` are kept, not read). Semantics are checked in `parseFirewallRule`.
 */
export const firewallRuleInputSchema = z.looseObject({
  id: z.string().min(1).max(255).optional(),
  protocol: z.union([z.string(), z.number()]).nullable().optional(),
  ip_version: z.union([z.literal(4), z.literal(6), z.literal("4"), z.literal("6")]).nullable().optional(),
  source_ip_address: z.string().nullable().optional(),
  destination_ip_address: z.string().nullable().optional(),
  source_port: portValue,
  destination_port: portValue,
  action: z.string(),
  enabled: z.boolean().optional(),
});

const ACTIONS: readonly FirewallAction[] = ["allow", "deny", "reject"];

/** Names iptables prints for these numbers; anything else stays a number (the canonicalizer names it). */
const PROTOCOL_NAMES = new Map<string, number>([
  ["tcp", 6],
  ["udp", 17],
  ["icmp", 1],
  ["ipv6-icmp", 58],
  ["icmpv6", 58],
]);
const PORTED = new Set([6, 17]);

/**
 * Validates one rule. Returns the rule, or the issues (paths relative to the rule). Neutron's API
 * checks most of this on the server; the agent checks again because state may be hand-written, and
 * because a rule the tools read differently from what was meant must never reach iptables-restore.
 */
export function parseFirewallRule(input: unknown): { rule?: FirewallRule; issues: ParseIssue[] } {
  // A misspelled key we read (`destination_prot`) is named; other keys a server sends pass.
  const typos = misspelledKeys(input, Object.keys(firewallRuleInputSchema.shape)).map((m) => ({ path: m.key, message: m.message }));
  const shape = firewallRuleInputSchema.safeParse(input);
  if (!shape.success) {
    return { issues: [...typos, ...shape.error.issues.map((i) => ({ path: i.path.join("."), message: i.message }))] };
  }
  const raw = shape.data;
  const issues: ParseIssue[] = [...typos];
  const issue = (path: string, message: string) => issues.push({ path, message });

  const action = raw.action.toLowerCase() as FirewallAction;
  if (!ACTIONS.includes(action)) issue("action", `unknown action ${JSON.stringify(raw.action)} (allow, deny or reject)`);

  const source = address(raw.source_ip_address, "source_ip_address", issue);
  const destination = address(raw.destination_ip_address, "destination_ip_address", issue);

  // The version: as given; when absent, the addresses' (Neutron's server defaults it to 4).
  let ipVersion: IpVersion | undefined = raw.ip_version == null ? undefined : (Number(raw.ip_version) as IpVersion);
  for (const [field, net] of [["source_ip_address", source], ["destination_ip_address", destination]] as const) {
    if (!net) continue;
    if (ipVersion === undefined) ipVersion = net.version;
    else if (net.version !== ipVersion) {
      issue(field, `${field} ${net.text} is IPv${net.version} but the rule's ip_version is ${ipVersion}`);
    }
  }
  ipVersion ??= 4;

  const before = issues.length;
  const proto = protocol(raw.protocol, ipVersion, issue);
  // A protocol that did not parse already has its issue; the ports are only checked for their form.
  const protocolKnown = issues.length === before;
  const sourcePort = port(raw.source_port, "source_port", proto?.number, protocolKnown, issue);
  const destinationPort = port(raw.destination_port, "destination_port", proto?.number, protocolKnown, issue);

  if (issues.length > 0) return { issues };
  return {
    rule: {
      id: raw.id,
      protocol: proto?.name,
      protocolNumber: proto?.number,
      ipVersion,
      source,
      destination,
      sourcePort,
      destinationPort,
      action,
      enabled: raw.enabled ?? true,
    },
    issues,
  };
}

function address(value: string | null | undefined, field: string, issue: (p: string, m: string) => void): IpNetwork | undefined {
  if (value === undefined || value === null || value === "") return undefined;
  const net = parseIpNetwork(value);
  if (!net) issue(field, `invalid address ${JSON.stringify(value)} (an IPv4 or IPv6 address or CIDR)`);
  return net;
}

function protocol(
  value: string | number | null | undefined,
  ipVersion: IpVersion,
  issue: (p: string, m: string) => void,
): { name: string; number: number } | undefined {
  if (value === undefined || value === null) return undefined;
  const text = String(value).trim().toLowerCase();
  if (text === "" || text === "any") return undefined;
  if (/^\d+$/.test(text)) {
    const number = Number(text);
    if (number > 255) {
      issue("protocol", `protocol number ${text} is out of range (0-255)`);
      return undefined;
    }
    // `-p 0` is iptables' "all".
    if (number === 0) return undefined;
    const named = [...PROTOCOL_NAMES].find(([n, v]) => v === number && n !== "icmpv6");
    if (named) return { name: named[0], number };
    // iptables prints a known number by its name (`47` as `gre`); core's canonicalizer knows which.
    const printed = /^-p (\S+) -j DROP$/.exec(canonicalizeRule(`-p ${number} -j DROP`, { family: ipVersion }))?.[1];
    return { name: printed ?? String(number), number };
  }
  const number = PROTOCOL_NAMES.get(text);
  if (number === undefined) {
    issue("protocol", `unknown protocol ${JSON.stringify(value)} (tcp, udp, icmp, ipv6-icmp, any, or a number 0-255)`);
    return undefined;
  }
  if (number === 58 && ipVersion === 4) {
    issue("protocol", `protocol ${text} needs ip_version 6`);
    return undefined;
  }
  // As neutron-fwaas v2 does: "icmp" in an IPv6 rule means ICMPv6 (plain icmp never matches IPv6 traffic).
  if (number === 1 && ipVersion === 6) return { name: "ipv6-icmp", number: 58 };
  return { name: number === 58 ? "ipv6-icmp" : text, number };
}

function port(
  value: string | number | null | undefined,
  field: string,
  protocolNumber: number | undefined,
  protocolKnown: boolean,
  issue: (p: string, m: string) => void,
): PortRange | undefined {
  if (value === undefined || value === null || value === "") return undefined;
  const text = String(value).trim();
  const m = /^(\d{1,5})(?::(\d{1,5}))?$/.exec(text);
  if (!m) {
    issue(field, `invalid port ${JSON.stringify(value)} (a port 0-65535 or a range min:max)`);
    return undefined;
  }
  const min = Number(m[1]);
  const max = m[2] === undefined ? min : Number(m[2]);
  if (min > 65535 || max > 65535) {
    issue(field, `port ${text} is out of range (0-65535)`);
    return undefined;
  }
  if (min > max) {
    issue(field, `port range ${text} has min > max`);
    return undefined;
  }
  if (protocolKnown && (protocolNumber === undefined || !PORTED.has(protocolNumber))) {
    issue(field, `${field} ${text} needs protocol tcp or udp`);
    return undefined;
  }
  return { min, max };
}
