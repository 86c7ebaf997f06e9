import { IptablesManager } from "@chainwarden/core";
import { FakeIptablesRunner } from "@chainwarden/testing";
import { describe, expect, it } from "vitest";
import { parseFirewallGroup, type FirewallGroup } from "./firewall-group.js";
import { parseFirewall, type Firewall } from "./firewall.js";
import { RouterFirewall, type RouterFirewallInput } from "./router-firewall.js";

const NS = "qrouter-r1";
const P1 = "11111111-aaaa-4000-8000-000000000001";
const P2 = "22222222-bbbb-4000-8000-000000000002";
const P3 = "33333333-cccc-4000-8000-000000000003";

function harness() {
  const runner = new FakeIptablesRunner({ variant: "nft", namespaces: [NS] });
  const manager = new IptablesManager({ runner, namespace: NS, wrapName: "neutron-l3-agent", strict: true });
  const driver = new RouterFirewall(manager, { resource: "r1" });
  const sync = async (input: RouterFirewallInput) => {
    const calls = runner.restoreCalls.length;
    const { value, result } = await manager.deferApply(() => driver.sync(input));
    const sent = runner.restoreCalls.slice(calls).map((c) => c.input).join("");
    return { ...value, lines: result.lines, sent };
  };
  /** Our lines of the filter table (chains and rules that are FWaaS's). */
  const fw = (family: 4 | 6 = 4) =>
    runner
      .dump({ namespace: NS, family })
      .split("\n")
      .filter((l) => /fwaas-defau|-(i|o)v[46]|accepted|dropped|rejected/.test(l));
  return { runner, manager, driver, sync, fw };
}

function group(raw: Record<string, unknown>): FirewallGroup {
  const { group: g, issues } = parseFirewallGroup({ admin_state_up: true, ingress_rules: [], egress_rules: [], ...raw });
  expect(issues).toEqual([]);
  return g!;
}

function firewall(raw: Record<string, unknown>): Firewall {
  const { firewall: f, issues } = parseFirewall({ tenant_id: "t1", ...raw });
  expect(issues).toEqual([]);
  return f!;
}

const denyIcmp = { id: "r-icmp", protocol: "icmp", ip_version: 4, action: "deny" };
const allowAll = { id: "r-any", ip_version: 4, action: "allow" };

describe("RouterFirewall v2", () => {
  it("binds every port of the group, in the group's order, with neutron-fwaas' jump layout", async () => {
    const h = harness();
    await h.sync({ ports: [P1, P2, P3], groups: [group({ id: "g1", ports: [P2, P1], ingress_rules: [denyIcmp, allowAll] })] });
    expect(h.fw().filter((l) => l.startsWith("-A neutron-l3-agent-FORWARD"))).toEqual([
      "-A neutron-l3-agent-FORWARD -o qr-22222222-bb -j neutron-l3-agent-iv4g1",
      "-A neutron-l3-agent-FORWARD -o qr-11111111-aa -j neutron-l3-agent-iv4g1",
      "-A neutron-l3-agent-FORWARD -i qr-22222222-bb -j neutron-l3-agent-ov4g1",
      "-A neutron-l3-agent-FORWARD -i qr-11111111-aa -j neutron-l3-agent-ov4g1",
      "-A neutron-l3-agent-FORWARD -o qr-22222222-bb -j neutron-l3-agent-fwaas-defau",
      "-A neutron-l3-agent-FORWARD -o qr-11111111-aa -j neutron-l3-agent-fwaas-defau",
      "-A neutron-l3-agent-FORWARD -i qr-22222222-bb -j neutron-l3-agent-fwaas-defau",
      "-A neutron-l3-agent-FORWARD -i qr-11111111-aa -j neutron-l3-agent-fwaas-defau",
    ]);
  });

  it("adding a port keeps the other ports' jumps (neutron-fwaas drops them)", async () => {
    const h = harness();
    await h.sync({ ports: [P1, P2], groups: [group({ id: "g1", ports: [P1] })] });
    const r = await h.sync({ ports: [P1, P2], groups: [group({ id: "g1", ports: [P1, P2] })] });
    expect(r.rewritten).toEqual([]);
    const forward = h.fw().filter((l) => l.startsWith("-A neutron-l3-agent-FORWARD"));
    expect(forward.filter((l) => l.includes("qr-11111111-aa"))).toHaveLength(4);
    expect(forward.filter((l) => l.includes("qr-22222222-bb"))).toHaveLength(4);
    // Only FORWARD changed: the group's chains were not rewritten.
    expect(r.sent).not.toMatch(/-A neutron-l3-agent-iv4g1|-A neutron-l3-agent-ov4g1/);
  });

  it("removing one port removes that port's jumps only and rewrites no chain (neutron-fwaas re-applies to all)", async () => {
    const h = harness();
    await h.sync({ ports: [P1, P2], groups: [group({ id: "g1", ports: [P1, P2], ingress_rules: [denyIcmp] })] });
    const r = await h.sync({ ports: [P1, P2], groups: [group({ id: "g1", ports: [P1], ingress_rules: [denyIcmp] })] });
    expect(r.rewritten).toEqual([]);
    expect(r.removed).toEqual([]);
    expect(r.sent.split("\n").filter((l) => /^-[ADIR] /.test(l)).every((l) => l.includes("neutron-l3-agent-FORWARD"))).toBe(true);
    expect(h.fw().filter((l) => l.includes("qr-22222222-bb"))).toEqual([]);
    expect(h.fw().filter((l) => l.includes("qr-11111111-aa"))).toHaveLength(4);
  });

  it("ignores ports that are not the router's; a group with none of them puts nothing here", async () => {
    const h = harness();
    await h.sync({ ports: [P1], groups: [group({ id: "g9", ports: [P3] })] });
    expect(h.fw()).toEqual([]);
  });

  it("two groups on one router: each keeps its jumps when the other changes or goes", async () => {
    const h = harness();
    const g1 = group({ id: "g1", ports: [P1], ingress_rules: [denyIcmp] });
    const g2 = group({ id: "g2", ports: [P2], egress_rules: [allowAll] });
    await h.sync({ ports: [P1, P2], groups: [g2, g1] });
    const forward = () => h.fw().filter((l) => l.startsWith("-A neutron-l3-agent-FORWARD"));
    expect(forward()).toEqual([
      "-A neutron-l3-agent-FORWARD -o qr-11111111-aa -j neutron-l3-agent-iv4g1",
      "-A neutron-l3-agent-FORWARD -i qr-11111111-aa -j neutron-l3-agent-ov4g1",
      "-A neutron-l3-agent-FORWARD -o qr-11111111-aa -j neutron-l3-agent-fwaas-defau",
      "-A neutron-l3-agent-FORWARD -i qr-11111111-aa -j neutron-l3-agent-fwaas-defau",
      "-A neutron-l3-agent-FORWARD -o qr-22222222-bb -j neutron-l3-agent-iv4g2",
      "-A neutron-l3-agent-FORWARD -i qr-22222222-bb -j neutron-l3-agent-ov4g2",
      "-A neutron-l3-agent-FORWARD -o qr-22222222-bb -j neutron-l3-agent-fwaas-defau",
      "-A neutron-l3-agent-FORWARD -i qr-22222222-bb -j neutron-l3-agent-fwaas-defau",
    ]);
    const g1b = group({ id: "g1", ports: [P1], ingress_rules: [allowAll] });
    const update = await h.sync({ ports: [P1, P2], groups: [g1b, g2] });
    expect(update.rewritten).toEqual(["v2:g1"]);
    expect(update.sent).not.toMatch(/g2/);
    const del = await h.sync({ ports: [P1, P2], groups: [g2] });
    expect(del.removed).toEqual(["v2:g1"]);
    expect(h.fw().filter((l) => l.includes("g1"))).toEqual([]);
    expect(forward()).toEqual([
      "-A neutron-l3-agent-FORWARD -o qr-22222222-bb -j neutron-l3-agent-iv4g2",
      "-A neutron-l3-agent-FORWARD -i qr-22222222-bb -j neutron-l3-agent-ov4g2",
      "-A neutron-l3-agent-FORWARD -o qr-22222222-bb -j neutron-l3-agent-fwaas-defau",
      "-A neutron-l3-agent-FORWARD -i qr-22222222-bb -j neutron-l3-agent-fwaas-defau",
    ]);
    // A fresh driver on a fresh manager asks for the very same layout: nothing to send.
    const fresh = new IptablesManager({ runner: h.runner, namespace: NS, wrapName: "neutron-l3-agent", strict: true });
    const { result } = await fresh.deferApply(() => new RouterFirewall(fresh).sync({ ports: [P1, P2], groups: [g2] }));
    expect(result.lines).toBe(0);
  });

  it("translates rules: versions, addresses, port ranges, reject, disabled rules skipped, policy order", async () => {
    const h = harness();
    await h.sync({
      ports: [P1],
      groups: [
        group({
          id: "g1",
          ports: [P1],
          ingress_rules: [
            { id: "a", protocol: "tcp", destination_port: "1000:2000", source_ip_address: "10.1.0.5/16", action: "allow" },
            { id: "b", protocol: "udp", source_port: 53, destination_ip_address: "192.0.2.1", action: "reject" },
            { id: "c", protocol: "tcp", destination_port: "22", action: "deny", enabled: false },
            { id: "d", protocol: "icmp", ip_version: 6, source_ip_address: "2001:DB8::1", action: "allow" },
            { id: "e", protocol: 47, action: "deny" },
            { id: "f", protocol: "tcp", destination_port: "0:65535", action: "allow" },
          ],
        }),
      ],
    });
    expect(h.fw(4).filter((l) => l.startsWith("-A neutron-l3-agent-iv4g1"))).toEqual([
      "-A neutron-l3-agent-iv4g1 -m state --state INVALID -j neutron-l3-agent-dropped",
      "-A neutron-l3-agent-iv4g1 -m state --state RELATED,ESTABLISHED -j ACCEPT",
      "-A neutron-l3-agent-iv4g1 -s 10.1.0.0/16 -p tcp -m tcp --dport 1000:2000 -j neutron-l3-agent-accepted",
      "-A neutron-l3-agent-iv4g1 -d 192.0.2.1/32 -p udp -m udp --sport 53 -j neutron-l3-agent-rejected",
      "-A neutron-l3-agent-iv4g1 -p gre -j neutron-l3-agent-dropped",
      "-A neutron-l3-agent-iv4g1 -p tcp -m tcp -j neutron-l3-agent-accepted",
    ]);
    expect(h.fw(6).filter((l) => l.startsWith("-A neutron-l3-agent-iv6g1"))).toEqual([
      "-A neutron-l3-agent-iv6g1 -m state --state INVALID -j neutron-l3-agent-dropped",
      "-A neutron-l3-agent-iv6g1 -m state --state RELATED,ESTABLISHED -j ACCEPT",
      "-A neutron-l3-agent-iv6g1 -s 2001:db8::1/128 -p ipv6-icmp -j neutron-l3-agent-accepted",
    ]);
    expect(h.fw(6)).toContain("-A neutron-l3-agent-rejected -j REJECT --reject-with icmp6-port-unreachable");
  });

  it("admin_state_up false: the group's chains go, its ports drop everything", async () => {
    const h = harness();
    await h.sync({ ports: [P1], groups: [group({ id: "g1", ports: [P1], ingress_rules: [allowAll] })] });
    const r = await h.sync({ ports: [P1], groups: [group({ id: "g1", ports: [P1], admin_state_up: false, ingress_rules: [allowAll] })] });
    expect(r.conntrack).toEqual({ flush: [], filters: [] });
    expect(h.fw()).toEqual([
      ":neutron-l3-agent-accepted -",
      ":neutron-l3-agent-dropped -",
      ":neutron-l3-agent-fwaas-defau -",
      ":neutron-l3-agent-rejected -",
      "-A neutron-l3-agent-FORWARD -o qr-11111111-aa -j neutron-l3-agent-fwaas-defau",
      "-A neutron-l3-agent-FORWARD -i qr-11111111-aa -j neutron-l3-agent-fwaas-defau",
      "-A neutron-l3-agent-accepted -j ACCEPT",
      "-A neutron-l3-agent-dropped -j DROP",
      "-A neutron-l3-agent-fwaas-defau -j neutron-l3-agent-dropped",
      "-A neutron-l3-agent-rejected -j REJECT --reject-with icmp-port-unreachable",
    ]);
  });

  it("the last group leaving takes every FWaaS chain with it", async () => {
    const h = harness();
    await h.sync({ ports: [P1], groups: [group({ id: "g1", ports: [P1], ingress_rules: [allowAll] })] });
    await h.sync({ ports: [P1], groups: [] });
    expect(h.fw()).toEqual([]);
    expect(h.fw(6)).toEqual([]);
  });
});

describe("RouterFirewall v1", () => {
  it("puts each rule in both chains of its version, with verdict targets", async () => {
    const h = harness();
    await h.sync({
      ports: [P1],
      firewalls: [
        firewall({
          id: "80daec7b-8167-459e-b915-da02832a248b",
          firewall_policy: { firewall_rules: [denyIcmp, { id: "r6", ip_version: 6, protocol: "tcp", destination_port: "443", action: "reject" }, allowAll] },
        }),
      ],
    });
    expect(h.fw(4).filter((l) => l.startsWith("-A neutron-l3-agent-ov480daec7b"))).toEqual([
      "-A neutron-l3-agent-ov480daec7b -m state --state INVALID -j DROP",
      "-A neutron-l3-agent-ov480daec7b -m state --state RELATED,ESTABLISHED -j ACCEPT",
      "-A neutron-l3-agent-ov480daec7b -p icmp -j DROP",
      "-A neutron-l3-agent-ov480daec7b -j ACCEPT",
    ]);
    expect(h.fw(6).filter((l) => l.startsWith("-A neutron-l3-agent-iv680daec7b"))).toEqual([
      "-A neutron-l3-agent-iv680daec7b -m state --state INVALID -j DROP",
      "-A neutron-l3-agent-iv680daec7b -m state --state RELATED,ESTABLISHED -j ACCEPT",
      "-A neutron-l3-agent-iv680daec7b -p tcp -m tcp --dport 443 -j REJECT --reject-with icmp6-port-unreachable",
    ]);
    expect(h.fw(6)).toContain("-A neutron-l3-agent-fwaas-defau -j DROP");
  });

  it("admin_state_up false drops everything through qr-+", async () => {
    const h = harness();
    await h.sync({ ports: [], firewalls: [firewall({ id: "fw1", admin_state_up: false, firewall_policy: { firewall_rules: [allowAll] } })] });
    expect(h.fw()).toEqual([
      ":neutron-l3-agent-fwaas-defau -",
      "-A neutron-l3-agent-FORWARD -o qr-+ -j neutron-l3-agent-fwaas-defau",
      "-A neutron-l3-agent-FORWARD -i qr-+ -j neutron-l3-agent-fwaas-defau",
      "-A neutron-l3-agent-fwaas-defau -j DROP",
    ]);
  });

  it("an update rewrites only the changed chains' lines; delete removes chains and jumps", async () => {
    const h = harness();
    const rules = Array.from({ length: 20 }, (_, i) => ({ id: `r${i}`, protocol: "tcp", destination_port: String(1000 + i), action: "allow" }));
    await h.sync({ ports: [], firewalls: [firewall({ id: "fw1", firewall_policy: { firewall_rules: rules } })] });
    const changed = rules.map((r, i) => (i === 7 ? { ...r, action: "deny" } : r));
    const up = await h.sync({ ports: [], firewalls: [firewall({ id: "fw1", firewall_policy: { firewall_rules: changed } })] });
    expect(up.rewritten).toEqual(["v1:fw1"]);
    // One replaced rule in each of iv4 and ov4; nothing else.
    expect(up.sent.split("\n").filter((l) => /^-[ADIR] /.test(l)).sort()).toEqual([
      "-D neutron-l3-agent-iv4fw1 10",
      "-D neutron-l3-agent-ov4fw1 10",
      "-I neutron-l3-agent-iv4fw1 10 -p tcp -m tcp --dport 1007 -j DROP",
      "-I neutron-l3-agent-ov4fw1 10 -p tcp -m tcp --dport 1007 -j DROP",
    ]);
    expect(up.conntrack.filters.map((f) => f.destinationPort)).toEqual([{ min: 1007, max: 1007 }]);
    await h.sync({ ports: [], firewalls: [] });
    expect(h.fw()).toEqual([]);
  });
});

describe("RouterFirewall conntrack plan", () => {
  const g = (rules: unknown[], extra: Record<string, unknown> = {}) => group({ id: "g1", ports: [P1], ingress_rules: rules, ...extra });
  it("flushes both families when a firewall is newly enforced, a port joins, or admin comes back up", async () => {
    const h = harness();
    expect((await h.sync({ ports: [P1, P2], groups: [g([allowAll])] })).conntrack).toEqual({ flush: [4, 6], filters: [] });
    expect((await h.sync({ ports: [P1, P2], groups: [g([allowAll])] })).conntrack).toEqual({ flush: [], filters: [] });
    expect((await h.sync({ ports: [P1, P2], groups: [g([allowAll], { ports: [P1, P2] })] })).conntrack.flush).toEqual([4, 6]);
    await h.sync({ ports: [P1, P2], groups: [g([allowAll], { ports: [P1, P2], admin_state_up: false })] });
    expect((await h.sync({ ports: [P1, P2], groups: [g([allowAll], { ports: [P1, P2] })] })).conntrack.flush).toEqual([4, 6]);
  });

  it("an update removes what its changed, new, removed and reordered rules match", async () => {
    const h = harness();
    const a = { id: "a", protocol: "tcp", destination_port: "80", action: "allow" };
    const b = { id: "b", protocol: "udp", destination_port: "53", action: "allow" };
    const c = { id: "c", protocol: "tcp", destination_port: "22", action: "allow" };
    await h.sync({ ports: [P1], groups: [g([a, b])] });
    const plan = (await h.sync({ ports: [P1], groups: [g([{ ...a, action: "deny" }, c])] })).conntrack;
    expect(plan.flush).toEqual([]);
    expect(plan.filters.map((f) => `${f.protocolNumber}/${f.destinationPort!.min}`).sort()).toEqual(["17/53", "6/22", "6/80"]);
    const reorder = (await h.sync({ ports: [P1], groups: [g([c, { ...a, action: "deny" }])] })).conntrack;
    expect(reorder.filters.map((f) => `${f.protocolNumber}/${f.destinationPort!.min}`).sort()).toEqual(["6/22", "6/80"]);
  });
});
