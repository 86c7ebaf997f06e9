import { readFileSync } from "node:fs";
import { join } from "node:path";
import { canonicalizeRule } from "@chainwarden/core";
import { describe, expect, it } from "vitest";
import { securityGroupRuleText } from "./port-rules.js";
import { parseSecurityGroupRule, type SecurityGroupRule } from "./security-group-rule.js";

const ok = (raw: Record<string, unknown>): SecurityGroupRule => {
  const r = parseSecurityGroupRule(raw);
  if ("issues" in r) throw new Error(JSON.stringify(r.issues));
  return r.rule;
};
const issues = (raw: Record<string, unknown>) => {
  const r = parseSecurityGroupRule(raw);
  return "issues" in r ? r.issues.map((i) => `${i.path.join(".")}: ${i.message}`) : [];
};

describe("parseSecurityGroupRule", () => {
  it("normalizes protocols, prefixes and remote_ip_prefix as the server hands them to the driver", () => {
    expect(ok({ direction: "ingress", ethertype: "IPv4", protocol: "TCP", port_range_min: "22", port_range_max: 22, remote_ip_prefix: "10.1.2.3/16", id: "x", tenant_id: "t" })).toEqual({
      direction: "ingress",
      ethertype: "IPv4",
      protocol: 6,
      conntrack_protocol: "tcp",
      port_range_min: 22,
      port_range_max: 22,
      source_ip_prefix: "10.1.0.0/16",
      stateful: true,
    });
    expect(ok({ direction: "egress", ethertype: "IPv6", protocol: "icmp", remote_ip_prefix: "2001:DB8::1" })).toMatchObject({ protocol: 58, conntrack_protocol: "icmpv6", dest_ip_prefix: "2001:db8::1/128" });
    expect(ok({ direction: "egress", ethertype: "IPv6", protocol: 1 })).toMatchObject({ protocol: 58 });
    expect(ok({ direction: "ingress", ethertype: "IPv4", protocol: "0" })).not.toHaveProperty("protocol");
    expect(ok({ direction: "ingress", ethertype: "IPv4", protocol: null, stateful: false })).toEqual({ direction: "ingress", ethertype: "IPv4", stateful: false });
  });

  it("hands conntrack a protocol it reads as Neutron means it: its own name, else the number", () => {
    // conntrack refuses `ipv6-encap` and `pgm`, and reads `ipip` as 94 through /etc/protocols.
    expect(ok({ direction: "ingress", ethertype: "IPv4", protocol: "ipip" })).toMatchObject({ protocol: 4, conntrack_protocol: "4" });
    expect(ok({ direction: "ingress", ethertype: "IPv6", protocol: "ipv6-encap" })).toMatchObject({ protocol: 41, conntrack_protocol: "41" });
    expect(ok({ direction: "ingress", ethertype: "IPv4", protocol: "pgm" })).toMatchObject({ protocol: 113, conntrack_protocol: "113" });
    expect(ok({ direction: "ingress", ethertype: "IPv4", protocol: "17" })).toMatchObject({ protocol: 17, conntrack_protocol: "udp" });
    expect(ok({ direction: "ingress", ethertype: "IPv6", protocol: "ipv6-icmp" })).toMatchObject({ protocol: 58, conntrack_protocol: "icmpv6" });
  });

  it.each([
    [{ direction: "in", ethertype: "IPv4" }, /direction: expected "ingress" or "egress"/],
    [{ direction: "ingress", ethertype: "ipv4" }, /ethertype: expected "IPv4" or "IPv6"/],
    [{ direction: "ingress", ethertype: "IPv4", protocol: "tcpp" }, /protocol: unknown protocol "tcpp"/],
    [{ direction: "ingress", ethertype: "IPv4", protocol: "256" }, /protocol: unknown protocol "256"/],
    [{ direction: "ingress", ethertype: "IPv4", protocol: "ipv6-icmp" }, /IPv6-only/],
    [{ direction: "ingress", ethertype: "IPv4", protocol: "tcp", port_range_min: 80, port_range_max: 79 }, /port_range_max: port_range_max 79 is below port_range_min 80/],
    [{ direction: "ingress", ethertype: "IPv4", protocol: "tcp", port_range_min: 80, port_range_max: 65536 }, /port_range_max: must be 0-65535/],
    [{ direction: "ingress", ethertype: "IPv4", protocol: "tcp", port_range_min: -1, port_range_max: 5 }, /port_range_min/],
    [{ direction: "ingress", ethertype: "IPv4", protocol: "tcp", port_range_min: 80 }, /must both be given/],
    [{ direction: "ingress", ethertype: "IPv4", port_range_min: 80, port_range_max: 80 }, /needs a protocol/],
    [{ direction: "ingress", ethertype: "IPv4", protocol: "gre", port_range_min: 80, port_range_max: 80 }, /has no ports/],
    [{ direction: "ingress", ethertype: "IPv4", protocol: "icmp", port_range_min: 256 }, /ICMP type 256/],
    [{ direction: "ingress", ethertype: "IPv4", protocol: "icmp", port_range_max: 0 }, /ICMP code needs an ICMP type/],
    [{ direction: "ingress", ethertype: "IPv6", protocol: "ipv6-icmp", source_port_range_min: 256 }, /source_port_range_min: ICMP type 256/],
    [{ direction: "ingress", ethertype: "IPv6", protocol: "ipv6-icmp", source_port_range_min: 1, source_port_range_max: 300 }, /source_port_range_max: ICMP code 300/],
    [{ direction: "ingress", ethertype: "IPv4", protocol: "icmp", source_port_range_max: 0 }, /source_port_range_max: an ICMP code needs an ICMP type \(source_port_range_min\)/],
    [{ direction: "ingress", ethertype: "IPv6", protocol: "icmpv6", port_range_min: 128, source_port_range_min: 134 }, /source_port_range_min: an ICMP type in both/],
    [{ direction: "ingress", ethertype: "IPv4", remote_ip_prefix: "10.0.0.0/33" }, /remote_ip_prefix: invalid CIDR/],
    [{ direction: "ingress", ethertype: "IPv4", remote_ip_prefix: "10.0.0.0/8 -j ACCEPT" }, /invalid CIDR/],
    [{ direction: "ingress", ethertype: "IPv4", source_ip_prefix: "2001:db8::/32" }, /IPv6 prefix but the rule's ethertype is IPv4/],
    [{ direction: "ingress", ethertype: "IPv4", remote_ip_prefix: "10.0.0.0/8", remote_group_id: "sg1" }, /only one of/],
    [{ direction: "ingress", ethertype: "IPv4", remote_group_id: "sg 1" }, /remote_group_id/],
  ])("rejects %j", (raw, message) => {
    expect(issues(raw).join("\n")).toMatch(message);
  });
});

describe("ICMP type/code in source_port_range_min/max (the server's RA rule)", () => {
  it("takes the server's RA rule for IPv6 ports, which Neutron writes as an ICMPv6 type match", () => {
    const ra = ok({ direction: "ingress", ethertype: "IPv6", protocol: "ipv6-icmp", source_port_range_min: 134 });
    expect(ra).toEqual({ direction: "ingress", ethertype: "IPv6", protocol: 58, conntrack_protocol: "icmpv6", port_range_min: 134, stateful: true });
    expect(securityGroupRuleText(ra)).toBe("-p ipv6-icmp -m icmp6 --icmpv6-type 134 -j RETURN");
    // The same type given in either range is the same rule.
    expect(ok({ direction: "ingress", ethertype: "IPv6", protocol: "ipv6-icmp", port_range_min: 134 })).toEqual(ra);
  });

  // Neutron's own text for every ICMP spelling the server may send, crossed with the type/code
  // fields, recorded by tools/neutron-reference/icmp_rule_args.py from its IptablesFirewallDriver.
  const recorded = JSON.parse(readFileSync(join(import.meta.dirname, "neutron-server-fixtures/icmp_rule_args.json"), "utf8")) as { rule: Record<string, unknown>; neutron: string }[];
  const neutronText = (rule: Record<string, unknown>) => recorded.find((r) => JSON.stringify(r.rule) === JSON.stringify(rule))!.neutron;

  it("has Neutron's text for every ICMP spelling", () => {
    expect(new Set(recorded.map((r) => `${String(r.rule["ethertype"])} ${String(r.rule["protocol"])}`))).toEqual(
      new Set(["IPv4 icmp", "IPv4 1", "IPv6 ipv6-icmp", "IPv6 icmpv6", "IPv6 58", "IPv6 icmp", "IPv6 1"]),
    );
  });

  it.each(recorded)("%j", ({ rule, neutron }) => {
    const family = rule["ethertype"] === "IPv4" ? 4 : 6;
    const typeless = (what: string) => rule[`${what}_max`] !== undefined && rule[`${what}_min`] === undefined;
    if (typeless("port_range") || typeless("source_port_range")) {
      // The API refuses a code without a type; Neutron's driver would drop the code silently.
      expect(issues(rule).join("\n")).toMatch(/an ICMP code needs an ICMP type/);
      return;
    }
    if (rule["port_range_min"] !== undefined && rule["source_port_range_min"] !== undefined) {
      // Neutron writes the option twice (sport's, then dport's) and iptables-restore refuses it.
      expect(neutron.match(/--icmp(v6)?-type/g)).toHaveLength(2);
      expect(issues(rule).join("\n")).toMatch(/an ICMP type in both/);
      return;
    }
    const text = securityGroupRuleText(ok(rule))!;
    expect(canonicalizeRule(text, { family, strict: true })).toBe(text);
    // IPv6 with protocol 1: Neutron writes `-p icmp` into ip6tables (a deviation: we mean ICMPv6).
    const want = family === 6 && rule["protocol"] === "1" ? neutronText({ ...rule, protocol: "ipv6-icmp" }) : neutron;
    expect(text).toBe(canonicalizeRule(want, { family }));
  });
});

describe("securityGroupRuleText writes exactly what iptables-save prints", () => {
  const cases: Record<string, unknown>[] = [];
  for (const protocol of ["tcp", "udp", "sctp", "dccp", "udplite"]) {
    cases.push({ protocol, port_range_min: 22, port_range_max: 22 });
    cases.push({ protocol, port_range_min: 0, port_range_max: 65535 });
    cases.push({ protocol, port_range_min: 1000, port_range_max: 2000, source_port_range_min: 53, source_port_range_max: 53 });
    cases.push({ protocol, port_range_min: 80, port_range_max: 80, source_port_range_min: 1000, source_port_range_max: 2000 });
    cases.push({ protocol, source_port_range_min: 1, source_port_range_max: 1 });
  }
  for (const [protocol, type, code] of [["icmp", 8, 0], ["icmp", 255, undefined], ["icmp", 0, undefined], ["icmp", 255, 3]] as const) {
    cases.push({ protocol, port_range_min: type, ...(code !== undefined ? { port_range_max: code } : {}) });
  }
  for (let p = 0; p <= 255; p += 17) cases.push({ protocol: String(p) });
  for (const p of ["ah", "esp", "gre", "igmp", "ipip", "ospf", "pgm", "rsvp", "vrrp", "egp", "hopopt", "ip"]) cases.push({ protocol: p });

  it.each(cases)("IPv4 %j", (extra) => {
    for (const prefix of [{}, { remote_ip_prefix: "10.20.30.40/13" }, { remote_ip_prefix: "0.0.0.0/0" }]) {
      for (const direction of ["ingress", "egress"]) {
        const rule = ok({ direction, ethertype: "IPv4", ...extra, ...prefix });
        const text = securityGroupRuleText(rule)!;
        expect(canonicalizeRule(text, { family: 4, strict: true })).toBe(text);
      }
    }
  });

  it.each([
    { protocol: "icmpv6", port_range_min: 128, port_range_max: 0 },
    { protocol: "ipv6-icmp", port_range_min: 255 },
    { protocol: "58" },
    { protocol: "ipv6-encap" },
    { protocol: "ipv6-frag" },
    { protocol: "ipv6-route" },
    { protocol: "ipv6-opts" },
    { protocol: "ipv6-nonxt" },
    { protocol: "tcp", port_range_min: 443, port_range_max: 443, remote_ip_prefix: "2001:db8:abcd:12::1/64" },
    { protocol: "udp", remote_ip_prefix: "::ffff:10.0.0.1/128" },
  ])("IPv6 %j", (extra) => {
    const rule = ok({ direction: "ingress", ethertype: "IPv6", ...extra });
    const text = securityGroupRuleText(rule)!;
    expect(canonicalizeRule(text, { family: 6, strict: true })).toBe(text);
  });

  it("translates protocol names to the number Neutron means (ipip is 4, which iptables calls ipencap)", () => {
    expect(securityGroupRuleText(ok({ direction: "ingress", ethertype: "IPv4", protocol: "ipip" }))).toBe("-p ipencap -j RETURN");
    expect(securityGroupRuleText(ok({ direction: "ingress", ethertype: "IPv4", protocol: "pgm" }))).toBe("-p 113 -j RETURN");
    expect(securityGroupRuleText(ok({ direction: "ingress", ethertype: "IPv6", protocol: "ipv6-encap" }))).toBe("-p ipv6 -j RETURN");
  });

  it("matches a remote group's ipset, only while the state lists the group's members for the family", () => {
    const rule = ok({ direction: "egress", ethertype: "IPv4", protocol: "tcp", port_range_min: 22, port_range_max: 22, remote_group_id: "5e2c1a4e-8a55-4d38-a5f0-1b2b5c0e2f10" });
    expect(securityGroupRuleText(rule, { "5e2c1a4e-8a55-4d38-a5f0-1b2b5c0e2f10": { IPv4: [] } })).toBe("-p tcp -m tcp --dport 22 -m set --match-set NIPv45e2c1a4e-8a55-4d38-a5f0- dst -j RETURN");
    expect(securityGroupRuleText(rule, { "5e2c1a4e-8a55-4d38-a5f0-1b2b5c0e2f10": { IPv6: [] } })).toBeUndefined();
    expect(securityGroupRuleText(rule, {})).toBeUndefined();
  });
});
