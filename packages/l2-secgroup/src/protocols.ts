/**
 * Security group rule protocols: what Neutron's API accepts (a name from neutron-lib's
 * `IP_PROTOCOL_MAP` or a number 0-255), turned into the IP protocol number, and from the number into
 * the `-p` text `iptables-save` prints (asked of core's canonicalizer, which carries the facts).
 */
import { canonicalizeRule } from "@chainwarden/core";
import type { Ethertype } from "./neutron-constants.js";

/** neutron-lib `IP_PROTOCOL_MAP` (3.1.0): the names the Neutron API takes. */
export const NEUTRON_PROTOCOL_NUMBERS: ReadonlyMap<string, number> = new Map([
  ["ah", 51], ["dccp", 33], ["egp", 8], ["esp", 50], ["gre", 47], ["hopopt", 0], ["icmp", 1], ["igmp", 2],
  ["ip", 0], ["ipip", 4], ["ipv6-encap", 41], ["ipv6-frag", 44], ["ipv6-icmp", 58], ["icmpv6", 58],
  ["ipv6-nonxt", 59], ["ipv6-opts", 60], ["ipv6-route", 43], ["ospf", 89], ["pgm", 113], ["rsvp", 46],
  ["sctp", 132], ["tcp", 6], ["udp", 17], ["udplite", 136], ["vrrp", 112],
]);

/** Protocols that carry ports (`SG_PORT_PROTO_NAMES`): tcp, udp, dccp, sctp, udplite. */
export const PORT_PROTOCOLS: ReadonlySet<number> = new Set([6, 17, 33, 132, 136]);
/** udplite has no match module of its own: its ports always go through `-m multiport`. */
export const MULTIPORT_ONLY_PROTOCOLS: ReadonlySet<number> = new Set([136]);
export const ICMP = 1;
export const ICMPV6 = 58;

/** Protocols the Neutron API refuses with ethertype IPv4 (`_validate_ethertype_and_protocol`). */
const IPV6_ONLY: ReadonlySet<number> = new Set([41, 44, 58, 59, 60, 43]);

/** The match module Neutron loads with `-m` when a rule has ports (`IPTABLES_PROTOCOL_MAP`). */
export function portMatchModule(protocol: number, version: 4 | 6): string | undefined {
  switch (protocol) {
    case 6: return "tcp";
    case 17: return "udp";
    case 33: return "dccp";
    case 132: return "sctp";
    case ICMP: return version === 4 ? "icmp" : undefined;
    case ICMPV6: return version === 6 ? "icmp6" : undefined;
    default: return undefined;
  }
}

export interface ResolvedProtocol {
  /** IP protocol number; undefined for "any" (Neutron's null, 0, `ip`, `hopopt`). */
  readonly number: number | undefined;
  /** What we hand to `conntrack -p`: conntrack's own name, or the number; undefined for any. */
  readonly conntrackName: string | undefined;
}

/**
 * Resolves a rule's protocol as the Neutron server and driver do, or returns an error message.
 * IPv6 rules with `icmp`/`icmpv6` mean ICMPv6 (the server's `_make_canonical_ipv6_icmp_protocol`);
 * we apply that to the number 1 too, so an IPv6 ICMP rule never turns into `-p icmp` in ip6tables.
 */
export function resolveProtocol(value: unknown, ethertype: Ethertype): ResolvedProtocol | string {
  if (value === undefined || value === null || value === "") return { number: undefined, conntrackName: undefined };
  let text: string;
  if (typeof value === "number") {
    if (!Number.isInteger(value)) return `unknown protocol ${JSON.stringify(value)}`;
    text = String(value);
  } else if (typeof value === "string") {
    text = value.toLowerCase();
  } else {
    return `protocol must be a name or a number, not ${typeof value}`;
  }
  let number: number | undefined;
  if (/^(?:0|[1-9][0-9]{0,2})$/.test(text)) {
    number = Number(text);
    if (number > 255) return `unknown protocol ${JSON.stringify(value)} (numbers are 0-255)`;
  } else {
    number = NEUTRON_PROTOCOL_NUMBERS.get(text);
    if (number === undefined) {
      return `unknown protocol ${JSON.stringify(value)} (a number 0-255 or one of ${[...NEUTRON_PROTOCOL_NUMBERS.keys()].join(", ")})`;
    }
  }
  if (ethertype === "IPv4" && IPV6_ONLY.has(number)) return `protocol ${JSON.stringify(value)} is IPv6-only but the rule's ethertype is IPv4`;
  if (ethertype === "IPv6" && (number === ICMP || text === "icmpv6")) {
    number = ICMPV6;
    text = "ipv6-icmp";
  }
  if (number === 0) return { number: undefined, conntrackName: undefined };
  return { number, conntrackName: CONNTRACK_NAMES.get(number) ?? String(number) };
}

/**
 * The protocols conntrack knows by a name of its own, which means the same protocol as Neutron's
 * name. Any other protocol goes to `conntrack -p` as its number: Neutron hands the API's name over
 * as it is, and conntrack then refuses some (`ipv6-encap`, `pgm`: "unsupported protocol") or reads
 * others through /etc/protocols as a different protocol (`ipip` is 94 there, 4 in Neutron).
 */
const CONNTRACK_NAMES: ReadonlyMap<number, string> = new Map([
  [1, "icmp"], [6, "tcp"], [17, "udp"], [33, "dccp"], [47, "gre"], [58, "icmpv6"], [132, "sctp"], [136, "udplite"],
]);

const saveNames = new Map<string, string>();

/** The `-p` value iptables-save prints for a protocol number (e.g. 4 → `ipencap`, 113 → `113`). */
export function iptablesProtocolName(protocol: number, version: 4 | 6): string {
  const key = `${version}/${protocol}`;
  let name = saveNames.get(key);
  if (name === undefined) {
    const text = canonicalizeRule(`-p ${protocol} -j RETURN`, { family: version });
    name = text.slice(3, text.indexOf(" -j "));
    saveNames.set(key, name);
  }
  return name;
}
