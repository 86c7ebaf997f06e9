import type { IpFamily } from "@chainwarden/core";

/** The verdicts every iptables build knows without loading an extension. */
const STANDARD_TARGETS = ["ACCEPT", "DROP", "RETURN", "QUEUE"];

/**
 * Extensions shipped with Debian 12's iptables 1.8.9 (`/usr/lib/x86_64-linux-gnu/xtables/`:
 * `libxt_*` for both families, `libipt_*` IPv4 only, `libip6t_*` IPv6 only, upper-case names are
 * targets, lower-case ones matches). A `-j NAME` that is none of these and no chain of the table is
 * rejected by the real tools, so the fake rejects it too.
 */
const XT_TARGETS = [
  "AUDIT", "CHECKSUM", "CLASSIFY", "CONNMARK", "CONNSECMARK", "CT", "DNAT", "DSCP", "HMARK", "IDLETIMER",
  "LED", "LOG", "MARK", "MASQUERADE", "NAT", "NFLOG", "NFQUEUE", "NOTRACK", "RATEEST", "REDIRECT",
  "SECMARK", "SET", "SNAT", "SYNPROXY", "TCPMSS", "TCPOPTSTRIP", "TEE", "TOS", "TPROXY", "TRACE",
];
const IPT_TARGETS = ["CLUSTERIP", "ECN", "NETMAP", "REJECT", "TTL", "ULOG"];
const IP6T_TARGETS = ["DNPT", "HL", "NETMAP", "REJECT", "SNPT"];

const BY_FAMILY: Record<IpFamily, ReadonlySet<string>> = {
  4: new Set([...STANDARD_TARGETS, ...XT_TARGETS, ...IPT_TARGETS]),
  6: new Set([...STANDARD_TARGETS, ...XT_TARGETS, ...IP6T_TARGETS]),
};

const XT_MATCHES = [
  "addrtype", "bpf", "cgroup", "cluster", "comment", "connbytes", "connlabel", "connlimit", "connmark", "conntrack",
  "cpu", "dccp", "devgroup", "dscp", "ecn", "esp", "hashlimit", "helper", "ipcomp", "iprange", "ipvs", "length",
  "limit", "mac", "mark", "multiport", "nfacct", "osf", "owner", "physdev", "pkttype", "policy", "quota", "rateest",
  "recent", "rpfilter", "sctp", "set", "socket", "state", "statistic", "string", "tcp", "tcpmss", "time", "tos",
  "u32", "udp",
];
const IPT_MATCHES = ["ah", "icmp", "realm", "ttl"];
const IP6T_MATCHES = ["ah", "dst", "eui64", "frag", "hbh", "hl", "icmp6", "ipv6header", "mh", "rt", "srh"];

const MATCHES_BY_FAMILY: Record<IpFamily, ReadonlySet<string>> = {
  4: new Set([...XT_MATCHES, ...IPT_MATCHES]),
  6: new Set([...XT_MATCHES, ...IP6T_MATCHES]),
};

/** True when `-m name` loads (a lower-case match extension of the same installation). */
export function isMatchExtension(name: string, family: IpFamily): boolean {
  return MATCHES_BY_FAMILY[family].has(name);
}

/** True when `-j name` needs no chain: a standard verdict or a target extension of the family. */
export function isTargetExtension(name: string, family: IpFamily): boolean {
  return BY_FAMILY[family].has(name);
}
