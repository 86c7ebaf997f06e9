/**
 * The plugin inside a real agent (the framework's Agent, reconcile loop and observers) on the test
 * kit's FakeHost (the honest fakes of iptables, ip and conntrack), mostly with an l3 plugin that
 * only calls the router extensions as `@chainwarden/l3-nat` does (`stubL3Plugin`), so FWaaS's rules
 * and commands stand alone. The real l3 plugin is used here once on FakeHost and for plans, and for
 * real traffic in the datapath test.
 */
import { l3NatPlugin } from "@chainwarden/l3-nat";
import { FakeHost } from "@chainwarden/testing";
import { describe, expect, it } from "vitest";
import { createFwaasAgent, routerDict } from "./test-support/fwaas-agent-harness.js";

const T1 = "tenant-1";
const R1 = "1e4c5a7b-2f0d-4c0e-9a47-3b1f6e2d8c90";
const R2 = "2e4c5a7b-2f0d-4c0e-9a47-3b1f6e2d8c90";
const R3 = "3e4c5a7b-2f0d-4c0e-9a47-3b1f6e2d8c90";
const P1 = "c0ffee00-1111-4222-8333-444455556666";
const P2 = "c0ffee00-2222-4222-8333-444455556666";
const P3 = "c0ffee00-3333-4222-8333-444455556666";

const router = routerDict;

const denyIcmp = { id: "deny-icmp", protocol: "icmp", ip_version: 4, action: "deny" };
const allowTcp = { id: "allow-tcp", protocol: "tcp", ip_version: 4, action: "allow" };
const group = (id: string, ports: string[], ingress: unknown[] = [denyIcmp, allowTcp], extra: object = {}) => ({ id, tenant_id: T1, ports, ingress_rules: ingress, egress_rules: ingress, ...extra });
const firewall = (id: string, rules: unknown[] = [denyIcmp], extra: object = {}) => ({ id, tenant_id: T1, admin_state_up: true, firewall_policy: { firewall_rules: rules }, ...extra });

const ns = (id: string) => `qrouter-${id}`;

function fwLines(host: FakeHost, routerId: string, family: 4 | 6 = 4): string[] {
  return host.iptables
    .dump({ namespace: ns(routerId), family })
    .split("\n")
    .filter((l) => /fwaas-defau|-(i|o)v[46]|accepted|dropped|rejected|-j neutron-l3-agent-scope/.test(l) && l.startsWith("-A"));
}

/** The restores and conntrack commands on the host, in order: `restore NS 4`, `conntrack NS ARGS`. */
function events(host: FakeHost, from = 0): string[] {
  return host.events
    .slice(from)
    .filter((e) => e.what === "restore" || e.what === "conntrack")
    .map((e) => (e.what === "restore" ? `restore ${e.namespace} ${e.family}` : `conntrack ${e.namespace} ${e.args!.join(" ")}`));
}

describe("fwaasIptablesPlugin in an agent", () => {
  it("programs v2 groups on the routers that host their ports, after the l3 rules, and flushes conntrack after the apply", async () => {
    const host = new FakeHost({ variant: "nft" });
    const h = await createFwaasAgent({
      runner: host,
      initial: { routers: [router(R1, T1, [P1, P2]), router(R2, T1, [P3])], firewall_groups: [group("fa0e5c2b-7d1e", [P1])] },
    });
    const report = await h.agent.start();
    expect(report).toMatchObject({ failed: [], problems: [] });
    expect(fwLines(host, R1).filter((l) => l.startsWith("-A neutron-l3-agent-FORWARD"))).toEqual([
      "-A neutron-l3-agent-FORWARD -j neutron-l3-agent-scope",
      "-A neutron-l3-agent-FORWARD -o qr-c0ffee00-11 -j neutron-l3-agent-iv4fa0e5c2b",
      "-A neutron-l3-agent-FORWARD -i qr-c0ffee00-11 -j neutron-l3-agent-ov4fa0e5c2b",
      "-A neutron-l3-agent-FORWARD -o qr-c0ffee00-11 -j neutron-l3-agent-fwaas-defau",
      "-A neutron-l3-agent-FORWARD -i qr-c0ffee00-11 -j neutron-l3-agent-fwaas-defau",
    ]);
    expect(fwLines(host, R2)).toEqual(["-A neutron-l3-agent-FORWARD -j neutron-l3-agent-scope"]);
    const r1Events = events(host).filter((e) => e.includes(ns(R1)));
    expect(r1Events.slice(-2)).toEqual([`conntrack ${ns(R1)} -D -f ipv4`, `conntrack ${ns(R1)} -D -f ipv6`]);
    expect(r1Events.findIndex((e) => e.startsWith("conntrack"))).toBeGreaterThan(r1Events.findIndex((e) => e.startsWith("restore")));
    expect(events(host).some((e) => e.startsWith(`conntrack ${ns(R2)}`))).toBe(false);
    await h.agent.stop();
  });

  it("a firewall change reaches only its routers; a router change re-binds ports; a delete leaves the others", async () => {
    const host = new FakeHost({ variant: "nft" });
    const routers = [router(R1, T1, [P1, P2]), router(R2, T1, [P3])];
    const h = await createFwaasAgent({ runner: host, initial: { routers, firewall_groups: [group("g1", [P1]), group("g2", [P3])] } });
    await h.agent.start();
    // Connections through R1: ssh, which the change denies, and https, which it leaves alone.
    host.conntrack.addConnection(ns(R1), { protocol: "tcp", src: "10.0.0.5", dst: "192.0.2.9", sport: 40000, dport: 22 });
    host.conntrack.addConnection(ns(R1), { protocol: "tcp", src: "10.0.0.5", dst: "192.0.2.9", sport: 40001, dport: 443 });
    const before = host.iptables.restoreCalls.length;
    const denySsh = { id: "deny-ssh", protocol: "tcp", destination_port: "22", action: "deny" };
    await h.push({ routers, firewall_groups: [group("g1", [P1], [denySsh, denyIcmp, allowTcp]), group("g2", [P3])] });
    const sent = host.iptables.restoreCalls.slice(before);
    expect(sent.map((c) => c.target.namespace)).toEqual([ns(R1)]);
    expect(sent[0]!.input).toContain("-I neutron-l3-agent-iv4g1 3 -p tcp -m tcp --dport 22 -j neutron-l3-agent-dropped");
    expect(events(host).slice(-2)).toEqual([
      `conntrack ${ns(R1)} -L -f ipv4`,
      `conntrack ${ns(R1)} -D -f ipv4 -p tcp -s 10.0.0.5 -d 192.0.2.9 --sport 40000 --dport 22`,
    ]);
    expect(host.conntrack.listing(ns(R1))).toEqual([expect.stringContaining("dport=443")]);

    // A port moves to the other router, and the group lists it: its jumps move with it.
    await h.push({ routers: [router(R1, T1, [P1]), router(R2, T1, [P3, P2])], firewall_groups: [group("g1", [P1, P2]), group("g2", [P3])] });
    expect(fwLines(host, R2).filter((l) => l.includes("qr-c0ffee00-22"))).toHaveLength(4);
    expect(fwLines(host, R1).filter((l) => l.includes("qr-c0ffee00-22"))).toHaveLength(0);

    await h.push({ routers, firewall_groups: [group("g2", [P3])] });
    expect(fwLines(host, R1)).toEqual(["-A neutron-l3-agent-FORWARD -j neutron-l3-agent-scope"]);
    expect(fwLines(host, R2).filter((l) => l.includes("g2"))).toHaveLength(10);
    await h.agent.stop();
  });

  it("a v1 firewall covers its tenant's routers (or the routers it names), as in the seed", async () => {
    const host = new FakeHost({ variant: "legacy" });
    const routers = [router(R1, T1, [P1]), router(R2, T1, [P2]), router(R3, "tenant-2", [P3])];
    const h = await createFwaasAgent({ runner: host, initial: { routers, firewalls: [firewall("80daec7b-8167-459e-b915-da02832a248b")] } });
    await h.agent.start();
    const seedJumps = [
      "-A neutron-l3-agent-FORWARD -j neutron-l3-agent-scope",
      "-A neutron-l3-agent-FORWARD -o qr-+ -j neutron-l3-agent-iv480daec7b",
      "-A neutron-l3-agent-FORWARD -i qr-+ -j neutron-l3-agent-ov480daec7b",
      "-A neutron-l3-agent-FORWARD -o qr-+ -j neutron-l3-agent-fwaas-defau",
      "-A neutron-l3-agent-FORWARD -i qr-+ -j neutron-l3-agent-fwaas-defau",
    ];
    expect(fwLines(host, R1).filter((l) => l.includes("FORWARD"))).toEqual(seedJumps);
    expect(fwLines(host, R2).filter((l) => l.includes("FORWARD"))).toEqual(seedJumps);
    expect(fwLines(host, R3)).toEqual(["-A neutron-l3-agent-FORWARD -j neutron-l3-agent-scope"]);
    await h.push({ routers, firewalls: [firewall("80daec7b-8167-459e-b915-da02832a248b", [denyIcmp], { router_ids: [R3] })] });
    expect(fwLines(host, R1)).toEqual(["-A neutron-l3-agent-FORWARD -j neutron-l3-agent-scope"]);
    expect(fwLines(host, R3).filter((l) => l.includes("FORWARD"))).toEqual(seedJumps);
    await h.agent.stop();
  });

  it("a bad firewall is reported naming it and its rule; the others apply; a bad edit keeps the last good version", async () => {
    const host = new FakeHost({ variant: "nft" });
    const routers = [router(R1, T1, [P1, P2])];
    const good = group("g-good", [P2]);
    const h = await createFwaasAgent({ runner: host, initial: { routers, firewall_groups: [group("g-bad", [P1], [{ id: "r9", protocol: "tcp", destination_port: "90:80", action: "allow" }]), good] } });
    const report = await h.agent.start();
    expect(report.failed).toEqual([]);
    expect(report.problems).toEqual([
      {
        source: "test-state",
        path: "firewall_groups.0.ingress_rules.0.destination_port",
        resource: `g-bad@${R1}`,
        message: "firewall group g-bad: ingress rule r9: destination_port: port range 90:80 has min > max",
      },
      expect.objectContaining({ path: "firewall_groups.0.egress_rules.0.destination_port" }),
    ]);
    expect(fwLines(host, R1).filter((l) => l.includes("g-good")).length).toBeGreaterThan(0);
    expect(fwLines(host, R1).filter((l) => l.includes("g-bad"))).toEqual([]);

    // Valid, then broken: the valid version stays in force.
    await h.push({ routers, firewall_groups: [group("g-bad", [P1]), good] });
    const applied = fwLines(host, R1).filter((l) => l.includes("g-bad"));
    expect(applied.length).toBeGreaterThan(0);
    await h.push({ routers, firewall_groups: [group("g-bad", [P1], [{ id: "x", protocol: "sctpx", action: "allow" }]), good] });
    expect(fwLines(host, R1).filter((l) => l.includes("g-bad"))).toEqual(applied);
    await h.agent.stop();
  });

  it("conflicts Neutron's server refuses are resolved and reported: a port in two groups, two v1 firewalls", async () => {
    const host = new FakeHost({ variant: "nft" });
    const h = await createFwaasAgent({
      runner: host,
      initial: { routers: [router(R1, T1, [P1])], firewall_groups: [group("g1", [P1]), group("g2", [P1])], firewalls: [firewall("fw-a"), firewall("fw-b")] },
    });
    const report = await h.agent.start();
    expect(report.problems.map((p) => [p.resource, p.message])).toEqual([
      ["fw-b", `firewall fw-b: router ${R1} already has firewall fw-a (one v1 firewall per router); not applied there`],
      ["g2", `firewall group g2: port ${P1} already has firewall group g1 (a port has at most one); not applied to it`],
    ]);
    expect(fwLines(host, R1).filter((l) => l.includes("g2") || l.includes("fw-b"))).toEqual([]);
    await h.agent.stop();
  });

  it("deleting a router is not an error; restarting the agent re-adopts the rules and flushes nothing", async () => {
    const host = new FakeHost({ variant: "nft" });
    const state = { routers: [router(R1, T1, [P1]), router(R2, T1, [P2])], firewall_groups: [group("g1", [P1, P2])] };
    const h = await createFwaasAgent({ runner: host, initial: state });
    await h.agent.start();
    await h.push({ routers: [router(R2, T1, [P2])], firewall_groups: [group("g1", [P1, P2])] });
    expect(host.netns.list()).toEqual([ns(R2)]);
    await h.agent.stop();

    const before = host.events.length;
    const again = await createFwaasAgent({ runner: host, initial: { routers: [router(R2, T1, [P2])], firewall_groups: [group("g1", [P1, P2])] } });
    expect(await again.agent.start()).toMatchObject({ failed: [], problems: [] });
    expect(events(host, before)).toEqual([]);
    await again.agent.stop();
  });

  it("with the real l3 plugin on FakeHost: its devices and rules, then FWaaS's jumps on the ports, the flush after the apply", async () => {
    const host = new FakeHost({ variant: "nft" });
    const h = await createFwaasAgent({
      runner: host,
      l3: { plugin: l3NatPlugin, options: { interface_driver: "linuxbridge", metadata_proxy: "external" } },
      initial: { routers: [router(R1, T1, [P1, P2])], firewall_groups: [group("fa0e5c2b-7d1e", [P1])] },
    });
    expect(await h.agent.start()).toMatchObject({ failed: [], problems: [] });
    expect(host.ip.device(ns(R1), "qr-c0ffee00-11")).toMatchObject({ up: true, addresses: expect.arrayContaining(["10.0.0.1/24"]) });
    expect(fwLines(host, R1).filter((l) => l.startsWith("-A neutron-l3-agent-FORWARD"))).toEqual([
      "-A neutron-l3-agent-FORWARD -j neutron-l3-agent-scope",
      "-A neutron-l3-agent-FORWARD -o qr-c0ffee00-11 -j neutron-l3-agent-iv4fa0e5c2b",
      "-A neutron-l3-agent-FORWARD -i qr-c0ffee00-11 -j neutron-l3-agent-ov4fa0e5c2b",
      "-A neutron-l3-agent-FORWARD -o qr-c0ffee00-11 -j neutron-l3-agent-fwaas-defau",
      "-A neutron-l3-agent-FORWARD -i qr-c0ffee00-11 -j neutron-l3-agent-fwaas-defau",
    ]);
    expect(events(host)).toEqual([`restore ${ns(R1)} 4`, `restore ${ns(R1)} 6`, `conntrack ${ns(R1)} -D -f ipv4`, `conntrack ${ns(R1)} -D -f ipv6`]);
    await h.agent.stop();
  });

  it("plan with the real l3 plugin shows the firewall's rules in the router's restore input", async () => {
    const host = new FakeHost({ variant: "nft" });
    const h = await createFwaasAgent({
      runner: host,
      l3: { plugin: l3NatPlugin, options: { interface_driver: "noop", metadata_proxy: "external" } },
      initial: { routers: [router(R1, T1, [P1])], firewalls: [firewall("80daec7b-8167-459e-b915-da02832a248b")] },
    });
    const plans = (await h.agent.plan()).namespaces;
    const input = plans.find((p) => p.namespace === ns(R1))!.families.find((f) => f.family === 4)!.input;
    expect(input).toContain("-A neutron-l3-agent-FORWARD -o qr-+ -j neutron-l3-agent-iv480daec7b");
    expect(input).toContain("-A neutron-l3-agent-iv480daec7b -p icmp -j DROP");
    expect(input).toContain("-A neutron-l3-agent-INPUT -p tcp -m tcp --dport 9697 -j DROP");
    expect(events(host)).toEqual([]);
  });
});
