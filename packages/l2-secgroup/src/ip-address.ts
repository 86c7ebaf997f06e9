/**
 * Addresses, prefixes and MACs as the security-group code needs them, on core's ip module (the
 * canonicalizer's own parser), so every value validated here prints exactly as iptables-save prints
 * it and goes into a rule unchanged.
 */
import { linkLocalFromMac as coreLinkLocal, parseCidr, parseMac as coreParseMac } from "@chainwarden/core";
import type { IpVersion } from "./neutron-constants.js";

export interface IpPrefix {
  readonly version: IpVersion;
  readonly prefixLength: number;
  /** True when the text had no `/len` (a single address). */
  readonly bare: boolean;
  /** The address as written, canonical (host bits kept). */
  readonly address: string;
  /** `network/len` with host bits cleared. */
  readonly cidr: string;
}

/** `ADDRESS` or `ADDRESS/LEN`; undefined when iptables would not read it as a literal. */
export function parseIpPrefix(text: string): IpPrefix | undefined {
  if (typeof text !== "string" || text.length === 0 || text.length > 64) return undefined;
  const n = parseCidr(text);
  if (!n) return undefined;
  return { version: n.family, prefixLength: n.prefix, bare: !text.includes("/"), address: n.address.text, cidr: n.text };
}

/** A single address (no `/len`). */
export function parseIpAddress(text: string): IpPrefix | undefined {
  const p = parseIpPrefix(text);
  return p && p.bare ? p : undefined;
}

/** `network/len`, as iptables-save prints a `-s`/`-d` value. */
export function formatCidr(p: IpPrefix): string {
  return p.cidr;
}

/** The address alone, canonical. */
export function formatIp(p: IpPrefix): string {
  return p.address;
}

/** A MAC in lower case (how iptables 1.8.9 prints it); the all-zero and broadcast MACs are refused as Neutron refuses them. */
export function parseMac(text: string): string | undefined {
  const mac = coreParseMac(text);
  if (mac === undefined || mac === "00:00:00:00:00:00" || mac === "ff:ff:ff:ff:ff:ff") return undefined;
  return mac;
}

/** The IPv6 link-local address of a MAC (modified EUI-64 in fe80::/64), Neutron's `get_ipv6_addr_by_EUI64`. */
export function linkLocalFromMac(mac: string): string {
  return coreLinkLocal(mac);
}
