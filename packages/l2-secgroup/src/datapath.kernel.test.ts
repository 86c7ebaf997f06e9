/**
 * The rules proved with real traffic. Three "VMs" (network namespaces) hang off a Linux bridge in a
 * bridge namespace with bridge-nf-call-iptables on; the firewall programs the bridge namespace through
 * the real runner (nf_tables), exactly as the l2 agent does with `--netns`. Traffic flows only between
 * the test's own namespaces, and teardown deletes them all, also after a failure.
 *
 *   vm1 10.0.0.1  group TARGET: tcp 22 from anyone, ICMP from 10.0.0.2 only, udp 68 from anyone,
 *                 tcp 5000 from members of CLIENTS; all egress
 *   vm2 10.0.0.2  group CLIENTS: all egress, no ingress rule at all
 *   vm3 10.0.0.3  group CLIENTS
 */
import { ExecaRunner, IptablesManager, normalizeSave } from "@chainwarden/core";
import { isRoot } from "@chainwarden/testing";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { iptablesFlavor } from "./firewall-flavor.js";
import { FirewallNamespace } from "./firewall-namespace.js";
import { parseL2State } from "./l2-state.js";
import { createLab, eventually, exitCode, pings, sleep, tcpConnects, type Lab, type LabVm } from "./test-support/lab.js";

const NETWORK = "dp0a0a0a-0000-4000-8000-000000000001";
const BRIDGE = `brq${NETWORK.slice(0, 11)}`;
const TARGET = "dp-target";
const CLIENTS = "dp-clients";
const VMS = [
  { id: "dp000001", tap: "tapdp000001-01", ip: "10.0.0.1", mac: "fa:16:3e:d1:00:01", group: TARGET },
  { id: "dp000002", tap: "tapdp000002-02", ip: "10.0.0.2", mac: "fa:16:3e:d1:00:02", group: CLIENTS },
  { id: "dp000003", tap: "tapdp000003-03", ip: "10.0.0.3", mac: "fa:16:3e:d1:00:03", group: CLIENTS },
] as const;

const GROUPS = {
  [TARGET]: [
    { direction: "egress", ethertype: "IPv4" },
    { direction: "ingress", ethertype: "IPv4", protocol: "tcp", port_range_min: 22, port_range_max: 22 },
    { direction: "ingress", ethertype: "IPv4", protocol: "icmp", remote_ip_prefix: "10.0.0.2/32" },
    { direction: "ingress", ethertype: "IPv4", protocol: "udp", port_range_min: 68, port_range_max: 68 },
    { direction: "ingress", ethertype: "IPv4", protocol: "tcp", port_range_min: 5000, port_range_max: 5000, remote_group_id: CLIENTS },
  ],
  [CLIENTS]: [
    { direction: "egress", ethertype: "IPv4" },
    { direction: "egress", ethertype: "IPv6" },
  ],
};

function document(options: { clients?: string[]; without?: string[]; extra?: Record<string, unknown>[] } = {}) {
  const devices: Record<string, unknown> = {};
  for (const vm of VMS) {
    if (options.without?.includes(vm.id)) continue;
    devices[vm.id] = {
      id: vm.id,
      device: vm.tap,
      mac_address: vm.mac,
      fixed_ips: [vm.ip],
      network_id: NETWORK,
      device_owner: "compute:nova",
      port_security_enabled: true,
      security_groups: [vm.group],
      allowed_address_pairs: [],
    };
  }
  for (const p of options.extra ?? []) devices[String(p["id"])] = p;
  const clients = options.clients ?? ["10.0.0.2"];
  return { devices, security_groups: GROUPS, sg_member_ips: { [CLIENTS]: { IPv4: clients.map((ip) => [ip, "fa:16:3e:00:00:00"]) } } };
}

describe.skipIf(!isRoot()).each([false, true])("datapath with real traffic (enable_ipset %s)", (enableIpset) => {
  let lab: Lab;
  let vm1: LabVm;
  let vm2: LabVm;
  let vm3: LabVm;
  let manager: IptablesManager;
  let fw: FirewallNamespace;
  const runner = new ExecaRunner({ backend: "nft" });

  const apply = async (doc: Record<string, unknown>) => {
    const parsed = parseL2State(doc, "datapath", { flavor: iptablesFlavor, enableIpset });
    expect(parsed.problems).toEqual([]);
    const { value } = await manager.deferApply(() => fw.reconcile(manager, parsed.resources.values()));
    const after = await fw.afterApply();
    return { ...value, ...after };
  };
  const save = async () => normalizeSave(await runner.save({ namespace: lab.bridgeNs.name, family: 4 }));

  beforeAll(async () => {
    lab = await createLab(BRIDGE, VMS);
    [vm1, vm2, vm3] = lab.vms as [LabVm, LabVm, LabVm];
    manager = new IptablesManager({ runner, namespace: lab.bridgeNs.name, wrapName: iptablesFlavor.defaultWrapName, stateless: true, strict: true });
    fw = new FirewallNamespace({ runner, namespace: lab.bridgeNs.name, flavor: iptablesFlavor, enableIpset });
    // Servers in vm1 (and one in vm2 that nobody may reach).
    lab.background(vm1, ["nc", "-l", "-k", "22"]);
    lab.background(vm2, ["nc", "-l", "-k", "22"]);
    lab.background(vm1, ["nc", "-l", "-k", "23"]);
  });
  afterAll(async () => {
    await lab?.delete();
  });
  beforeEach(async () => {
    await apply(document());
  });

  it("allowed ingress passes (tcp 22, icmp from the allowed prefix); everything else is dropped", async () => {
    expect(await tcpConnects(vm2, vm1.ip, 22)).toBe(true);
    expect(await tcpConnects(vm3, vm1.ip, 22)).toBe(true);
    expect(await pings(vm2, vm1.ip)).toBe(true);
    // ICMP only from 10.0.0.2; another port has no rule.
    expect(await pings(vm3, vm1.ip)).toBe(false);
    expect(await tcpConnects(vm2, vm1.ip, 23)).toBe(false);
  });

  it("return traffic of an outbound connection passes; new connections to a port without ingress rules do not", async () => {
    // vm2 has no ingress rule: the SYN-ACK comes back only as an established flow.
    const session = lab.background(vm2, ["nc", "-w", "3", vm1.ip, "22"]);
    const server = lab.background(vm1, ["nc", "-l", "2222"]);
    await sleep(100);
    expect(await tcpConnects(vm2, vm1.ip, 22)).toBe(true);
    session.kill();
    server.kill();
    expect(await tcpConnects(vm1, vm2.ip, 22)).toBe(false);
    expect(await pings(vm1, vm2.ip)).toBe(false);
  });

  it("a VM that changes its MAC or IP is cut off, and recovers when it changes back", async () => {
    expect(await tcpConnects(vm2, vm1.ip, 22)).toBe(true);
    await vm2.netns.exec(["ip", "link", "set", "eth0", "address", "fa:16:3e:99:99:99"]);
    expect(await tcpConnects(vm2, vm1.ip, 22)).toBe(false);
    await vm2.netns.exec(["ip", "link", "set", "eth0", "address", vm2.mac]);
    expect(await tcpConnects(vm2, vm1.ip, 22)).toBe(true);

    await vm2.netns.exec(["ip", "addr", "del", `${vm2.ip}/24`, "dev", "eth0"]);
    await vm2.netns.exec(["ip", "addr", "add", "10.0.0.50/24", "dev", "eth0"]);
    try {
      expect(await tcpConnects(vm2, vm1.ip, 22)).toBe(false);
    } finally {
      await vm2.netns.exec(["ip", "addr", "del", "10.0.0.50/24", "dev", "eth0"]);
      await vm2.netns.exec(["ip", "addr", "add", `${vm2.ip}/24`, "dev", "eth0"]);
    }
    expect(await tcpConnects(vm2, vm1.ip, 22)).toBe(true);
  });

  it("a VM answering as a DHCP server (udp 67 → 68) is blocked; the same datagram from another port passes", async () => {
    const receiver = lab.background(vm1, ["nc", "-u", "-l", "68"]);
    await sleep(200);
    await exitCode(vm3, ["nc", "-u", "-w", "1", "-p", "67", vm1.ip, "68"], "OFFER-from-rogue-server\n");
    await exitCode(vm3, ["nc", "-u", "-w", "1", "-p", "1067", vm1.ip, "68"], "ordinary-datagram\n");
    expect(await eventually(() => receiver.output().includes("ordinary-datagram"))).toBe(true);
    expect(receiver.output()).not.toContain("OFFER");
    receiver.kill();
  });

  it("a member added to a remote group opens access; removing it closes an established connection", async () => {
    const server = lab.background(vm1, ["nc", "-l", "-k", "5000"]);
    await sleep(200);
    expect(await tcpConnects(vm3, vm1.ip, 5000)).toBe(false);
    await apply(document({ clients: ["10.0.0.2", "10.0.0.3"] }));
    expect(await tcpConnects(vm3, vm1.ip, 5000)).toBe(true);

    const client = lab.background(vm3, ["nc", vm1.ip, "5000"]);
    client.write("first-line\n");
    expect(await eventually(() => server.output().includes("first-line"))).toBe(true);

    const removed = await apply(document({ clients: ["10.0.0.2"] }));
    // The conntrack entries between vm1 and the removed member went with it (both directions, vm1's zone).
    expect(removed.conntrack.map((a) => a.join(" "))).toEqual(expect.arrayContaining(["-D -f ipv4 -d 10.0.0.1 -w 4097 -s 10.0.0.3", "-D -f ipv4 -s 10.0.0.1 -w 4097 -d 10.0.0.3"]));
    // Two deletions in the zone: both ran, as Neutron runs them.
    expect(removed.conntrackRun).toHaveLength(2);
    client.write("second-line\n");
    await sleep(1500);
    expect(server.output()).not.toContain("second-line");
    expect(await tcpConnects(vm3, vm1.ip, 5000)).toBe(false);
    // The remaining member still gets in.
    expect(await tcpConnects(vm2, vm1.ip, 5000)).toBe(true);
    client.kill();
    server.kill();
  });

  it("two members removed at once: their zone is listed once and only the deletion that matches a connection runs", async () => {
    const server = lab.background(vm1, ["nc", "-l", "-k", "5000"]);
    await sleep(200);
    await apply(document({ clients: ["10.0.0.2", "10.0.0.3"] }));
    // Connections earlier tests left in the zone (the lab's own bridge namespace) go first, so that
    // vm3's is the only one.
    await runner.exec("conntrack", ["-D", "-w", "4097"], { namespace: lab.bridgeNs.name, reject: false });
    const client = lab.background(vm3, ["nc", vm1.ip, "5000"]);
    client.write("first-line\n");
    expect(await eventually(() => server.output().includes("first-line"))).toBe(true);

    const removed = await apply(document({ clients: [] }));
    // Four of Neutron's deletions in vm1's zone (both directions for each member); the real
    // `conntrack -L -w 4097` showed vm3's connection to vm1 only.
    expect(removed.conntrack.filter((a) => a.includes("4097"))).toHaveLength(4);
    expect(removed.conntrackRun.map((a) => a.join(" "))).toEqual(["-D -f ipv4 -d 10.0.0.1 -w 4097 -s 10.0.0.3"]);
    client.write("second-line\n");
    await sleep(1500);
    expect(server.output()).not.toContain("second-line");
    client.kill();
    server.kill();
  });

  it("removing a port removes its chains and rules and nothing else", async () => {
    const before = await save();
    await apply(document({ without: ["dp000003"] }));
    const after = await save();
    const mentions = (l: string) => l.includes("dp000003") || l.includes("tapdp000003") || l.includes("p000003-03") || l.includes("10.0.0.3/");
    expect(after.split("\n").filter(mentions)).toEqual([]);
    expect(after).toBe(before.split("\n").filter((l) => !mentions(l)).join("\n"));
    // vm1's filter still applies to vm3's traffic (its ingress chain matches on vm1's tap).
    expect(await pings(vm3, vm1.ip)).toBe(false);
  });

  it("a port is filtered once its tap exists", async () => {
    const late = { id: "dp000004", tap: "tapdp000004-04", ip: "10.0.0.4", mac: "fa:16:3e:d1:00:04" };
    const port = { id: late.id, device: late.tap, mac_address: late.mac, fixed_ips: [late.ip], network_id: NETWORK, security_groups: [CLIENTS] };
    const waiting = await apply(document({ extra: [port] }));
    expect(waiting.waitingForDevice).toEqual(["dp000004"]);
    expect(await save()).not.toContain("tapdp000004-04");
    const vm4 = await lab.addVm(late);
    const filtered = await apply(document({ extra: [port] }));
    expect(filtered.waitingForDevice).toEqual([]);
    expect(await save()).toContain("-A neutron-linuxbri-sg-chain -m physdev --physdev-out tapdp000004-04");
    // vm4 has no ingress rules now: vm2 cannot open a connection to it.
    lab.background(vm4, ["nc", "-l", "-k", "22"]);
    await sleep(100);
    expect(await tcpConnects(vm2, vm4.ip, 22)).toBe(false);
    expect(await tcpConnects(vm4, vm1.ip, 22)).toBe(true);
  });
});
