/**
 * L2RpcSource on the fake host (`FakeHost`: the taps are `host.ip.addDevice`/`removeDevice`, seen
 * through the link monitor) against `NeutronL2Server`, an in-memory neutron-server whose answers
 * and casts have the real server's shapes (built from the recorded payloads; the first test checks
 * that the recorded request gets exactly the recorded reply). The end-to-end test against the real
 * neutron-server and the real kernel is apps/l2-agent/src/neutron.e2e.test.ts.
 */
import type { Problem, StateDocument, StateSink } from "@chainwarden/agent";
import { FakeHost } from "@chainwarden/testing";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { L2RpcSource } from "./l2-rpc-source.js";
import { NeutronL2Server, RECORDED, type ServerPort } from "./neutron-l2-server.test-support.js";
import { tapName } from "./tap-devices.js";

const NS = "compute";
const HOST = "compute-1";
const RECORDED_PORT = Object.values(RECORDED.securityGroupInfo.reply.devices)[0]!;
const WEB_ID = (RECORDED_PORT.security_groups as string[])[0]!;

/** The agent's side of a state source: every document and problem it was handed. */
class RecordingSink implements StateSink {
  readonly documents: StateDocument[] = [];
  readonly problems: Problem[] = [];
  update(document: StateDocument): void {
    this.documents.push(structuredClone(document));
  }
  problem(problem: Problem): void {
    this.problems.push(problem);
  }
  get last(): L2Document {
    return this.documents.at(-1) as unknown as L2Document;
  }
}

interface L2Document {
  devices: Record<string, Record<string, any>>;
  security_groups: Record<string, Record<string, unknown>[]>;
  sg_member_ips: Record<string, Record<string, [string, string | null][]>>;
  trusted_devices: string[];
}

const sources: L2RpcSource[] = [];
afterEach(async () => {
  for (const s of sources.splice(0)) await s.stop();
});

function uuid(n: number, prefix = "a"): string {
  const hex = n.toString(16).padStart(8, "0");
  return `${prefix.repeat(1)}${hex.slice(1)}-0000-4000-8000-${hex.padStart(12, "0")}`;
}

function setup(options: { server?: NeutronL2Server; host?: FakeHost; firstSyncWaitMs?: number; step?: number } = {}) {
  const server = options.server ?? NeutronL2Server.fromRecording();
  const host = options.host ?? new FakeHost({ namespaces: [NS] });
  const sink = new RecordingSink();
  const source = new L2RpcSource({
    rpc: server,
    host: HOST,
    runner: host,
    namespace: NS,
    timeoutMs: 1000,
    step: options.step ?? 20,
    resyncIntervalMs: 0,
    firstSyncWaitMs: options.firstSyncWaitMs ?? 2000,
    logger: pino({ level: "silent" }),
    retryMs: 5,
  });
  sources.push(source);
  /** Until the taps are listed and nothing is asked any more. */
  const settle = async () => {
    for (let i = 0; i < 3; i++) {
      await source.taps.relist();
      await source.idle();
      await new Promise((r) => setImmediate(r));
    }
  };
  const tap = (...ids: string[]) => host.ip.addDevice(NS, ...ids.map(tapName));
  const untap = (id: string) => host.ip.removeDevice(NS, tapName(id));
  return { server, host, sink, source, settle, tap, untap };
}

/** A port of the recorded network in the recorded group, bound here. */
function vm(n: number, extra: Partial<ServerPort> = {}): ServerPort {
  return { id: uuid(n), name: `vm-${n}`, mac: `fa:16:3e:00:${(n >> 8).toString(16).padStart(2, "0")}:${(n & 255).toString(16).padStart(2, "0")}`, ips: [`10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`], groups: [WEB_ID], host: HOST, ...extra };
}

describe("NeutronL2Server (the stand-in)", () => {
  it("answers the recorded request with exactly the recorded reply", () => {
    const server = NeutronL2Server.fromRecording();
    const { request, reply } = RECORDED.securityGroupInfo;
    expect(server.securityGroupInfo(request.args.devices)).toEqual(reply);
  });
});

describe("L2RpcSource", () => {
  it("delivers nothing before the first answer, then the server's answer for the taps as it came, trusted_devices added", async () => {
    const t = setup();
    const { request, reply } = RECORDED.securityGroupInfo;
    t.host.ip.addDevice(NS, ...request.args.devices, "brq0123456789a", "vxlan-1916");
    const release = t.server.hold();
    const started = t.source.start(t.sink);
    await new Promise((r) => setTimeout(r, 20));
    expect(t.sink.documents).toEqual([]);
    release();
    await started;
    expect(t.sink.documents).toEqual([{ ...reply, trusted_devices: [] }]);
    expect(t.server.callsOf("security_group_info_for_devices")).toEqual([{ method: "security_group_info_for_devices", devices: request.args.devices }]);
    // Every tap was answered: no need to ask which ports are bound here.
    expect(t.server.callsOf("get_ports_by_vnic_type_and_host")).toEqual([]);
  });

  it("says for /readyz whether neutron-server answered for the taps and whether the broker is connected", async () => {
    const t = setup();
    let connected: boolean | undefined = false;
    t.server.connected = () => connected;
    expect(t.source.health()).toEqual({ delivered: false, connected: false, detail: "not connected to the message broker; no answer from neutron-server for the devices on this host yet" });
    connected = true;
    t.server.ports.set(uuid(1), vm(1));
    t.tap(uuid(1));
    await t.source.start(t.sink);
    await t.settle();
    expect(t.source.health()).toEqual({ delivered: true, connected: true });
    connected = false;
    expect(t.source.health()).toEqual({ delivered: true, connected: false, detail: "not connected to the message broker" });
  });

  it("a start while the server is away changes nothing and says so; the answer comes once it is back", async () => {
    const t = setup({ firstSyncWaitMs: 50 });
    t.server.ports.set(uuid(1), vm(1));
    t.tap(uuid(1));
    t.server.trouble = () => NeutronL2Server.timeout();
    await t.source.start(t.sink);
    expect(t.sink.documents).toEqual([]);
    expect(t.sink.problems.map((p) => p.message)).toEqual([expect.stringContaining("no answer from neutron-server yet")]);
    t.server.trouble = undefined;
    await expect.poll(() => t.sink.documents.length, { timeout: 2000 }).toBe(1);
    expect(Object.keys(t.sink.last.devices)).toEqual([uuid(1)]);
  });

  it("a tap that appears is asked about alone; a tap that goes takes its port out at once, without asking", async () => {
    const t = setup();
    for (const n of [1, 2, 3]) t.server.ports.set(uuid(n), vm(n));
    t.tap(uuid(1), uuid(2));
    await t.source.start(t.sink);
    const before = t.server.calls.length;
    t.tap(uuid(3));
    await t.settle();
    expect(t.server.calls.slice(before)).toEqual([{ method: "security_group_info_for_devices", devices: [tapName(uuid(3))] }]);
    expect(Object.keys(t.sink.last.devices).sort()).toEqual([uuid(1), uuid(2), uuid(3)]);

    const asked = t.server.calls.length;
    t.untap(uuid(1));
    await t.settle();
    expect(t.server.calls.length).toBe(asked);
    expect(Object.keys(t.sink.last.devices).sort()).toEqual([uuid(2), uuid(3)]);
    // The group stays while a port uses it; its members are the server's (the port is still a member there).
    expect(Object.keys(t.sink.last.security_groups)).toEqual([WEB_ID]);

    t.untap(uuid(2));
    t.untap(uuid(3));
    await t.settle();
    expect(t.sink.last).toEqual({ devices: {}, security_groups: {}, sg_member_ips: {}, trusted_devices: [] });
  });

  it("a tap removed while its answer is on the way stays gone", async () => {
    const t = setup();
    for (const n of [1, 2]) t.server.ports.set(uuid(n), vm(n));
    t.tap(uuid(1));
    await t.source.start(t.sink);
    const release = t.server.hold();
    t.tap(uuid(2));
    await t.source.taps.relist();
    await expect.poll(() => t.server.calls.length).toBe(2);
    t.untap(uuid(2));
    await t.source.taps.relist();
    release();
    await t.settle();
    expect(Object.keys(t.sink.last.devices)).toEqual([uuid(1)]);
  });

  it("a rule created on a group of 50 ports costs one call; every port of the group gets the new rules", async () => {
    const t = setup();
    const ids = Array.from({ length: 50 }, (_, i) => uuid(i + 1));
    ids.forEach((id, i) => t.server.ports.set(id, vm(i + 1)));
    t.tap(...ids);
    await t.source.start(t.sink);
    expect(t.server.callsOf("security_group_info_for_devices")).toHaveLength(3); // 20 + 20 + 10
    const from = t.server.calls.length;
    const rule = { direction: "ingress", ethertype: "IPv4", protocol: "tcp", port_range_min: 80, port_range_max: 80, source_ip_prefix: "0.0.0.0/0" };
    await t.server.createRule(WEB_ID, rule);
    await t.settle();
    expect(t.server.calls.slice(from)).toEqual([{ method: "security_group_info_for_devices", devices: [tapName(ids[0]!)] }]);
    expect(t.sink.last.security_groups[WEB_ID]).toContainEqual({ stateful: true, ...rule });
    expect(Object.keys(t.sink.last.devices)).toHaveLength(50);

    await t.server.deleteRule(WEB_ID, (r) => r.port_range_min === 80);
    await t.settle();
    expect(t.sink.last.security_groups[WEB_ID]).not.toContainEqual(expect.objectContaining({ port_range_min: 80 }));
    expect(t.sink.last.security_groups[WEB_ID]).toEqual(t.server.securityGroupInfo([tapName(ids[0]!)]).security_groups[WEB_ID]);
  });

  it("a member joining a remote group costs one call per ethertype the group is named with; the other ethertype's list stays", async () => {
    const t = setup();
    const REMOTE = "5e2c1a4e-0000-4000-8000-00000000beef";
    const V6 = "5e2c1a4e-0000-4000-8000-000000000066";
    // Two groups name REMOTE: one for IPv4, one for IPv6. Each has 30 ports here.
    t.server.groups.set(REMOTE, []);
    t.server.groups.set(V6, [{ direction: "ingress", ethertype: "IPv6", remote_group_id: REMOTE }]);
    t.server.groups.get(WEB_ID)!.push({ direction: "ingress", ethertype: "IPv4", protocol: "tcp", port_range_min: 5000, port_range_max: 5000, remote_group_id: REMOTE });
    const ids: string[] = [];
    for (let n = 1; n <= 60; n++) {
      const id = uuid(n);
      ids.push(id);
      t.server.ports.set(id, vm(n, n > 30 ? { groups: [V6], ips: [`10.0.0.${n}`, `2001:db8::${n.toString(16)}`] } : {}));
    }
    t.server.ports.set(uuid(900, "b"), { id: uuid(900, "b"), mac: "fa:16:3e:09:00:00", ips: ["10.9.0.1", "2001:db8::900"], groups: [REMOTE], host: "compute-2" });
    t.tap(...ids);
    await t.source.start(t.sink);
    expect(t.sink.last.sg_member_ips[REMOTE]).toEqual({ IPv4: [["10.9.0.1", null]], IPv6: [["2001:db8::900", null]] });

    const from = t.server.calls.length;
    await t.server.createPort({ id: uuid(901, "b"), mac: "fa:16:3e:09:00:01", ips: ["10.9.0.2", "2001:db8::901"], groups: [REMOTE], host: "compute-2" });
    await t.settle();
    const calls = t.server.calls.slice(from);
    expect(calls).toHaveLength(1);
    expect(calls[0]!.devices).toHaveLength(2); // one port naming REMOTE with IPv4, one with IPv6
    expect(t.sink.last.sg_member_ips[REMOTE]).toEqual({ IPv4: [["10.9.0.1", null], ["10.9.0.2", null]], IPv6: [["2001:db8::900", null], ["2001:db8::901", null]] });

    // A port_update of an IPv4-only port brings REMOTE's IPv4 members alone: IPv6's stay as they were.
    await t.server.portUpdate(ids[0]!);
    await t.settle();
    expect(t.sink.last.sg_member_ips[REMOTE]!.IPv6).toEqual([["2001:db8::900", null], ["2001:db8::901", null]]);

    // A member update of a group no port here names as remote group asks nothing.
    const quiet = t.server.calls.length;
    await t.server.memberUpdated(["0f0f0f0f-0000-4000-8000-000000000000"]);
    await t.settle();
    expect(t.server.calls.length).toBe(quiet);
  });

  it("a rule naming an address group keeps the group's addresses in sg_member_ips, where the server sends them", async () => {
    const t = setup();
    const AG = "a9a9a9a9-0000-4000-8000-000000000000";
    t.server.addressGroups.set(AG, ["192.0.2.0/24", "2001:db8:77::/64"]);
    t.server.groups.get(WEB_ID)!.push({ direction: "ingress", ethertype: "IPv4", protocol: "tcp", port_range_min: 8080, port_range_max: 8080, remote_address_group_id: AG });
    t.server.ports.set(uuid(1), vm(1));
    t.tap(uuid(1));
    await t.source.start(t.sink);
    expect(t.sink.last.sg_member_ips[AG]).toEqual({ IPv4: [["192.0.2.0/24", null]] });
    expect(t.sink.last.devices[uuid(1)]!.security_group_remote_address_groups).toEqual([AG]);
    // Once no rule names it, it goes.
    await t.server.deleteRule(WEB_ID, (r) => r.remote_address_group_id === AG);
    await t.settle();
    expect(t.sink.last.sg_member_ips[AG]).toBeUndefined();
  });

  it("a cast that arrives while the first answer is on its way is asked for after it", async () => {
    const t = setup();
    for (const n of [1, 2]) t.server.ports.set(uuid(n), vm(n));
    t.tap(uuid(1), uuid(2));
    const release = t.server.hold();
    const started = t.source.start(t.sink);
    await expect.poll(() => t.server.calls.length).toBe(1);
    // The server answers as it was; the rule it gets meanwhile is cast while the answer is on its way.
    const before = t.server.securityGroupInfo([tapName(uuid(1)), tapName(uuid(2))]);
    const rule = { direction: "ingress", ethertype: "IPv4", protocol: "tcp", port_range_min: 443, port_range_max: 443 };
    t.server.groups.get(WEB_ID)!.push(rule);
    await t.server.cast({ topic: "q-agent-notifier-security_group-update", fanout: true }, "security_groups_rule_updated", { security_groups: [WEB_ID] });
    t.server.groups.get(WEB_ID)!.pop();
    release();
    await started;
    expect(t.sink.documents[0]!.security_groups).toEqual(before.security_groups);
    t.server.groups.get(WEB_ID)!.push(rule);
    await t.settle();
    expect(t.sink.last.security_groups[WEB_ID]).toContainEqual({ stateful: true, ...rule });
  });

  it("a group cast is asked again with another port when the one asked left the group meanwhile", async () => {
    const t = setup();
    const OTHER = "0e0e0e0e-0000-4000-8000-000000000000";
    t.server.groups.set(OTHER, [{ direction: "egress", ethertype: "IPv4" }]);
    for (const n of [1, 2]) t.server.ports.set(uuid(n), vm(n));
    t.tap(uuid(1), uuid(2));
    await t.source.start(t.sink);
    // The server moved port 1 out of WEB (its port_update is still to come) and WEB got a rule.
    t.server.ports.get(uuid(1))!.groups = [OTHER];
    const from = t.server.calls.length;
    await t.server.createRule(WEB_ID, { direction: "ingress", ethertype: "IPv4", protocol: "udp", port_range_min: 53, port_range_max: 53 });
    await t.settle();
    expect(t.server.calls.slice(from).map((c) => c.devices)).toEqual([[tapName(uuid(1))], [tapName(uuid(2))]]);
    expect(t.sink.last.security_groups[WEB_ID]).toContainEqual(expect.objectContaining({ protocol: "udp", port_range_min: 53 }));
    expect(t.sink.last.devices[uuid(1)]!.security_groups).toEqual([OTHER]);
  });

  it("port_update asks for that port; the casts of one API change go in one call; a port_update of a port elsewhere asks nothing", async () => {
    const t = setup();
    const OTHER = "0e0e0e0e-0000-4000-8000-000000000000";
    t.server.groups.set(OTHER, [{ direction: "egress", ethertype: "IPv4" }]);
    for (const n of [1, 2]) t.server.ports.set(uuid(n), vm(n));
    t.server.ports.set(uuid(3), vm(3, { host: "compute-2" }));
    t.tap(uuid(1), uuid(2));
    await t.source.start(t.sink);
    const from = t.server.calls.length;
    await t.server.portUpdate(uuid(1));
    await t.settle();
    expect(t.server.calls.slice(from)).toEqual([{ method: "security_group_info_for_devices", devices: [tapName(uuid(1))] }]);

    // Port 2 leaves WEB for OTHER: the server casts the member update (WEB, OTHER) and port 2's
    // port_update at once. Port 1 stands for WEB's members (OTHER is nobody's remote group here);
    // both are asked in one call.
    const before = t.server.calls.length;
    await t.server.setPortGroups(uuid(2), [OTHER]);
    await t.settle();
    expect(t.server.calls.slice(before)).toEqual([{ method: "security_group_info_for_devices", devices: [tapName(uuid(2)), tapName(uuid(1))] }]);
    expect(t.sink.last.devices[uuid(2)]!.security_groups).toEqual([OTHER]);
    expect(Object.keys(t.sink.last.security_groups).sort()).toEqual([OTHER, WEB_ID].sort());
    // WEB's members, fresh: port 2 left (port 3 on compute-2 and the recorded port are still members).
    expect(t.sink.last.sg_member_ips[WEB_ID]!.IPv4!.map(([ip]) => ip).sort()).toEqual(["10.0.0.1", "10.0.0.3", "10.0.0.5"]);

    const quiet = t.server.calls.length;
    await t.server.portUpdate(uuid(3));
    await t.settle();
    expect(t.server.calls.length).toBe(quiet);
  });

  it("a port deleted on the server keeps its rules while its tap exists (as in Neutron's agent) and leaves with the tap", async () => {
    const t = setup();
    for (const n of [1, 2]) t.server.ports.set(uuid(n), vm(n));
    t.tap(uuid(1), uuid(2));
    await t.source.start(t.sink);
    const kept = t.sink.last.devices[uuid(2)];
    await t.server.deletePort(uuid(2));
    await t.settle();
    expect(t.sink.last.devices[uuid(2)]).toEqual(kept);
    expect(t.sink.last.trusted_devices).toEqual([]);
    // A full answer that leaves it out keeps it too (no get_ports_by_vnic_type_and_host: it is known).
    t.server.reconnect();
    await t.settle();
    expect(t.sink.last.devices[uuid(2)]).toEqual(kept);
    expect(t.server.callsOf("get_ports_by_vnic_type_and_host")).toEqual([]);
    t.untap(uuid(2));
    await t.settle();
    expect(Object.keys(t.sink.last.devices)).toEqual([uuid(1)]);
  });

  it("trusted: a tap of a network port bound here; not a tap that is no port, nor a network port bound elsewhere", async () => {
    const t = setup();
    t.server.ports.set(uuid(1), vm(1));
    const dhcp = uuid(2, "d");
    const router = uuid(3, "e");
    t.server.ports.set(dhcp, { id: dhcp, mac: "fa:16:3e:dd:00:02", ips: ["10.0.0.2"], groups: [], deviceOwner: "network:dhcp", host: HOST });
    t.server.ports.set(router, { id: router, mac: "fa:16:3e:ee:00:03", ips: ["10.0.0.1"], groups: [], deviceOwner: "network:router_interface", host: "network-1" });
    t.tap(uuid(1), dhcp, router);
    t.host.ip.addDevice(NS, "tap01234567-89");
    await t.source.start(t.sink);
    expect(t.sink.last.trusted_devices).toEqual([tapName(dhcp)]);
    expect(Object.keys(t.sink.last.devices)).toEqual([uuid(1)]);
    expect(t.server.callsOf("get_ports_by_vnic_type_and_host")).toHaveLength(1);
    t.untap(dhcp);
    await t.settle();
    expect(t.sink.last.trusted_devices).toEqual([]);
  });

  it("a failed fetch changes nothing and is retried; a reconnect asks for every tap again", async () => {
    const t = setup();
    for (const n of [1, 2]) t.server.ports.set(uuid(n), vm(n));
    t.tap(uuid(1));
    await t.source.start(t.sink);
    const documents = t.sink.documents.length;
    let failures = 0;
    t.server.trouble = () => (failures++ < 3 ? NeutronL2Server.timeout() : undefined);
    t.tap(uuid(2));
    await expect.poll(() => Object.keys(t.sink.last.devices).length, { timeout: 2000 }).toBe(2);
    expect(failures).toBe(4);
    expect(t.sink.documents.length).toBe(documents + 1);
    t.server.trouble = undefined;

    const from = t.server.calls.length;
    t.server.reconnect();
    await t.settle();
    expect(t.server.calls.slice(from)).toEqual([{ method: "security_group_info_for_devices", devices: [tapName(uuid(1)), tapName(uuid(2))] }]);
  });

  it("stop during a slow answer ends at once", async () => {
    const t = setup();
    t.server.ports.set(uuid(1), vm(1));
    t.tap(uuid(1));
    await t.source.start(t.sink);
    t.server.hold();
    t.server.reconnect();
    const started = Date.now();
    await t.source.stop();
    expect(Date.now() - started).toBeLessThan(500);
  });

  it("2,000 taps: the full answer in 100 calls of 20; a rule, a member, a port change and a tap removal cost one call or none", async () => {
    const t = setup();
    const REMOTE = "5e2c1a4e-0000-4000-8000-00000000beef";
    t.server.groups.set(REMOTE, []);
    t.server.groups.get(WEB_ID)!.push({ direction: "ingress", ethertype: "IPv4", protocol: "tcp", port_range_min: 5000, port_range_max: 5000, remote_group_id: REMOTE });
    const ids = Array.from({ length: 2000 }, (_, i) => uuid(i + 1));
    ids.forEach((id, i) => t.server.ports.set(id, vm(i + 1)));
    t.tap(...ids);
    let started = performance.now();
    await t.source.start(t.sink);
    const fullMs = performance.now() - started;
    const full = t.server.callsOf("security_group_info_for_devices");
    expect(full).toHaveLength(100);
    expect(full.every((c) => c.devices!.length === 20)).toBe(true);
    expect(Object.keys(t.sink.last.devices)).toHaveLength(2000);

    const counts: Record<string, number> = {};
    const measure = async (what: string, change: () => Promise<void> | void) => {
      const from = t.server.calls.length;
      started = performance.now();
      await change();
      await t.settle();
      counts[what] = t.server.calls.length - from;
      return performance.now() - started;
    };
    const ruleMs = await measure("rule", () => t.server.createRule(WEB_ID, { direction: "ingress", ethertype: "IPv4", protocol: "tcp", port_range_min: 443, port_range_max: 443 }));
    const memberMs = await measure("member", () => t.server.createPort({ id: uuid(5000, "b"), mac: "fa:16:3e:50:00:00", ips: ["10.50.0.1"], groups: [REMOTE], host: "compute-2" }));
    const portMs = await measure("port", () => t.server.portUpdate(ids[1999]!));
    const tapMs = await measure("tap", () => t.untap(ids[0]!));
    expect(counts).toEqual({ rule: 1, member: 1, port: 1, tap: 0 });
    expect(t.sink.last.sg_member_ips[REMOTE]).toEqual({ IPv4: [["10.50.0.1", null]] });
    expect(Object.keys(t.sink.last.devices)).toHaveLength(1999);
    console.log(`2,000 taps on the in-memory server: full ${fullMs.toFixed(0)} ms, rule ${ruleMs.toFixed(0)} ms, member ${memberMs.toFixed(0)} ms, port ${portMs.toFixed(0)} ms, tap removed ${tapMs.toFixed(0)} ms`);
  });
});
