import { describe, expect, it } from "vitest";
import { parseFirewallRule } from "./firewall-rule.js";
import { translateRule, V1_ACTION_TARGETS, V2_ACTION_TARGETS } from "./rule-translation.js";

const ok = (raw: Record<string, unknown>) => {
  const { rule, issues } = parseFirewallRule(raw);
  expect(issues).toEqual([]);
  return rule!;
};
const bad = (raw: Record<string, unknown>) => parseFirewallRule(raw).issues;

describe("parseFirewallRule", () => {
  it("normalizes protocols: names, numbers, any, icmp in IPv6", () => {
    expect(ok({ protocol: "TCP", action: "allow" }).protocol).toBe("tcp");
    expect(ok({ protocol: 17, action: "allow" }).protocol).toBe("udp");
    expect(ok({ protocol: "6", action: "allow" }).protocol).toBe("tcp");
    expect(ok({ protocol: 47, action: "allow" })).toMatchObject({ protocol: "gre", protocolNumber: 47 });
    expect(ok({ protocol: "any", action: "allow" }).protocol).toBeUndefined();
    expect(ok({ protocol: null, action: "allow" }).protocol).toBeUndefined();
    expect(ok({ protocol: 0, action: "allow" }).protocol).toBeUndefined();
    expect(ok({ protocol: "icmp", ip_version: 6, action: "allow" })).toMatchObject({ protocol: "ipv6-icmp", protocolNumber: 58 });
    expect(ok({ protocol: "ipv6-icmp", ip_version: 6, action: "allow" }).protocol).toBe("ipv6-icmp");
  });

  it("infers the version from the addresses when none is given; defaults to 4", () => {
    expect(ok({ source_ip_address: "2001:db8::/32", action: "allow" }).ipVersion).toBe(6);
    expect(ok({ action: "allow" }).ipVersion).toBe(4);
  });

  it("rejects an unknown protocol or action", () => {
    expect(bad({ protocol: "tcpp", action: "allow" })).toEqual([{ path: "protocol", message: expect.stringContaining('unknown protocol "tcpp"') }]);
    expect(bad({ protocol: 256, action: "allow" })).toEqual([{ path: "protocol", message: expect.stringContaining("out of range") }]);
    expect(bad({ action: "permit" })).toEqual([{ path: "action", message: expect.stringContaining('unknown action "permit"') }]);
    expect(bad({ protocol: "ipv6-icmp", ip_version: 4, action: "allow" })).toMatchObject([{ path: "protocol" }]);
  });

  it("rejects port ranges with min > max, bad ports, and ports without tcp/udp", () => {
    expect(bad({ protocol: "tcp", destination_port: "2000:1000", action: "allow" })).toEqual([
      { path: "destination_port", message: "port range 2000:1000 has min > max" },
    ]);
    expect(bad({ protocol: "tcp", source_port: "70000", action: "allow" })).toMatchObject([{ path: "source_port" }]);
    expect(bad({ protocol: "tcp", source_port: "80-90", action: "allow" })).toMatchObject([{ path: "source_port" }]);
    expect(bad({ destination_port: "80", action: "allow" })).toEqual([
      { path: "destination_port", message: "destination_port 80 needs protocol tcp or udp" },
    ]);
    expect(bad({ protocol: "icmp", source_port: 7, action: "allow" })).toMatchObject([{ path: "source_port" }]);
  });

  it("rejects invalid addresses and an ip_version that disagrees with one", () => {
    expect(bad({ source_ip_address: "10.0.0.300", action: "allow" })).toEqual([
      { path: "source_ip_address", message: expect.stringContaining('invalid address "10.0.0.300"') },
    ]);
    expect(bad({ destination_ip_address: "10.0.0.0/33", action: "allow" })).toMatchObject([{ path: "destination_ip_address" }]);
    expect(bad({ source_ip_address: "10.1", action: "allow" })).toMatchObject([{ path: "source_ip_address" }]);
    expect(bad({ ip_version: 4, destination_ip_address: "2001:db8::1", action: "allow" })).toEqual([
      { path: "destination_ip_address", message: "destination_ip_address 2001:db8::1 is IPv6 but the rule's ip_version is 4" },
    ]);
    expect(bad({ source_ip_address: "10.0.0.1", destination_ip_address: "2001:db8::1", action: "allow" })).toMatchObject([
      { path: "destination_ip_address" },
    ]);
  });

  it("reports every problem of a rule at once, and no port issue for a protocol that did not parse", () => {
    expect(bad({ protocol: "nope", destination_port: "80", source_ip_address: "x", action: "maybe" }).map((i) => i.path)).toEqual([
      "action",
      "source_ip_address",
      "protocol",
    ]);
  });
});

describe("translateRule", () => {
  it("writes iptables-save's order and forms", () => {
    const r = ok({ protocol: "tcp", source_ip_address: "10.0.0.5/24", destination_ip_address: "192.0.2.1", source_port: "1024:65535", destination_port: 80, action: "allow" });
    expect(translateRule(r, V1_ACTION_TARGETS)).toBe("-s 10.0.0.0/24 -d 192.0.2.1/32 -p tcp -m tcp --sport 1024:65535 --dport 80 -j ACCEPT");
    expect(translateRule(r, V2_ACTION_TARGETS)).toBe("-s 10.0.0.0/24 -d 192.0.2.1/32 -p tcp -m tcp --sport 1024:65535 --dport 80 -j $accepted");
    expect(translateRule(ok({ protocol: "icmp", action: "deny" }), V1_ACTION_TARGETS)).toBe("-p icmp -j DROP");
    expect(translateRule(ok({ action: "reject", ip_version: 6 }), V1_ACTION_TARGETS)).toBe("-j REJECT --reject-with icmp6-port-unreachable");
    expect(translateRule(ok({ protocol: "udp", destination_port: "53:53", action: "deny" }), V1_ACTION_TARGETS)).toBe("-p udp -m udp --dport 53 -j DROP");
  });
});
