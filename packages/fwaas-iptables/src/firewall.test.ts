import { describe, expect, it } from "vitest";
import { firewallCoversRouter } from "./firewall-coverage.js";
import { parseFirewallGroup } from "./firewall-group.js";
import { parseFirewall } from "./firewall.js";

describe("parseFirewall (v1)", () => {
  it("reads the API shape (policy with rules) and the agent RPC shape (firewall_rule_list)", () => {
    const rule = { id: "r1", protocol: "icmp", action: "deny" };
    const api = parseFirewall({ id: "fw1", tenant_id: "t1", firewall_policy: { id: "p1", firewall_rules: [rule] } });
    const rpc = parseFirewall({ id: "fw1", tenant_id: "t1", firewall_rule_list: [rule], admin_state_up: false });
    expect(api.firewall).toMatchObject({ id: "fw1", tenantId: "t1", adminStateUp: true, routerIds: undefined });
    expect(api.firewall!.rules.map((r) => r.id)).toEqual(["r1"]);
    expect(rpc.firewall).toMatchObject({ adminStateUp: false });
    expect(parseFirewall({ id: "fw2", project_id: "t2", router_ids: ["a", "b"] }).firewall).toMatchObject({ tenantId: "t2", routerIds: ["a", "b"], rules: [] });
  });

  it("names the rule in every issue, with its path", () => {
    const { firewall, issues } = parseFirewall({
      id: "fw1",
      firewall_policy: { firewall_rules: [{ id: "ok", action: "allow" }, { id: "r2", protocol: "xyz", action: "allow" }, { action: "nope" }, "r4"] },
    });
    expect(firewall).toBeUndefined();
    expect(issues).toEqual([
      { path: "firewall_policy.firewall_rules.1.protocol", message: expect.stringMatching(/^rule r2: protocol: unknown protocol "xyz"/) },
      { path: "firewall_policy.firewall_rules.2.action", message: expect.stringMatching(/^rule #2: action: unknown action "nope"/) },
      { path: "firewall_policy.firewall_rules.3", message: expect.stringMatching(/^rule #3: expected a rule object/) },
    ]);
  });

  it("refuses ids that cannot be part of a chain name, and rules given twice", () => {
    expect(parseFirewall({ id: "-x" }).issues).toMatchObject([{ path: "id" }]);
    expect(parseFirewall({ id: "fw", firewall_rule_list: [], firewall_policy: { firewall_rules: [] } }).issues).toMatchObject([{ path: "firewall_rule_list" }]);
    expect(parseFirewall({ id: "fw", firewall_rule_list: [{ id: "a", action: "allow" }, { id: "a", action: "deny" }] }).issues).toMatchObject([
      { path: "firewall_rule_list.1.id" },
    ]);
  });

  it("covers the tenant's routers, or exactly the routers it lists", () => {
    const tenantWide = parseFirewall({ id: "fw1", tenant_id: "t1" }).firewall!;
    const inserted = parseFirewall({ id: "fw2", tenant_id: "t1", router_ids: ["r2"] }).firewall!;
    expect(firewallCoversRouter(tenantWide, { id: "r1", tenantId: "t1" })).toBe(true);
    expect(firewallCoversRouter(tenantWide, { id: "r1", tenantId: "t2" })).toBe(false);
    expect(firewallCoversRouter(inserted, { id: "r1", tenantId: "t1" })).toBe(false);
    expect(firewallCoversRouter(inserted, { id: "r2", tenantId: "t9" })).toBe(true);
  });
});

describe("parseFirewallGroup (v2)", () => {
  it("reads ports and both rule lists (reference and RPC names)", () => {
    const { group } = parseFirewallGroup({
      id: "g1",
      ports: ["p1", "p2"],
      ingress_rules: [{ id: "i1", action: "allow" }],
      egress_rule_list: [{ id: "e1", action: "deny", enabled: false }],
    });
    expect(group).toMatchObject({ id: "g1", adminStateUp: true, ports: ["p1", "p2"] });
    expect(group!.ingressRules.map((r) => r.id)).toEqual(["i1"]);
    expect(group!.egressRules.map((r) => [r.id, r.enabled])).toEqual([["e1", false]]);
  });

  it("says which list, which rule and which field is wrong", () => {
    const { issues } = parseFirewallGroup({
      id: "g1",
      ports: ["p1", "p1"],
      egress_rules: [{ id: "e1", protocol: "udp", source_port: "9:1", action: "allow" }],
      ingress_rules: [{ id: "i1", ip_version: 6, source_ip_address: "10.0.0.1", action: "allow" }],
    });
    expect(issues).toEqual([
      { path: "ingress_rules.0.source_ip_address", message: "ingress rule i1: source_ip_address: source_ip_address 10.0.0.1 is IPv4 but the rule's ip_version is 6" },
      { path: "egress_rules.0.source_port", message: "egress rule e1: source_port: port range 9:1 has min > max" },
      { path: "ports.1", message: "port p1 is listed twice" },
    ]);
  });
});
