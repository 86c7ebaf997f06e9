/**
 * What bad input gets in FWaaS, on FakeHost (the traffic is in the datapath test): a
 * firewall whose input turns invalid keeps every line it has in the kernel (its default DROP
 * included), also across a restart; one never valid closes its interfaces; incomplete input keeps
 * what the kernel has. Each agent here is a fresh one on the same host, as a restart is.
 */
import { FakeHost } from "@chainwarden/testing";
import { describe, expect, it } from "vitest";
import { createFwaasAgent, routerDict } from "./test-support/fwaas-agent-harness.js";

const T1 = "tenant-1";
const R1 = "1e4c5a7b-2f0d-4c0e-9a47-3b1f6e2d8c90";
const P1 = "c0ffee00-1111-4222-8333-444455556666";
const P2 = "c0ffee00-2222-4222-8333-444455556666";
const FW = "80daec7b-8167-459e-b915-da02832a248b";
const GROUP = "fa0e5c2b-7d1e-4e4e-8f8f-000000000001";

const router = (id: string, ports: string[]) => routerDict(id, T1, ports);

const allowWeb = { id: "allow-web", protocol: "tcp", ip_version: 4, destination_port: "80", action: "allow" };
const badRange = { id: "bad-range", protocol: "tcp", ip_version: 4, destination_port: "90:80", action: "allow" };
const firewall = (rules: unknown[]) => ({ id: FW, tenant_id: T1, admin_state_up: true, firewall_policy: { firewall_rules: rules } });
const group = (ingress: unknown[]) => ({ id: GROUP, tenant_id: T1, ports: [P1], ingress_rules: ingress, egress_rules: [] });
const ns = `qrouter-${R1}`;

const fwLines = (host: FakeHost) =>
  host.iptables
    .dump({ namespace: ns, family: 4 })
    .split("\n")
    .filter((l) => l.startsWith("-A") && /fwaas-defau|-[io]v4|accepted|dropped|rejected/.test(l));

async function applyOnce(host: FakeHost, initial: Record<string, unknown>) {
  const h = await createFwaasAgent({ runner: host, initial });
  return h.agent.applyOnce();
}

describe("fwaasIptablesPlugin: what bad input gets", () => {
  it("a restart with one bad rule keeps every line of the firewall, its default DROP included", async () => {
    const host = new FakeHost({ variant: "nft" });
    await applyOnce(host, { routers: [router(R1, [P1])], firewalls: [firewall([allowWeb])] });
    const before = fwLines(host);
    expect(before).toContain("-A neutron-l3-agent-fwaas-defau -j DROP");
    expect(before).toContain("-A neutron-l3-agent-iv480daec7b -p tcp -m tcp --dport 80 -j ACCEPT");

    const report = await applyOnce(host, { routers: [router(R1, [P1])], firewalls: [firewall([allowWeb, badRange])] });
    expect(report.problems.map((p) => p.resource)).toEqual([`${FW}@${R1}`]);
    expect(fwLines(host)).toEqual(before);
  });

  it("a firewall never valid closes the interfaces it covers: default-policy jumps, none of its own rules", async () => {
    const host = new FakeHost({ variant: "nft" });
    const report = await applyOnce(host, { routers: [router(R1, [P1])], firewalls: [firewall([badRange])] });
    expect(report.problems).toHaveLength(1);
    expect(fwLines(host)).toEqual([
      "-A neutron-l3-agent-FORWARD -o qr-+ -j neutron-l3-agent-fwaas-defau",
      "-A neutron-l3-agent-FORWARD -i qr-+ -j neutron-l3-agent-fwaas-defau",
      "-A neutron-l3-agent-fwaas-defau -j DROP",
    ]);
  });

  it("a v2 group turned invalid keeps its chains on its ports; a later valid version replaces them", async () => {
    const host = new FakeHost({ variant: "nft" });
    await applyOnce(host, { routers: [router(R1, [P1, P2])], firewall_groups: [group([allowWeb])] });
    const before = fwLines(host);
    expect(before).toContain("-A neutron-l3-agent-FORWARD -o qr-c0ffee00-11 -j neutron-l3-agent-iv4fa0e5c2b");
    await applyOnce(host, { routers: [router(R1, [P1, P2])], firewall_groups: [group([badRange])] });
    expect(fwLines(host)).toEqual(before);
    await applyOnce(host, { routers: [router(R1, [P1, P2])], firewall_groups: [group([])] });
    expect(fwLines(host)).not.toContain("-A neutron-l3-agent-iv4fa0e5c2b -p tcp -m tcp --dport 80 -j accepted");
    expect(fwLines(host)).toContain("-A neutron-l3-agent-FORWARD -o qr-c0ffee00-11 -j neutron-l3-agent-fwaas-defau");
  });

  it("a misspelled key of a firewall or a rule is named; the keys a server sends pass", async () => {
    const host = new FakeHost({ variant: "nft" });
    const typo = { ...allowWeb, destination_prot: "80" } as Record<string, unknown>;
    delete typo["destination_port"];
    const fw = { ...firewall([typo]), status: "ACTIVE", firewall_policy_id: "p1", description: "" };
    const report = await applyOnce(host, { routers: [router(R1, [P1])], firewalls: [fw] });
    expect(report.problems.map((p) => p.message)).toEqual([`firewall ${FW}: rule allow-web: destination_prot: unknown key "destination_prot": did you mean destination_port? (destination_port is missing)`]);
  });

  it("incomplete input (firewall_groups is not a list) keeps the kernel's firewalls", async () => {
    const host = new FakeHost({ variant: "nft" });
    await applyOnce(host, { routers: [router(R1, [P1])], firewall_groups: [group([allowWeb])], firewalls: [firewall([allowWeb])] });
    const before = fwLines(host);
    const report = await applyOnce(host, { routers: [router(R1, [P1])], firewall_groups: "oops", firewalls: [firewall([allowWeb])] });
    expect(report.problems.map((p) => p.path)).toEqual(["firewall_groups"]);
    expect(fwLines(host)).toEqual(before);
  });
});
