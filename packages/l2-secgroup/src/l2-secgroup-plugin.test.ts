/**
 * The plugin inside a real agent (tsyringe container, reconcile loop, apply observers) on the fake
 * host: state in, rules out; batching; the device check; dry runs; options and their checks.
 */
import {
  Agent,
  MemoryStateSource,
  baseConfigSchema,
  createLogger,
  createPlugin,
  FRAMEWORK_VERSION,
  PluginError,
  stateSourceExtensionPoint,
  type AgentConfig,
  type AgentPluginEntry,
  type StateDocument,
} from "@chainwarden/agent";
import { normalizeSave } from "@chainwarden/core";
import { FakeHost, referenceDir } from "@chainwarden/testing";
import { afterEach, describe, expect, it } from "vitest";
import { l2SecgroupPlugin } from "./l2-secgroup-plugin.js";
import { stateDocument, WEB_SG, type PortSpec } from "./test-support/fixtures.js";
import { loadScenario, ScenarioState } from "./test-support/scenario.js";

const NS = "l2-bridge";


function sourcePlugin(source: MemoryStateSource) {
  return createPlugin({
    name: "memory-state",
    version: "0.0.0",
    framework: `^${FRAMEWORK_VERSION}`,
    register: (env) => env.addExtension(stateSourceExtensionPoint, source),
  });
}

const agents: Agent[] = [];
afterEach(async () => {
  for (const a of agents.splice(0)) await a.stop();
});

/** `settings`: the plugin's config keys (`firewall_driver`, `enable_ipset`, ...), top level in the agent's config. */
async function agentWith(options: { document: StateDocument; settings?: Record<string, unknown>; pluginOptions?: unknown; config?: AgentConfig; host?: FakeHost }) {
  const host = options.host ?? new FakeHost({ namespaces: [NS] });
  const source = new MemoryStateSource(options.document);
  const plugins: AgentPluginEntry[] = [{ plugin: l2SecgroupPlugin, options: options.pluginOptions ?? {} }, { plugin: sourcePlugin(source) }];
  const agent = await Agent.create({
    name: "l2-agent",
    version: "0.0.1",
    config: { ...(options.config ?? baseConfigSchema.parse({ wrap_name: "neutron-linuxbri", resync_interval: 0, coalesce_ms: 0 })), ...options.settings },
    plugins,
    runner: host,
    logger: createLogger({ level: "silent", name: "l2-agent" }),
    defaultNamespace: NS,
  });
  agents.push(agent);
  const dump = (family: 4 | 6 = 4) => normalizeSave(host.iptables.dump({ namespace: NS, family }));
  return { agent, host, source, dump };
}

const a = { id: "aaaa", device: "tapaaaa", ip: "10.0.0.1" } satisfies PortSpec;
const b = { id: "bbbb", device: "tapbbbb", ip: "10.0.0.2", mac: "fa:16:3e:00:00:02" } satisfies PortSpec;

describe("l2SecgroupPlugin in an agent", () => {
  it("replays the reference scenario through the agent and gets real Neutron's output (ipset included)", async () => {
    const { scenario, expected } = loadScenario(referenceDir(), "l2_seed_default_sg_ipset");
    const state = new ScenarioState(scenario);
    state.apply(scenario.steps[0]!);
    const host = new FakeHost({ namespaces: [NS] });
    host.ip.addDevice(NS, ...state.portDevices);
    const t = await agentWith({ document: state.document(), host });
    await t.agent.start();
    expect(t.dump(4)).toBe(expected[0]!.sections["iptables-save"]);
    expect(t.dump(6)).toBe(expected[0]!.sections["ip6tables-save"]);
    expect(host.ipset.dump(NS)).toBe(expected[0]!.sections["ipset save"]);
  });

  it("a port's rules appear once its tap exists; all changed ports go in one restore per family", async () => {
    const ports = Array.from({ length: 20 }, (_, i) => ({ id: `p${i}`, device: `tapp${String(i).padStart(2, "0")}`, ip: `10.0.0.${i + 10}` }));
    const host = new FakeHost({ namespaces: [NS] });
    host.ip.addDevice(NS, "tapp00");
    const t = await agentWith({ document: stateDocument({ ports }), host });
    const report = await t.agent.start();
    expect(report.problems).toEqual([]);
    expect(t.dump()).toContain("tapp00");
    expect(t.dump()).not.toContain("tapp01");
    // Devices appear; the next pass (any change, or the resync) filters them, in one restore per family.
    host.ip.addDevice(NS, ...ports.slice(1).map((p) => p.device));
    const before = host.iptables.restoreCalls.length;
    t.source.push(stateDocument({ ports, trusted: ["tapdhcp"] }));
    await t.agent.idle();
    expect(host.iptables.restoreCalls.length - before).toBe(2);
    for (const p of ports) expect(t.dump()).toContain(`:neutron-linuxbri-i${p.device.slice(3)} -`);
    // The trusted device has no tap yet: no ACCEPT jump for it.
    expect(t.dump()).not.toContain("tapdhcp");
    // A device that goes away takes the port's rules with it.
    host.ip.removeDevice(NS, "tapp05");
    t.source.push(stateDocument({ ports: ports.filter((p) => p.id !== "p19"), trusted: ["tapdhcp"] }));
    await t.agent.idle();
    expect(t.dump()).not.toContain("tapp05");
    expect(t.dump()).not.toContain("tapp19");
    expect(t.dump()).toContain("tapp18");
  });

  const until = async (what: string, check: () => boolean, timeoutMs = 5_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };

  it("watches for devices: a tap that appears or goes changes the port's rules at once, with no state change and no kernel read", async () => {
    const ports = [{ id: "p1", device: "tapw01", ip: "10.0.0.21" }];
    const host = new FakeHost({ namespaces: [NS] });
    // A poll of a minute: whatever happens within the test is the monitor's doing.
    const t = await agentWith({ document: stateDocument({ ports }), host, settings: { polling_interval: 60 } });
    await t.agent.start();
    expect(t.dump()).not.toContain("tapw01");
    expect(host.ip.monitorCount(NS)).toBe(1);
    const metric = async (name: string) => new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)$`, "m").exec(await t.agent.metrics.metricsText())?.[1];
    expect(await metric(`chainwarden_l2_ports_waiting_for_device\\{namespace="${NS}"\\}`)).toBe("1");
    expect(await metric(`chainwarden_l2_device_monitor_up\\{namespace="${NS}"\\}`)).toBe("1");
    const saves = host.iptables.saveCalls.length;
    host.ip.addDevice(NS, "tapw01");
    await until("the port's rules", () => t.dump().includes(":neutron-linuxbri-iw01 -"));
    expect(await metric(`chainwarden_l2_ports_waiting_for_device\\{namespace="${NS}"\\}`)).toBe("0");
    expect(await metric("chainwarden_l2_device_wakes_total")).toBe("1");
    host.ip.removeDevice(NS, "tapw01");
    await until("the port's rules to go", () => !t.dump().includes("tapw01"));
    // Another device, or one of a port not in the state, wakes nothing.
    const restores = host.iptables.restoreCalls.length;
    const lists = host.ip.deviceLists;
    host.ip.addDevice(NS, "tapother", "brq0000");
    await new Promise((r) => setTimeout(r, 100));
    expect(host.iptables.restoreCalls.length).toBe(restores);
    expect(host.ip.deviceLists).toBe(lists);
    expect(host.iptables.saveCalls.length).toBe(saves);
    await t.agent.stop();
    expect(host.ip.monitorCount(NS)).toBe(0);
    expect(await metric(`chainwarden_l2_device_monitor_up\\{namespace="${NS}"\\}`)).toBe("0");
  });

  it("without a monitor (and without listLinks), the poll finds the tap (every polling_interval)", async () => {
    const ports = [{ id: "p1", device: "tapw02", ip: "10.0.0.22" }];
    // Nor listLinks: the device check reads `ip -o link show`.
    const host = new FakeHost({ namespaces: [NS], ip: { watch: false, listLinks: false } });
    const t = await agentWith({ document: stateDocument({ ports }), host, settings: { polling_interval: 0.2 } });
    await t.agent.start();
    host.ip.addDevice(NS, "tapw02");
    await until("the poll to filter the port", () => t.dump().includes(":neutron-linuxbri-iw02 -"));
  });

  it("no device monitor for apply --once, plan, or wait_for_devices: false", async () => {
    const ports = [{ id: "p1", device: "tapw03", ip: "10.0.0.23" }];
    const once = await agentWith({ document: stateDocument({ ports }) });
    await once.agent.applyOnce();
    await once.agent.plan();
    expect(once.host.ip.deviceLists).toBe(2);
    expect(once.host.ip.monitorStarts).toBe(0);
    const noWait = await agentWith({ document: stateDocument({ ports }), settings: { wait_for_devices: false } });
    await noWait.agent.start();
    expect(noWait.host.ip.monitorCount(NS)).toBe(0);
  });

  it("wait_for_devices: false filters every desired port at once and never lists devices", async () => {
    const t = await agentWith({ document: stateDocument({ ports: [a, b] }), settings: { wait_for_devices: false } });
    await t.agent.start();
    expect(t.dump()).toContain(":neutron-linuxbri-iaaaa -");
    expect(t.dump()).toContain(":neutron-linuxbri-ibbbb -");
    expect(t.host.commandsIn(NS, "ip")).toEqual([]);
    expect(t.host.ip.deviceLists).toBe(0);
  });

  it("a cold start with many ports streams both families' restores and ends as without streams (ipsets first)", async () => {
    const many: PortSpec[] = Array.from({ length: 80 }, (_, i) => ({ id: `port-${i}`, device: `tap${i.toString(16).padStart(8, "0")}-00`, ip: `10.0.${i >> 6}.${(i & 63) + 10}` }));
    const groups = { [WEB_SG]: [{ direction: "ingress", ethertype: "IPv4", remote_group_id: WEB_SG }, { direction: "egress", ethertype: "IPv4" }] };
    const document = stateDocument({ ports: many, groups, members: { [WEB_SG]: { IPv4: [["10.0.0.10", "m"], ["10.0.0.11", "m"]] } } });
    const settings = { wait_for_devices: false, enable_ipset: true };
    const streamed = await agentWith({ document, settings });
    const plain = await agentWith({ document, settings, host: new FakeHost({ namespaces: [NS], iptables: { restoreStream: false } }) });
    for (const t of [streamed, plain]) await t.agent.start();
    expect(streamed.host.iptables.restoreCalls.filter((c) => c.streamed).map((c) => c.target.family).sort()).toEqual([4, 6]);
    expect(plain.host.iptables.restoreCalls.filter((c) => c.streamed)).toEqual([]);
    for (const family of [4, 6] as const) expect(streamed.dump(family)).toBe(plain.dump(family));
    expect(streamed.dump(4)).toContain("--match-set NIPv45a1e0000-0000-4000-8000- src");
    expect(streamed.host.ipset.dump(NS)).toBe(plain.host.ipset.dump(NS));
  });

  it("an invalid port is reported and the others still apply; it keeps its last good rules, and one never valid is filtered closed", async () => {
    const t = await agentWith({ document: stateDocument({ ports: [a, b] }), settings: { wait_for_devices: false } });
    await t.agent.start();
    const bad = stateDocument({ ports: [a, b] });
    (bad["devices"] as Record<string, Record<string, unknown>>)["bbbb"]!["mac_address"] = "not a mac";
    (bad["devices"] as Record<string, unknown>)["cccc"] = { id: "cccc", device: "tap cccc", mac_address: "fa:16:3e:00:00:03", network_id: "n1" };
    (bad["devices"] as Record<string, unknown>)["dddd"] = { ...(bad["devices"] as Record<string, Record<string, unknown>>)["aaaa"]!, id: "dddd", device: "tapdddd", fixed_ips: ["10.0.0.4"] };
    t.source.push(bad);
    await t.agent.idle();
    expect(t.dump()).toContain(":neutron-linuxbri-idddd -");
    expect(t.dump()).toContain(":neutron-linuxbri-ibbbb -");
    // cccc's device is unusable: its tap is the one Neutron names from its id, and everything to
    // and from it goes to the fallback chain (DROP), not to the FORWARD policy.
    const fallback = '-m comment --comment "Send unmatched traffic to the fallback chain." -j neutron-linuxbri-sg-fallback';
    expect(t.dump()).toContain(`-A neutron-linuxbri-icccc ${fallback}`);
    expect(t.dump()).toContain(`-A neutron-linuxbri-occcc ${fallback}`);
    expect(t.dump()).toContain("-A neutron-linuxbri-sg-chain -m physdev --physdev-out tapcccc --physdev-is-bridged");
    expect(t.dump()).not.toContain("tap cccc");
  });

  it("after the apply: conntrack entries of a removed port are deleted in its zone, unused ipsets destroyed", async () => {
    const groups = { [WEB_SG]: [{ direction: "ingress", ethertype: "IPv4", remote_group_id: WEB_SG }] };
    const members = { [WEB_SG]: { IPv4: [["10.0.0.1", "m"], ["10.0.0.2", "m"]] } };
    const t = await agentWith({ document: stateDocument({ ports: [a, b], groups, members }), settings: { wait_for_devices: false, enable_ipset: true } });
    await t.agent.start();
    expect(t.host.ipset.dump(NS)).toContain("add NIPv45a1e0000-0000-4000-8000- 10.0.0.2");
    // Connections in the zone: b's to a (which the member's removal makes illegal), and one of a's
    // to a host outside the group, which stays.
    t.host.conntrack.addConnection(NS, { protocol: "tcp", src: "10.0.0.2", dst: "10.0.0.1", sport: 40000, dport: 22, zone: 4097 });
    t.host.conntrack.addConnection(NS, { protocol: "tcp", src: "10.0.0.1", dst: "192.0.2.7", sport: 40000, dport: 443, zone: 4097 });
    const kept = t.host.conntrack.listing(NS)[1];
    t.source.push(stateDocument({ ports: [a], groups, members: { [WEB_SG]: { IPv4: [["10.0.0.1", "m"]] } } }));
    await t.agent.idle();
    // Neutron's four deletions for the zone; the zone is listed once, and only the deletions that
    // can match a listed connection run (each is a walk of the host's whole conntrack table).
    const calls = t.host.commandsIn(NS, "conntrack").map((args) => args.join(" "));
    expect(calls[0]).toBe("-L -w 4097");
    expect(calls.slice(1).sort()).toEqual(["-D -f ipv4 -d 10.0.0.1 -w 4097 -s 10.0.0.2", "-D -f ipv4 -s 10.0.0.2 -w 4097"]);
    expect(t.host.conntrack.listing(NS)).toEqual([kept]);
    t.source.push(stateDocument({ ports: [] }));
    await t.agent.idle();
    expect(t.host.ipset.dump(NS)).toBe("");
    expect(t.dump()).not.toContain("tapaaaa");
  });

  it("plan changes nothing: no ipsets, no conntrack, and the live zone numbering is not shifted", async () => {
    const host = new FakeHost({ namespaces: [NS] });
    const groups = { [WEB_SG]: [{ direction: "ingress", ethertype: "IPv4", remote_group_id: WEB_SG }] };
    const doc = stateDocument({ ports: [a, { ...b, network: "other-net" }], groups, members: { [WEB_SG]: { IPv4: [] } } });
    const t = await agentWith({ document: doc, host, settings: { wait_for_devices: false, enable_ipset: true } });
    const plans = (await t.agent.plan()).namespaces;
    expect(plans[0]!.families.map((f) => f.input).join("")).toContain("CT --zone 4098");
    // The sets are only listed (read), to say which the apply would create.
    expect(host.commandsIn(NS, "ipset").map((args) => args.join(" "))).toEqual(["list -n"]);
    expect(plans[0]!.actions).toContainEqual({ verb: "create", object: "ipset", name: expect.stringMatching(/^NIPv4/) });
    expect(host.iptables.restoreCalls).toEqual([]);
    // The live agent later numbers from 4097 again.
    const live = await agentWith({ document: stateDocument({ ports: [{ ...b, network: "other-net" }] }), host, settings: { wait_for_devices: false } });
    await live.agent.start();
    expect(live.dump()).toContain("CT --zone 4097");
  });

  it("iptables_hybrid: the OVS agent's wrap name, tap names from the port id", async () => {
    const id = "6bc18a88-9619-4fce-bf4e-49cae6df1715";
    const t = await agentWith({ document: stateDocument({ ports: [{ id, device: id, ip: "10.10.10.2" }] }), settings: { firewall_driver: "iptables_hybrid", wait_for_devices: false } });
    await t.agent.start();
    expect(t.dump()).toContain("-A neutron-openvswi-sg-chain -m physdev --physdev-out tap6bc18a88-96 --physdev-is-bridged");
    expect(t.dump()).not.toContain("neutron-linuxbri");
  });

  it("reads its settings from the agent's config (the keys it declares: firewall_driver, enable_ipset, wait_for_devices)", async () => {
    const config = { ...baseConfigSchema.parse({ wrap_name: "neutron-linuxbri", resync_interval: 0, coalesce_ms: 0 }), firewall_driver: "neutron.agent.linux.iptables_firewall.OVSHybridIptablesFirewallDriver", wait_for_devices: false };
    const id = "7cd29b99-0000-4000-8000-000000000004";
    const t = await agentWith({ document: stateDocument({ ports: [{ id, device: id, ip: "10.10.10.4" }] }), config });
    await t.agent.start();
    expect(t.dump()).toContain("tap7cd29b99-00");
  });

  it("bad settings and options fail at start and name the plugin; a setting given as an option says where it belongs", async () => {
    const err = await agentWith({ document: {}, settings: { firewall_driver: "openvswitch" } }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PluginError);
    expect((err as PluginError).message).toMatch(/invalid settings for plugin l2-secgroup .*firewall_driver: expected one of iptables/s);
    const err2 = await agentWith({ document: {}, pluginOptions: { enable_ipset: true, max_rule_per_port: 5 } }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err2 as PluginError).message).toContain("  - enable_ipset: unknown key; enable_ipset is a top-level config key of the agent (a setting of this plugin), not an option");
    expect((err2 as PluginError).message).toContain("  - max_rule_per_port: unknown key; did you mean max_rules_per_port?");
  });

  it("a failed apply is retried from a fresh manager; the conntrack deletions it queued run after the retry", async () => {
    const config = baseConfigSchema.parse({ wrap_name: "neutron-linuxbri", resync_interval: 0, coalesce_ms: 0, retry_initial_delay_ms: 10 });
    const t = await agentWith({ document: stateDocument({ ports: [a, b] }), settings: { wait_for_devices: false }, config });
    await t.agent.start();
    t.host.iptables.failNextRestore({ exitCode: 1, stderr: "iptables-restore: line 2 failed\n" });
    t.source.push(stateDocument({ ports: [a] }));
    await t.agent.idle();
    expect(t.dump()).not.toContain("tapbbbb");
    expect(t.dump()).toContain("tapaaaa");
    // Two deletions in the zone: they run as they are (a listing would not save a walk).
    expect(t.host.commandsIn(NS, "conntrack").map((args) => args.join(" ")).sort()).toEqual(["-D -f ipv4 -d 10.0.0.2 -w 4097", "-D -f ipv4 -s 10.0.0.2 -w 4097"]);
  });
});
