/**
 * What bad input gets in the l2 plugin, on the fake host (decisions; the traffic is in
 * `bad-input.datapath.kernel.test.ts`): held ports keep the kernel's copy or are filtered closed,
 * incomplete input removes nothing, a port whose ipset cannot be made is held alone, `plan` says
 * what it would do besides iptables.
 */
import { Agent, MemoryStateSource, baseConfigSchema, createLogger, createPlugin, FRAMEWORK_VERSION, stateSourceExtensionPoint, type StateDocument } from "@chainwarden/agent";
import { normalizeSave } from "@chainwarden/core";
import { duplicateLogKeys, FakeHost } from "@chainwarden/testing";
import { afterEach, describe, expect, it } from "vitest";
import { iptablesFlavor } from "./firewall-flavor.js";
import { l2SecgroupPlugin } from "./l2-secgroup-plugin.js";
import { parseL2State } from "./l2-state.js";
import { stateDocument, WEB_SG, type PortSpec } from "./test-support/fixtures.js";

const NS = "l2-bridge";
const REMOTE = "7a7a0000-0000-4000-8000-00000000a002";
const a = { id: "aaaa", device: "tapaaaa", ip: "10.0.0.1" } satisfies PortSpec;
const b = { id: "bbbb", device: "tapbbbb", ip: "10.0.0.2", mac: "fa:16:3e:00:00:02" } satisfies PortSpec;
const c = { id: "cccc", device: "tapcccc", ip: "10.0.0.3", mac: "fa:16:3e:00:00:03" } satisfies PortSpec;

const agents: Agent[] = [];
afterEach(async () => {
  for (const x of agents.splice(0)) await x.stop();
});

/** A fresh agent on the host (a restart is a fresh agent on the same host). */
/** `settings`: the plugin's config keys (`enable_ipset`, `wait_for_devices`, ...), top level in the agent's config. */
async function agentOn(host: FakeHost, document: StateDocument, settings: Record<string, unknown> = {}, logger = createLogger({ level: "silent", name: "l2-agent" })) {
  const source = new MemoryStateSource(document);
  const agent = await Agent.create({
    name: "l2-agent",
    version: "0.0.1",
    config: { ...baseConfigSchema.parse({ wrap_name: "neutron-linuxbri", resync_interval: 0, coalesce_ms: 0, retry_initial_delay_ms: 20 }), wait_for_devices: false, ...settings },
    plugins: [
      { plugin: l2SecgroupPlugin },
      { plugin: createPlugin({ name: "memory-state", version: "0.0.0", framework: `^${FRAMEWORK_VERSION}`, register: (env) => env.addExtension(stateSourceExtensionPoint, source) }) },
    ],
    runner: host,
    logger,
    defaultNamespace: NS,
  });
  agents.push(agent);
  return { agent, source };
}

const dump = (host: FakeHost, family: 4 | 6 = 4) => normalizeSave(host.iptables.dump({ namespace: NS, family }));
const linesOf = (host: FakeHost, device: string) => dump(host).split("\n").filter((l) => l.includes(device.slice(3)));

describe("parseL2State: stand-ins and limits", () => {
  const parse = (doc: StateDocument, limits?: { maxRulesPerPort: number; maxMembersPerGroup: number }) =>
    parseL2State(doc, "s.yaml", { flavor: iptablesFlavor, enableIpset: false, ...(limits ? { limits } : {}) });

  it("an invalid port has a stand-in with its tap; an unusable device falls back to the one Neutron names from the port id", () => {
    const doc = stateDocument({ ports: [a, b, c] });
    const devices = doc["devices"] as Record<string, Record<string, unknown>>;
    devices["bbbb"]!["mac_address"] = "not a mac";
    devices["cccc"]!["device"] = "tap cccc; rm";
    const r = parse(doc);
    expect([...r.resources.keys()]).toEqual(["aaaa"]);
    expect([...r.held!.values()]).toEqual([
      { type: "held_port", id: "bbbb", device: "tapbbbb", fingerprint: "held\u0000tapbbbb" },
      { type: "held_port", id: "cccc", device: "tapcccc", fingerprint: "held\u0000tapcccc" },
    ]);
  });

  it("names a misspelled key of a port or a rule the server would never send; keys it does send pass", () => {
    const doc = stateDocument({ ports: [a, b], groups: { [WEB_SG]: [{ direction: "ingress", ethertype: "IPv4", protocol: "tcp", port_range_min: 22, port_rnage_max: 22 }] } });
    const devices = doc["devices"] as Record<string, Record<string, unknown>>;
    devices["aaaa"]!["mac_adress"] = devices["aaaa"]!["mac_address"];
    delete devices["aaaa"]!["mac_address"];
    devices["bbbb"]!["binding:host_id"] = "compute-1";
    devices["bbbb"]!["security_group_source_groups"] = [];
    const r = parse(doc);
    expect(r.problems.map((p) => [p.resource, p.path, p.message])).toEqual([
      ["aaaa", "devices.aaaa.mac_adress", 'unknown key "mac_adress": did you mean mac_address? (mac_address is missing)'],
      ["aaaa", "devices.aaaa.mac_address", "mac_address is required"],
      ["bbbb", `security_groups.${WEB_SG}.0.port_rnage_max`, expect.stringContaining('unknown key "port_rnage_max": did you mean port_range_max?')],
    ]);
  });

  it("a port on another valid port's device gets no stand-in (that port filters the tap)", () => {
    const r = parse(stateDocument({ ports: [a, { ...b, device: "tapaaaa" }] }));
    expect(r.problems.map((p) => p.resource)).toEqual(["bbbb"]);
    expect(r.held!.size).toBe(0);
  });

  it("enforces members per group and rules per port, naming the port", () => {
    const groups = { [WEB_SG]: [{ direction: "ingress", ethertype: "IPv4", remote_group_id: REMOTE }] };
    const members = { [REMOTE]: { IPv4: Array.from({ length: 5 }, (_, i) => [`10.1.0.${i + 1}`, "m"]) } };
    const doc = stateDocument({ ports: [a], groups, members });
    const tooMany = parse(doc, { maxRulesPerPort: 1000, maxMembersPerGroup: 4 });
    expect(tooMany.problems[0]).toMatchObject({ resource: "aaaa", path: `sg_member_ips.${REMOTE}.IPv4`, message: expect.stringContaining("5 members, more than the limit of 4 per group") });
    expect(tooMany.held!.has("aaaa")).toBe(true);
    const tooLong = parse(doc, { maxRulesPerPort: 4, maxMembersPerGroup: 100 });
    expect(tooLong.problems[0]).toMatchObject({ resource: "aaaa", message: expect.stringContaining("make 5 rules (remote groups expanded), more than the limit of 4") });
  });
});

describe("l2SecgroupPlugin: what bad input gets", () => {
  it("a restart with a port turned invalid keeps exactly its kernel rules; one never valid is closed", async () => {
    const host = new FakeHost({ namespaces: [NS] });
    const first = await agentOn(host, stateDocument({ ports: [a, b] }));
    await first.agent.applyOnce();
    const bLines = linesOf(host, b.device);
    expect(bLines.length).toBeGreaterThan(5);

    const doc = stateDocument({ ports: [a, b, c] });
    (doc["devices"] as Record<string, Record<string, unknown>>)["bbbb"]!["fixed_ips"] = ["10.0.0.300"];
    (doc["devices"] as Record<string, Record<string, unknown>>)["cccc"]!["mac_address"] = "zz";
    const restarted = await agentOn(host, doc);
    // plan, before: b is kept, c (nothing in the kernel) would be closed.
    const plan = await restarted.agent.plan();
    expect(plan.problems.map((p) => p.resource).sort()).toEqual(["bbbb", "cccc"]);
    expect(plan.namespaces[0]!.actions).toEqual([
      { verb: "keep", object: "port", name: "bbbb", resource: "port/bbbb", detail: "kept as the kernel has it" },
      { verb: "keep", object: "port", name: "cccc", resource: "port/cccc", detail: "filtered closed: the kernel had nothing of it, so its traffic is dropped" },
    ]);
    const report = await restarted.agent.applyOnce();
    expect(report.problems.map((p) => p.resource).sort()).toEqual(["bbbb", "cccc"]);
    expect(linesOf(host, b.device)).toEqual(bLines);
    expect(dump(host)).toContain('-A neutron-linuxbri-icccc -m comment --comment "Send unmatched traffic to the fallback chain." -j neutron-linuxbri-sg-fallback');

    // status: held ports are not in sync, and say so.
    const status = await restarted.agent.status();
    expect(status.namespaces[0]).toMatchObject({ namespace: NS, inSync: false, pendingLines: 0, held: ["port/bbbb", "port/cccc"] });
  });

  it("a restart keeps a held port's ipsets (its rules name them) while the others' unused sets go", async () => {
    const host = new FakeHost({ namespaces: [NS] });
    const groups = { [WEB_SG]: [{ direction: "ingress", ethertype: "IPv4", remote_group_id: REMOTE }] };
    const members = { [REMOTE]: { IPv4: [["10.1.0.1", "m"]] } };
    await (await agentOn(host, stateDocument({ ports: [a], groups, members }), { enable_ipset: true })).agent.applyOnce();
    const before = host.ipset.dump(NS);
    expect(before).toContain("NIPv47a7a0000");
    const doc = stateDocument({ ports: [a], groups, members });
    (doc["devices"] as Record<string, Record<string, unknown>>)["aaaa"]!["mac_address"] = "bad";
    await (await agentOn(host, doc, { enable_ipset: true })).agent.applyOnce();
    expect(host.ipset.dump(NS)).toBe(before);
    expect(dump(host)).toContain("--match-set NIPv47a7a0000");
  });

  it("incomplete input (trusted_devices broken) removes nothing an earlier run made; a complete state then does", async () => {
    const host = new FakeHost({ namespaces: [NS] });
    await (await agentOn(host, stateDocument({ ports: [a, b], trusted: ["tapdhcp"] }))).agent.applyOnce();
    const before = dump(host);
    const broken = { ...stateDocument({ ports: [a] }), trusted_devices: "tapdhcp" };
    const report = await (await agentOn(host, broken)).agent.applyOnce();
    expect(report.problems.map((p) => p.path)).toEqual(["trusted_devices"]);
    for (const line of before.split("\n").filter((l) => l.startsWith("-A"))) expect(dump(host)).toContain(line);
    await (await agentOn(host, stateDocument({ ports: [a] }))).agent.applyOnce();
    expect(dump(host)).not.toContain("tapbbbb");
    expect(dump(host)).not.toContain("tapdhcp");
  });

  it("an unknown top-level key removes nothing and names the key it resembles", async () => {
    const host = new FakeHost({ namespaces: [NS] });
    await (await agentOn(host, stateDocument({ ports: [a, b] }))).agent.applyOnce();
    const { devices, ...rest } = stateDocument({ ports: [a] });
    const report = await (await agentOn(host, { ...rest, device: devices })).agent.applyOnce();
    expect(report.problems[0]!.message).toMatch(/^unknown key "device"; did you mean devices\?/);
    expect(dump(host)).toContain("tapbbbb");
  });

  it("a port whose ipset cannot be made is held alone (closed); the rest lands; it applies once the set can be made", async () => {
    const host = new FakeHost({ namespaces: [NS] });
    const groups = { [WEB_SG]: [{ direction: "egress", ethertype: "IPv4" }], g2: [{ direction: "ingress", ethertype: "IPv4", remote_group_id: REMOTE }] };
    const members = { [REMOTE]: { IPv4: [["10.1.0.1", "m"]] } };
    const doc = stateDocument({ ports: [a, { ...b, groups: ["g2"] }], groups, members });
    // Someone made a set under our name with the other family: it cannot be filled for IPv4.
    const setName = `NIPv4${REMOTE}`.slice(0, 29);
    await host.exec("ipset", ["create", setName, "hash:net", "family", "inet6"], { namespace: NS });
    const { agent } = await agentOn(host, doc, { enable_ipset: true });
    const report = await agent.start();
    expect(report.failed).toEqual([]);
    expect(report.failedResources.map((f) => f.resource)).toEqual(["port/bbbb"]);
    expect(report.failedResources[0]!.error.message).toContain(setName);
    expect(dump(host)).toContain(":neutron-linuxbri-iaaaa -");
    expect(dump(host)).toContain('-A neutron-linuxbri-ibbbb -m comment --comment "Send unmatched traffic to the fallback chain." -j neutron-linuxbri-sg-fallback');
    // After the apply the set, named as ours and used by no rule, went; the port's retry (alone,
    // with backoff) makes it as it should be and applies the port.
    const deadline = Date.now() + 5_000;
    while (!dump(host).includes("--match-set NIPv47a7a0000") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(dump(host)).toContain("--match-set NIPv47a7a0000");
  });

  it("logs each key once per line (held ports, waiting ports, ipsets, removals)", async () => {
    const lines: string[] = [];
    const logger = createLogger({ level: "debug", name: "l2-agent", destination: { write: (l: string) => void lines.push(l) } });
    const host = new FakeHost({ namespaces: [NS] });
    host.ip.addDevice(NS, a.device);
    const groups = { [WEB_SG]: [{ direction: "ingress", ethertype: "IPv4", remote_group_id: REMOTE }] };
    const doc = stateDocument({ ports: [a, b, c], groups, members: { [REMOTE]: { IPv4: [["10.1.0.1", "m"]] } } });
    (doc["devices"] as Record<string, Record<string, unknown>>)["cccc"]!["mac_address"] = "bad";
    const { agent, source } = await agentOn(host, doc, { enable_ipset: true, wait_for_devices: true }, logger);
    await agent.start();
    source.push(stateDocument({ ports: [] }));
    await agent.idle();
    expect(lines.length).toBeGreaterThan(5);
    for (const line of lines) expect(duplicateLogKeys(line), line).toEqual([]);
  });

  it("plan names ports waiting for their tap", async () => {
    const host = new FakeHost({ namespaces: [NS] });
    host.ip.addDevice(NS, a.device);
    const { agent } = await agentOn(host, { ...stateDocument({ ports: [a, b] }) }, { wait_for_devices: true });
    const plan = await agent.plan();
    expect(plan.namespaces[0]!.actions).toEqual([
      { verb: "wait", object: "port", name: "bbbb", resource: "port/bbbb", detail: "device tapbbbb does not exist yet; filtered once it appears" },
    ]);
  });
});
