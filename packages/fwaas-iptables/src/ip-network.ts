import { cidrContains, parseCidr, parseIp } from "@chainwarden/core";

/** An address or a network as a firewall rule gives it (`10.0.0.1`, `10.0.0.0/24`, `2001:db8::/32`). */
export interface IpNetwork {
  readonly version: 4 | 6;
  /** The network address (host bits cleared, as iptables clears them), canonical text. */
  readonly network: string;
  readonly prefixlen: number;
  /** As given. */
  readonly text: string;
  /**
   * As iptables-save prints it (`10.0.0.0/24`, `2001:db8::1/128`): what goes into rules, so the
   * rule text is already canonical and an unchanged rule is never seen as a change.
   */
  readonly canonical: string;
}

/**
 * Parses an address or CIDR strictly, with core's parser (the canonicalizer's own): no zone ids, no
 * IPv4 shorthand such as `10.1`, nothing iptables or conntrack would read differently.
 */
export function parseIpNetwork(text: string): IpNetwork | undefined {
  const n = parseCidr(text);
  return n && { version: n.family, network: n.network.text, prefixlen: n.prefix, text, canonical: n.text };
}

/** The IP version of a plain address (conntrack output), or undefined when it is not one. */
export function addressVersion(text: string): { version: 4 | 6 } | undefined {
  const ip = parseIp(text);
  return ip && { version: ip.family };
}

/** True when `address` (a plain address) lies in `network`. */
export function networkContains(network: IpNetwork, address: string): boolean {
  const net = parseCidr(network.canonical);
  const ip = parseIp(address);
  return net !== undefined && ip !== undefined && cidrContains(net, ip);
}
