import { formatAddress, maskWords, parsePrefix } from "./canonical/ip-address.js";

/**
 * Addresses, networks and MACs for the plugins, parsed the way the canonicalizer (and so iptables
 * 1.8.9) reads them: literal addresses only, no host names, no inet_aton shortcuts. `text` is always
 * the form iptables-save prints, so a value validated here can go into a rule as it is.
 */
export interface IpAddress {
  family: 4 | 6;
  /** 4 bytes (IPv4) or 8 16-bit words (IPv6). */
  words: readonly number[];
  /** Canonical text (`10.0.0.1`, `2001:db8::1`). */
  text: string;
}

/** A parsed CIDR: family, prefix length, the network address and the address as written. */
export interface IpNetwork {
  family: 4 | 6;
  prefix: number;
  /** The network address (host bits cleared). */
  network: IpAddress;
  /** The address as written, host bits kept. */
  address: IpAddress;
  /** `network/prefix`, as iptables-save prints a `-s`/`-d` value. */
  text: string;
  /** The input had host bits set below the prefix (`10.0.0.5/24`). */
  hostBitsSet: boolean;
}

function familyOf(text: string): 4 | 6 {
  return text.includes(":") ? 6 : 4;
}

/** A literal IPv4 or IPv6 address (no prefix), or undefined. */
export function parseIp(text: string): IpAddress | undefined {
  if (typeof text !== "string" || text.includes("/")) return undefined;
  const family = familyOf(text);
  const p = parsePrefix(text, family);
  return p ? { family, words: p.words, text: formatAddress(p.words, family) } : undefined;
}

/** `addr/len` (or a bare address, as /32 or /128), or undefined. */
export function parseCidr(text: string): IpNetwork | undefined {
  if (typeof text !== "string") return undefined;
  const family = familyOf(text);
  const p = parsePrefix(text, family);
  if (!p) return undefined;
  const masked = maskWords(p.words, p.prefix, family);
  const network = { family, words: masked, text: formatAddress(masked, family) };
  const address = { family, words: p.words, text: formatAddress(p.words, family) };
  return {
    family,
    prefix: p.prefix,
    network,
    address,
    text: `${network.text}/${p.prefix}`,
    hostBitsSet: masked.some((w, i) => w !== p.words[i]),
  };
}

/** 4 or 6 for an address or a CIDR, undefined for anything else. */
export function ipFamily(text: string): 4 | 6 | undefined {
  return parseIp(text)?.family ?? parseCidr(text)?.family;
}

/** Whether the address is in the network (false across families). */
export function cidrContains(network: IpNetwork, ip: IpAddress): boolean {
  if (network.family !== ip.family) return false;
  const masked = maskWords(ip.words, network.prefix, ip.family);
  return masked.every((w, i) => w === network.network.words[i]);
}

const MAC = /^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$/;

/** A MAC address in the lower case iptables 1.8.9 prints, or undefined. */
export function parseMac(text: string): string | undefined {
  return typeof text === "string" && MAC.test(text) ? text.toLowerCase() : undefined;
}

/** The IPv6 link-local address (EUI-64) a port derives from its MAC, in canonical text. */
export function linkLocalFromMac(mac: string): string {
  const m = parseMac(mac);
  if (!m) throw new Error(`not a MAC address: ${JSON.stringify(mac)}`);
  const b = m.split(":").map((h) => parseInt(h, 16));
  const words = [0xfe80, 0, 0, 0, (((b[0]! ^ 0x02) << 8) | b[1]!), ((b[2]! << 8) | 0xff), ((0xfe << 8) | b[3]!), ((b[4]! << 8) | b[5]!)];
  return formatAddress(words, 6);
}
