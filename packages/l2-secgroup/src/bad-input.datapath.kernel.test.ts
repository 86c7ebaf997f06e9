/**
 * What bad input gets, proved with real traffic through the agent (the l2 plugin in a real agent,
 * the real runner, `apply --once`-style passes; each pass is a new agent, as a restart is). Three
 * "VMs" hang off a bridge in a bridge namespace (see `test-support/lab.ts`); the test's namespaces
 * are its own and are deleted in teardown, also after a failure.
 *
 *   vm1 10.0.0.1  TARGET: tcp 22 from anyone, all egress
 *   vm2 10.0.0.2  CLIENTS: all egress, no ingress
 *   vm3 10.0.0.3  CLIENTS
 *
 * Without a firewall, everything on the bridge passes (the FORWARD policy is ACCEPT).
 */
import { Agent, MemoryStateSource, baseConfigSchema, createLogger, createPlugin, FRAMEWORK_VERSION, stateSourceExtensionPoint, type StateDocument } from "@chainwarden/agent";
import { ExecaRunner, type Backend } from "@chainwarden/core";
import { isRoot } from "@chainwarden/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { l2SecgroupPlugin } from "./l2-secgroup-plugin.js";
import { createLab, tcpConnects, type Lab, type LabVm } from "./test-support/lab.js";

const NETWORK = "bi0a0a0a-0000-4000-8000-000000000001";
const BRIDGE = `brq${NETWORK.slice(0, 11)}`;
const TARGET = "bi-target";
const CLIENTS = "bi-clients";
const VMS = [
  { id: "bi000001", tap: "tapbi000001-01", ip: "10.0.0.1", mac: "fa:16:3e:b1:00:01", group: TARGET },
  { id: "bi000002", tap: "tapbi000002-02", ip: "10.0.0.2", mac: "fa:16:3e:b1:00:02", group: CLIENTS },
  { id: "bi000003", tap: "tapbi000003-03", ip: "10.0.0.3", mac: "fa:16:3e:b1:00:03", group: CLIENTS },
] as const;

const GROUPS = {
  [TARGET]: [
    { direction: "egress", ethertype: "IPv4" },
    { direction: "ingress", ethertype: "IPv4", protocol: "tcp", port_range_min: 22, port_range_max: 22 },
  ],
  [CLIENTS]: [{ direction: "egress", ethertype: "IPv4" }],
};

function port(vm: (typeof VMS)[number], change: Record<string, unknown> = {}) {
  return {
    id: vm.id,
    device: vm.tap,
    mac_address: vm.mac,
    fixed_ips: [vm.ip],
    network_id: NETWORK,
    device_owner: "compute:nova",
    security_groups: [vm.group],
    ...change,
  };
}

function document(ports: Record<string, unknown>[], groups: Record<string, unknown> = GROUPS): StateDocument {
  return { devices: Object.fromEntries(ports.map((p) => [p["id"] as string, p])), security_groups: groups, sg_member_ips: {} };
}

describe.skipIf(!isRoot()).each(["nft", "legacy"] as Backend[])("bad input with real traffic (%s)", (backend) => {
  let lab: Lab;
  let vm1: LabVm;
  let vm2: LabVm;
  let vm3: LabVm;
  const runner = new ExecaRunner({ backend });

  /** One pass of a fresh agent over the document: what `l2-agent apply --once` does. */
  async function applyOnce(doc: StateDocument, enableIpset = false) {
    const source = new MemoryStateSource(doc);
    const agent = await Agent.create({
      name: "l2-agent",
      version: "0.0.1",
      config: { ...baseConfigSchema.parse({ wrap_name: "neutron-linuxbri", resync_interval: 0, coalesce_ms: 0 }), wait_for_devices: false, enable_ipset: enableIpset },
      plugins: [
        { plugin: l2SecgroupPlugin },
        { plugin: createPlugin({ name: "memory-state", version: "0.0.0", framework: `^${FRAMEWORK_VERSION}`, register: (env) => env.addExtension(stateSourceExtensionPoint, source) }) },
      ],
      runner,
      logger: createLogger({ level: "silent", name: "l2-agent" }),
      defaultNamespace: lab.bridgeNs.name,
    });
    return agent.applyOnce();
  }
  const chains = async () => (await runner.save({ namespace: lab.bridgeNs.name, family: 4 })).split("\n").filter((l) => l.startsWith("-A neutron-linuxbri-"));

  beforeAll(async () => {
    lab = await createLab(BRIDGE, VMS);
    [vm1, vm2, vm3] = lab.vms as [LabVm, LabVm, LabVm];
    for (const vm of lab.vms) {
      lab.background(vm, ["nc", "-l", "-k", "22"]);
      lab.background(vm, ["nc", "-l", "-k", "23"]);
    }
  });
  afterAll(async () => {
    await lab?.delete();
  });

  it("a port never valid is filtered closed; a port that turns invalid keeps its rules across a restart; a complete empty state removes them", async () => {
    // No firewall yet: the bridge passes everything.
    expect(await tcpConnects(vm3, vm2.ip, 23)).toBe(true);

    // vm2's MAC is invalid from the start: its port is filtered closed, the others apply.
    const first = await applyOnce(document([port(VMS[0]), port(VMS[1], { mac_address: "not-a-mac" }), port(VMS[2])]));
    expect(first.problems.map((p) => p.resource)).toEqual([VMS[1].id]);
    expect(first.failed).toEqual([]);
    expect(await tcpConnects(vm3, vm1.ip, 22)).toBe(true); // valid ports filter as their groups say
    expect(await tcpConnects(vm3, vm1.ip, 23)).toBe(false);
    expect(await tcpConnects(vm3, vm2.ip, 23)).toBe(false); // closed: not left to the FORWARD policy
    expect(await tcpConnects(vm2, vm1.ip, 22)).toBe(false); // and nothing leaves it either

    // Valid again: vm2 filters as CLIENTS (egress allowed, no ingress).
    await applyOnce(document([port(VMS[0]), port(VMS[1]), port(VMS[2])]));
    expect(await tcpConnects(vm2, vm1.ip, 22)).toBe(true);
    expect(await tcpConnects(vm3, vm2.ip, 23)).toBe(false);
    const good = await chains();

    // A new agent (a restart) reads vm1 with a rule it refuses: vm1 keeps exactly what it had.
    const badRule = { [TARGET]: [...GROUPS[TARGET], { direction: "ingress", ethertype: "IPv4", protocol: "tcp", port_range_min: 90, port_range_max: 80 }] };
    const restarted = await applyOnce(document([port(VMS[0]), port(VMS[1]), port(VMS[2])], { ...GROUPS, ...badRule }));
    expect(restarted.problems.map((p) => p.resource)).toEqual([VMS[0].id]);
    expect(await chains()).toEqual(good);
    expect(await tcpConnects(vm3, vm1.ip, 22)).toBe(true);
    expect(await tcpConnects(vm3, vm1.ip, 23)).toBe(false);

    // A state that has no ports at all, read completely: now the rules go (what `run` did too).
    const empty = await applyOnce(document([]));
    expect(empty.problems).toEqual([]);
    expect((await chains()).filter((l) => /-A neutron-linuxbri-[io]/.test(l))).toEqual([]);
    expect(await tcpConnects(vm3, vm1.ip, 23)).toBe(true);
  });

  it("a port whose ipset the kernel refuses is held closed; the other ports of the namespace are filtered all the same", async () => {
    await applyOnce(document([]));
    // vm2 alone names TARGET's members through an ipset; a set of another type already has its name.
    const groups = { ...GROUPS, "bi-extra": [{ direction: "ingress", ethertype: "IPv4", protocol: "tcp", port_range_min: 23, port_range_max: 23, remote_group_id: TARGET }] };
    const set = `NIPv4${TARGET}`;
    await lab.bridgeNs.exec(["ipset", "create", set, "hash:ip", "family", "inet"]);
    try {
      const doc = { ...document([port(VMS[0]), port(VMS[1], { security_groups: [CLIENTS, "bi-extra"] }), port(VMS[2])], groups), sg_member_ips: { [TARGET]: { IPv4: [[VMS[0].ip, VMS[0].mac]] } } };
      const report = await applyOnce(doc, true);
      expect(report.failed).toEqual([]);
      expect(report.failedResources.map((f) => f.resource)).toEqual([`port/${VMS[1].id}`]);
      expect(await tcpConnects(vm3, vm1.ip, 22)).toBe(true);
      expect(await tcpConnects(vm3, vm1.ip, 23)).toBe(false); // vm1 is filtered, not left open
      expect(await tcpConnects(vm1, vm2.ip, 23)).toBe(false); // vm2 is closed
    } finally {
      await lab.bridgeNs.exec(["ipset", "destroy", set], { reject: false });
    }
  });
});
