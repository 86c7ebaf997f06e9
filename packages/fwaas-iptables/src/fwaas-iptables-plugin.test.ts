/**
 * The plugin inside a real agent (the framework's Agent, reconcile loop and observers) on the
 * honest fake iptables, with an l3 plugin that calls the router extensions as `@chainwarden/l3-nat`
 * does (`stubL3Plugin`: the fake cannot run devices). The real l3 plugin is used for plans here
 * and for real traffic in the datapath test.
 */
import { l3NatPlugin } from "@chainwarden/l3-nat";
import { describe, expect, it } from "vitest";
import { createFwaasAgent, FwaasFakeRunner, routerDict } from "./test-support/fwaas-agent-harness.js";

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

function fwLines(runner: FwaasFakeRunner, routerId: string, family: 4 | 6 = 4): string[] {
  return runner
    .dump({ namespace: ns(routerId), family })
    .split("\n")
    .filter((l) => /fwaas-defau|-(i|o)v[46]|accepted|dropped|rejected|-j neutron-l3-agent-scope/.test(l) && l.startsWith("-A"));
}

describe("fwaasIptablesPlugin in an agent", () => {
  it("programs v2 groups on the routers that host their ports, after the l3 rules, and flushes conntrack after the apply", async () => {
    const runner = new FwaasFakeRunner({ variant: "nft" });
    const h = await createFwaasAgent({
      runner,
      initial: { routers: [router(R1, T1, [P1, P2]), router(R2, T1, [P3])], firewall_groups: [group("fa0e5c2b-7d1e", [P1])] },
    });
    const report = await h.agent.start();
    expect(report).toMatchObject({ failed: [], problems: [] });
    expect(fwLines(runner, R1).filter((l) => l.startsWith("-A neutron-l3-agent-FORWARD"))).toEqual([
      "-A neutron-l3-agent-FORWARD -j neutron-l3-agent-scope",
      "-A neutron-l3-agent-FORWARD -o qr-c0ffee00-11 -j neutron-l3-agent-iv4fa0e5c2b",
      "-A neutron-l3-agent-FORWARD -i qr-c0ffee00-11 -j neutron-l3-agent-ov4fa0e5c2b",
      "-A neutron-l3-agent-FORWARD -o qr-c0ffee00-11 -j neutron-l3-agent-fwaas-defau",
      "-A neutron-l3-agent-FORWARD -i qr-c0ffee00-11 -j neutron-l3-agent-fwaas-defau",
    ]);
    expect(fwLines(runner, R2)).toEqual(["-A neutron-l3-agent-FORWARD -j neutron-l3-agent-scope"]);
    const r1Events = runner.events.filter((e) => e.includes(ns(R1)));
    expect(r1Events.slice(-2)).toEqual([`conntrack ${ns(R1)} -D -f ipv4`, `conntrack ${ns(R1)} -D -f ipv6`]);
    expect(r1Events.findIndex((e) => e.startsWith("conntrack"))).toBeGreaterThan(r1Events.findIndex((e) => e.startsWith("restore")));
    expect(runner.events.some((e) => e.startsWith(`conntrack ${ns(R2)}`))).toBe(false);
    await h.agent.stop();
  });

  it("a firewall change reaches only its routers; a router change re-binds ports; a delete leaves the others", async () => {
    const runner = new FwaasFakeRunner({ variant: "nft" });
    const routers = [router(R1, T1, [P1, P2]), router(R2, T1, [P3])];
    const h = await createFwaasAgent({ runner, initial: { routers, firewall_groups: [group("g1", [P1]), group("g2", [P3])] } });
    await h.agent.start();
    runner.conntrackListing = {
      ipv4: "tcp      6 431999 ESTABLISHED src=10.0.0.5 dst=192.0.2.9 sport=40000 dport=22 src=192.0.2.9 dst=10.0.0.5 sport=22 dport=40000 [ASSURED] mark=0 use=1\n",
    };
    const before = runner.restoreCalls.length;
    const denySsh = { id: "deny-ssh", protocol: "tcp", destination_port: "22", action: "deny" };
    await h.push({ routers, firewall_groups: [group("g1", [P1], [denySsh, denyIcmp, allowTcp]), group("g2", [P3])] });
    const sent = runner.restoreCalls.slice(before);
    expect(sent.map((c) => c.target.namespace)).toEqual([ns(R1)]);
    expect(sent[0]!.input).toContain("-I neutron-l3-agent-iv4g1 3 -p tcp -m tcp --dport 22 -j neutron-l3-agent-dropped");
    expect(runner.events.slice(-2)).toEqual([
      `conntrack ${ns(R1)} -L -f ipv4`,
      `conntrack ${ns(R1)} -D -f ipv4 -p tcp -s 10.0.0.5 -d 192.0.2.9 --sport 40000 --dport 22`,
    ]);

    // A port moves to the other router, and the group lists it: its jumps move with it.
    await h.push({ routers: [router(R1, T1, [P1]), router(R2, T1, [P3, P2])], firewall_groups: [group("g1", [P1, P2]), group("g2", [P3])] });
    expect(fwLines(runner, R2).filter((l) => l.includes("qr-c0ffee00-22"))).toHaveLength(4);
    expect(fwLines(runner, R1).filter((l) => l.includes("qr-c0ffee00-22"))).toHaveLength(0);

    await h.push({ routers, firewall_groups: [group("g2", [P3])] });
    expect(fwLines(runner, R1)).toEqual(["-A neutron-l3-agent-FORWARD -j neutron-l3-agent-scope"]);
    expect(fwLines(runner, R2).filter((l) => l.includes("g2"))).toHaveLength(10);
    await h.agent.stop();
  });

  it("a v1 firewall covers its tenant's routers (or the routers it names), as in the seed", async () => {
    const runner = new FwaasFakeRunner({ variant: "legacy" });
    const routers = [router(R1, T1, [P1]), router(R2, T1, [P2]), router(R3, "tenant-2", [P3])];
    const h = await createFwaasAgent({ runner, initial: { routers, firewalls: [firewall("80daec7b-8167-459e-b915-da02832a248b")] } });
    await h.agent.start();
    const seedJumps = [
      "-A neutron-l3-agent-FORWARD -j neutron-l3-agent-scope",
      "-A neutron-l3-agent-FORWARD -o qr-+ -j neutron-l3-agent-iv480daec7b",
      "-A neutron-l3-agent-FORWARD -i qr-+ -j neutron-l3-agent-ov480daec7b",
      "-A neutron-l3-agent-FORWARD -o qr-+ -j neutron-l3-agent-fwaas-defau",
      "-A neutron-l3-agent-FORWARD -i qr-+ -j neutron-l3-agent-fwaas-defau",
    ];
    expect(fwLines(runner, R1).filter((l) => l.includes("FORWARD"))).toEqual(seedJumps);
    expect(fwLines(runner, R2).filter((l) => l.includes("FORWARD"))).toEqual(seedJumps);
    expect(fwLines(runner, R3)).toEqual(["-A neutron-l3-agent-FORWARD -j neutron-l3-agent-scope"]);
    await h.push({ routers, firewalls: [firewall("80daec7b-8167-459e-b915-da02832a248b", [denyIcmp], { router_ids: [R3] })] });
    expect(fwLines(runner, R1)).toEqual(["-A neutron-l3-agent-FORWARD -j neutron-l3-agent-scope"]);
    expect(fwLines(runner, R3).filter((l) => l.includes("FORWARD"))).toEqual(seedJumps);
    await h.agent.stop();
  });

  it("a bad firewall is reported naming it and its rule; the others apply; a bad edit keeps the last good version", async () => {
    const runner = new FwaasFakeRunner({ variant: "nft" });
    const routers = [router(R1, T1, [P1, P2])];
    const good = group("g-good", [P2]);
    const h = await createFwaasAgent({ runner, initial: { routers, firewall_groups: [group("g-bad", [P1], [{ id: "r9", protocol: "tcp", destination_port: "90:80", action: "allow" }]), good] } });
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
    expect(fwLines(runner, R1).filter((l) => l.includes("g-good")).length).toBeGreaterThan(0);
    expect(fwLines(runner, R1).filter((l) => l.includes("g-bad"))).toEqual([]);

    // Valid, then broken: the valid version stays in force.
    await h.push({ routers, firewall_groups: [group("g-bad", [P1]), good] });
    const applied = fwLines(runner, R1).filter((l) => l.includes("g-bad"));
    expect(applied.length).toBeGreaterThan(0);
    await h.push({ routers, firewall_groups: [group("g-bad", [P1], [{ id: "x", protocol: "sctpx", action: "allow" }]), good] });
    expect(fwLines(runner, R1).filter((l) => l.includes("g-bad"))).toEqual(applied);
    await h.agent.stop();
  });

  it("conflicts Neutron's server refuses are resolved and reported: a port in two groups, two v1 firewalls", async () => {
    const runner = new FwaasFakeRunner({ variant: "nft" });
    const h = await createFwaasAgent({
      runner,
      initial: { routers: [router(R1, T1, [P1])], firewall_groups: [group("g1", [P1]), group("g2", [P1])], firewalls: [firewall("fw-a"), firewall("fw-b")] },
    });
    const report = await h.agent.start();
    expect(report.problems.map((p) => [p.resource, p.message])).toEqual([
      ["fw-b", `firewall fw-b: router ${R1} already has firewall fw-a (one v1 firewall per router); not applied there`],
      ["g2", `firewall group g2: port ${P1} already has firewall group g1 (a port has at most one); not applied to it`],
    ]);
    expect(fwLines(runner, R1).filter((l) => l.includes("g2") || l.includes("fw-b"))).toEqual([]);
    await h.agent.stop();
  });

  it("deleting a router is not an error; restarting the agent re-adopts the rules and flushes nothing", async () => {
    const runner = new FwaasFakeRunner({ variant: "nft" });
    const state = { routers: [router(R1, T1, [P1]), router(R2, T1, [P2])], firewall_groups: [group("g1", [P1, P2])] };
    const h = await createFwaasAgent({ runner, initial: state });
    await h.agent.start();
    await h.push({ routers: [router(R2, T1, [P2])], firewall_groups: [group("g1", [P1, P2])] });
    expect(runner.listNamespaces()).toEqual([ns(R2)]);
    await h.agent.stop();

    const events = runner.events.length;
    const again = await createFwaasAgent({ runner, initial: { routers: [router(R2, T1, [P2])], firewall_groups: [group("g1", [P1, P2])] } });
    expect(await again.agent.start()).toMatchObject({ failed: [], problems: [] });
    expect(runner.events.slice(events).filter((e) => e.startsWith("conntrack"))).toEqual([]);
    expect(runner.events.slice(events).filter((e) => e.startsWith("restore"))).toEqual([]);
    await again.agent.stop();
  });

  it("plan with the real l3 plugin shows the firewall's rules in the router's restore input", async () => {
    const runner = new FwaasFakeRunner({ variant: "nft" });
    const h = await createFwaasAgent({
      runner,
      l3: { plugin: l3NatPlugin, options: { interface_driver: "noop", metadata_proxy: "external" } },
      initial: { routers: [router(R1, T1, [P1])], firewalls: [firewall("80daec7b-8167-459e-b915-da02832a248b")] },
    });
    const plans = (await h.agent.plan()).namespaces;
    const input = plans.find((p) => p.namespace === ns(R1))!.families.find((f) => f.family === 4)!.input;
    expect(input).toContain("-A neutron-l3-agent-FORWARD -o qr-+ -j neutron-l3-agent-iv480daec7b");
    expect(input).toContain("-A neutron-l3-agent-iv480daec7b -p icmp -j DROP");
    expect(input).toContain("-A neutron-l3-agent-INPUT -p tcp -m tcp --dport 9697 -j DROP");
    expect(runner.events.filter((e) => e.startsWith("conntrack") || e.startsWith("restore"))).toEqual([]);
  });
});
