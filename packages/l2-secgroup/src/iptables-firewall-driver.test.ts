import { IptablesManager, normalizeSave } from "@chainwarden/core";
import { FakeHost } from "@chainwarden/testing";
import { describe, expect, it } from "vitest";
import { iptablesFlavor, ovsHybridFlavor, type FirewallFlavor } from "./firewall-flavor.js";
import { FirewallNamespace } from "./firewall-namespace.js";
import { ConntrackZoneExhaustedError, ConntrackZones } from "./conntrack-zones.js";
import { IptablesFirewallDriver } from "./iptables-firewall-driver.js";
import type { L2Resource } from "./l2-state.js";
import { DEFAULT_GROUPS, NET_B, ports, resources, WEB_SG, type StateSpec } from "./test-support/fixtures.js";

const NS = "fw";

function setup(options: { flavor?: FirewallFlavor; enableIpset?: boolean; host?: FakeHost } = {}) {
  const flavor = options.flavor ?? iptablesFlavor;
  const host = options.host ?? new FakeHost({ namespaces: [NS] });
  const manager = new IptablesManager({ runner: host, namespace: NS, wrapName: flavor.defaultWrapName, stateless: true, strict: true });
  const ns = new FirewallNamespace({ runner: host, namespace: NS, flavor, enableIpset: options.enableIpset ?? false, waitForDevices: false });
  const apply = async (list: L2Resource[]) => {
    const { value, result } = await manager.deferApply(() => ns.reconcile(manager, list));
    const after = await ns.afterApply();
    return { summary: value, result, after };
  };
  const state = (spec: StateSpec) => resources(spec, { flavor, enableIpset: options.enableIpset ?? false });
  const dump = (family: 4 | 6 = 4) => normalizeSave(host.iptables.dump({ namespace: NS, family }));
  return { host, manager, ns, apply, state, dump };
}

const p1 = { id: "p1", device: "tap11111111-11", ip: "10.0.0.11", mac: "fa:16:3e:00:00:11" };
const p2 = { id: "p2", device: "tap22222222-22", ip: ["10.0.0.22", "2001:db8::22"], mac: "fa:16:3e:00:00:22" };
const p3 = { id: "p3", device: "tap33333333-33", ip: "10.0.1.33", mac: "fa:16:3e:00:00:33", network: NET_B };

describe("IptablesFirewallDriver", () => {
  it("removing a port removes its chains, jumps and zone rules and nothing else", async () => {
    const a = setup();
    await a.apply(a.state({ ports: [p1, p2, p3] }));
    const { after } = await a.apply(a.state({ ports: [p1, p2] }));
    // Everything to and from the removed port's addresses, in its zone (Neutron's port-deleted cleanup).
    expect(after.conntrack.map((c) => c.join(" "))).toEqual([
      "-D -f ipv4 -d 10.0.1.33 -w 4098",
      "-D -f ipv4 -s 10.0.1.33 -w 4098",
    ]);
    // The same as an agent that only ever had the other two ports (zones included).
    const b = setup();
    await b.apply(b.state({ ports: [p1, p2] }));
    expect(a.dump(4)).toBe(b.dump(4));
    expect(a.dump(6)).toBe(b.dump(6));
    expect(a.dump(4)).not.toContain("33333333");
  });

  it("an unchanged state sends nothing; an update rewrites only the chains that changed", async () => {
    const t = setup();
    await t.apply(t.state({ ports: [p1, p2] }));
    const again = await t.apply(t.state({ ports: [p1, p2] }));
    expect(again.result.lines).toBe(0);
    expect(again.summary).toMatchObject({ added: 0, updated: 0, removed: 0, unchanged: 2 });
    const before = t.host.iptables.restoreCalls.length;
    const groups = { [WEB_SG]: [{ direction: "egress", ethertype: "IPv4" }, { direction: "egress", ethertype: "IPv6" }, { direction: "ingress", ethertype: "IPv4", protocol: "tcp", port_range_min: 2222, port_range_max: 2222 }] };
    const { summary } = await t.apply(t.state({ ports: [p1, p2], groups }));
    expect(summary).toMatchObject({ updated: 2 });
    const sent = t.host.iptables.restoreCalls.slice(before).map((c) => c.input).join("");
    // Only the IPv4 ingress chains changed (the IPv6 ones keep their ICMPv6 and fallback rules).
    const touched = new Set([...sent.matchAll(/^(?:-[AIDR]|:)\s*(\S+)/gm)].map((m) => m[1]));
    expect([...touched].sort()).toEqual(["neutron-linuxbri-i11111111-1", "neutron-linuxbri-i22222222-2"]);
  });

  it("conntrack zones: one per network from 4097 on, kept when a network's ports go, recovered after a restart", async () => {
    const t = setup();
    await t.apply(t.state({ ports: [p1, p3] }));
    expect(t.dump()).toMatch(/--physdev-in brq7e7e7e7e-00 -m comment --comment "Set zone for 1111111-11" -j CT --zone 4097/);
    expect(t.dump()).toMatch(/--physdev-in brq8e8e8e8e-00 -m comment --comment "Set zone for 3333333-33" -j CT --zone 4098/);
    await t.apply(t.state({ ports: [p1] }));
    await t.apply(t.state({ ports: [p1, { ...p2, network: "99999999-0000-4000-8000-000000000000" }] }));
    expect(t.dump()).toContain("brq99999999-00 -m comment --comment \"Set zone for 2222222-22\" -j CT --zone 4099");

    // A restarted agent (fresh manager and namespace state) adopts the kernel as it is: nothing to send.
    const restarted = setup({ host: t.host });
    const { result } = await restarted.apply(restarted.state({ ports: [p1, { ...p2, network: "99999999-0000-4000-8000-000000000000" }] }));
    expect(result.lines).toBe(0);
  });

  it("hybrid: zones are per port and survive a restart (Neutron re-keys them and renumbers)", async () => {
    const id1 = "6bc18a88-9619-4fce-bf4e-49cae6df1715";
    const id2 = "7cd29b99-0000-4000-8000-000000000004";
    const spec = { ports: [{ id: id1, device: id1, ip: "10.10.10.2" }, { id: id2, device: id2, ip: "10.10.10.4" }] };
    const t = setup({ flavor: ovsHybridFlavor });
    await t.apply(t.state(spec));
    expect(t.dump()).toContain(`-A neutron-openvswi-PREROUTING -m physdev --physdev-in qvb7cd29b99-00 -m comment --comment "Set zone for ${id2}" -j CT --zone 4098`);
    const restarted = setup({ flavor: ovsHybridFlavor, host: t.host });
    expect((await restarted.apply(restarted.state(spec))).result.lines).toBe(0);
  });

  it("ports added later are appended to the shared chains (Neutron would re-sort all of them)", async () => {
    const t = setup();
    await t.apply(t.state({ ports: [p2] }));
    await t.apply(t.state({ ports: [p1, p2] }));
    const forward = t.dump().split("\n").filter((l) => l.startsWith("-A neutron-linuxbri-FORWARD"));
    expect(forward.map((l) => /tap(\d)/.exec(l)![1])).toEqual(["2", "2", "1", "1"]);
    // In one batch they come in device order, as Neutron writes them; a fresh agent re-sorts.
    const fresh = setup({ host: t.host });
    await fresh.apply(fresh.state({ ports: [p1, p2] }));
    const sorted = t.dump().split("\n").filter((l) => l.startsWith("-A neutron-linuxbri-FORWARD"));
    expect(sorted.map((l) => /tap(\d)/.exec(l)![1])).toEqual(["1", "1", "2", "2"]);
  });

  it("port security off and back on; trusted devices before unfiltered ports in FORWARD, in Neutron's order", async () => {
    const t = setup();
    await t.apply(t.state({ ports: [{ ...p1, portSecurity: false }, p2], trusted: ["tapdhcp"] }));
    let d = t.dump();
    expect(d.split("\n").filter((l) => l.includes("ACCEPT") && /FORWARD|INPUT/.test(l) && l.includes("linuxbri"))).toEqual([
      '-A neutron-linuxbri-FORWARD -m physdev --physdev-out tapdhcp --physdev-is-bridged -m comment --comment "Accept all packets when port is trusted." -j ACCEPT',
      '-A neutron-linuxbri-FORWARD -m physdev --physdev-in tapdhcp --physdev-is-bridged -m comment --comment "Accept all packets when port is trusted." -j ACCEPT',
      '-A neutron-linuxbri-FORWARD -m physdev --physdev-out tap11111111-11 --physdev-is-bridged -m comment --comment "Accept all packets when port security is disabled." -j ACCEPT',
      '-A neutron-linuxbri-FORWARD -m physdev --physdev-in tap11111111-11 --physdev-is-bridged -m comment --comment "Accept all packets when port security is disabled." -j ACCEPT',
      '-A neutron-linuxbri-INPUT -m physdev --physdev-in tap11111111-11 --physdev-is-bridged -m comment --comment "Accept all packets when port security is disabled." -j ACCEPT',
    ]);
    expect(d).not.toContain("i11111111-1");
    await t.apply(t.state({ ports: [p1, p2], trusted: [] }));
    d = t.dump();
    expect(d).toContain(":neutron-linuxbri-i11111111-1 -");
    expect(d).not.toContain("-j ACCEPT\n-A neutron-linuxbri-INPUT"); // no ACCEPT jumps left
    expect(d).not.toMatch(/Accept all packets/);
  });

  it("address groups are matched by their member networks (Neutron's iptables driver ignores them and allows everyone)", async () => {
    const groups = { [WEB_SG]: [{ direction: "ingress", ethertype: "IPv4", protocol: "tcp", port_range_min: 443, port_range_max: 443, remote_address_group_id: "ag-1" }] };
    const members = { "ag-1": { IPv4: ["192.0.2.0/24", "10.0.0.11/32"] } };
    const t = setup();
    await t.apply(t.state({ ports: [p1], groups, members }));
    const ingress = t.dump().split("\n").filter((l) => l.startsWith("-A neutron-linuxbri-i11111111-1 -s"));
    // The port's own address is not skipped for an address group: it names networks, not ports.
    expect(ingress).toEqual([
      "-A neutron-linuxbri-i11111111-1 -s 192.0.2.0/24 -p tcp -m tcp --dport 443 -j RETURN",
      "-A neutron-linuxbri-i11111111-1 -s 10.0.0.11/32 -p tcp -m tcp --dport 443 -j RETURN",
    ]);
    const withIpset = setup({ enableIpset: true });
    await withIpset.apply(withIpset.state({ ports: [p1], groups, members }));
    expect(withIpset.dump()).toContain("-p tcp -m tcp --dport 443 -m set --match-set NIPv4ag-1 src -j RETURN");
    expect(withIpset.host.ipset.dump(NS)).toBe("create NIPv4ag-1 hash:net family inet hashsize 1024 maxelem 65536 bucketsize 12\nadd NIPv4ag-1 10.0.0.11\nadd NIPv4ag-1 192.0.2.0/24\n");
  });

  it("a port-level rule naming a remote group is expanded like a group rule (Neutron would allow every source)", async () => {
    const t = setup();
    const list = t.state({ ports: [p1], members: { rg: { IPv4: [["10.5.5.5", "m"]] } } });
    const port = list[0] as Extract<L2Resource, { type: "port" }>;
    const withRule = { ...port, port: { ...port.port, security_group_rules: [{ direction: "ingress" as const, ethertype: "IPv4" as const, remote_group_id: "rg", stateful: true }] }, members: { rg: { IPv4: ["10.5.5.5"] } }, fingerprint: "x" };
    await t.apply([withRule]);
    expect(t.dump()).toContain("-A neutron-linuxbri-i11111111-1 -s 10.5.5.5/32 -j RETURN");
  });

  it("ipsets exist before the rules that name them and go after the last such rule", async () => {
    const groups = { [WEB_SG]: [{ direction: "ingress", ethertype: "IPv4", remote_group_id: WEB_SG }] };
    const t = setup({ enableIpset: true });
    await t.apply(t.state({ ports: [p1], groups, members: { [WEB_SG]: { IPv4: [["10.0.0.11", "m"]] } } }));
    expect(t.host.ipset.dump(NS)).toContain("add NIPv45a1e0000-0000-4000-8000- 10.0.0.11");
    // A member change swaps in a freshly built set.
    const before = t.host.ipset.calls.length;
    await t.apply(t.state({ ports: [p1], groups, members: { [WEB_SG]: { IPv4: [["10.0.0.11", "m"], ["10.0.0.12", "m"]] } } }));
    const calls = t.host.ipset.calls.slice(before);
    expect(calls.map((c) => c.args.join(" "))).toEqual([
      "restore -exist",
      "swap NIPv45a1e0000-0000-4000-8000--n NIPv45a1e0000-0000-4000-8000-",
      "destroy NIPv45a1e0000-0000-4000-8000--n",
    ]);
    expect(calls[0]!.input).toBe(
      "create NIPv45a1e0000-0000-4000-8000--n hash:net family inet\nflush NIPv45a1e0000-0000-4000-8000--n\nadd NIPv45a1e0000-0000-4000-8000--n 10.0.0.11\nadd NIPv45a1e0000-0000-4000-8000--n 10.0.0.12\n",
    );
    // The fake kernel refuses to destroy a set a rule names: the set goes only after the apply.
    const { after } = await t.apply(t.state({ ports: [p1], groups: { [WEB_SG]: [] } }));
    expect(after.ipsetsDestroyed).toEqual(["NIPv45a1e0000-0000-4000-8000-"]);
    expect(t.host.ipset.dump(NS)).toBe("");
  });

  it("a cold add of many ports streams each port's chains and ends exactly as a plain add (ipsets first)", async () => {
    const many = Array.from({ length: 90 }, (_, i) => {
      const hex = i.toString(16).padStart(8, "0");
      return { id: `port-${i}`, device: `tap${hex}-00`, ip: [`10.0.${i >> 6}.${(i & 63) + 10}`, `2001:db8::${(i + 16).toString(16)}`], mac: `fa:16:3e:00:01:${(i & 255).toString(16).padStart(2, "0")}` };
    });
    const groups = { [WEB_SG]: [...DEFAULT_GROUPS[WEB_SG]!, { direction: "ingress", ethertype: "IPv4", remote_group_id: WEB_SG }] };
    const spec = { ports: many, groups, members: { [WEB_SG]: { IPv4: [["10.0.0.10", "m"]] } } };
    // Plain: a host whose iptables takes whole restores only.
    const plain = setup({ enableIpset: true, host: new FakeHost({ namespaces: [NS], iptables: { restoreStream: false } }) });
    await plain.apply(plain.state(spec));
    expect(plain.host.iptables.restoreCalls.filter((c) => c.streamed)).toEqual([]);
    // The same, streamed: the fake host offers restoreStream, which a cold add of 64+ ports uses.
    const host = new FakeHost({ namespaces: [NS] });
    const manager = new IptablesManager({ runner: host, namespace: NS, wrapName: iptablesFlavor.defaultWrapName, stateless: true, strict: true });
    const ns = new FirewallNamespace({ runner: host, namespace: NS, flavor: iptablesFlavor, enableIpset: true, waitForDevices: false });
    const sets: string[] = [];
    host.iptables.onBeforeRestore(() => void sets.push(host.ipset.dump(NS)));
    const { result } = await manager.deferApply(() => ns.reconcile(manager, resources(spec, { enableIpset: true })));
    const streamed = host.iptables.restoreCalls.filter((c) => c.streamed);
    expect(streamed.map((c) => c.target.family).sort()).toEqual([4, 6]);
    expect(sets.every((save) => save.includes("add NIPv45a1e0000-0000-4000-8000- 10.0.0.10"))).toBe(true);
    expect(result.families.map((f) => f.family)).toEqual([4, 6]);
    for (const family of [4, 6] as const) expect(normalizeSave(host.iptables.dump({ namespace: NS, family }))).toBe(plain.dump(family));
    // A later change of a few ports goes the usual way.
    const next = await manager.deferApply(() => ns.reconcile(manager, resources({ ...spec, ports: many.slice(1) }, { enableIpset: true })));
    expect(next.value).toMatchObject({ removed: 1 });
    expect(host.iptables.restoreCalls.filter((c) => c.streamed)).toHaveLength(2);
  });

  it("syncByFamily writes the family with fewer rules first, each port's spoof chain before the chain jumping to it", async () => {
    const host = new FakeHost({ namespaces: [NS] });
    const manager = new IptablesManager({ runner: host, namespace: NS, wrapName: iptablesFlavor.defaultWrapName, stateless: true, strict: true });
    const driver = new IptablesFirewallDriver({ manager, flavor: iptablesFlavor, enableIpset: false });
    const seen: string[] = [];
    // Ten IPv4 rules per port, as in the benchmark: IPv6 (base rules only) has less to write.
    const groups = { [WEB_SG]: [...DEFAULT_GROUPS[WEB_SG]!, ...Array.from({ length: 10 }, (_, k) => ({ direction: "ingress", ethertype: "IPv4", protocol: "tcp", port_range_min: 1000 + k, port_range_max: 1000 + k }))] };
    const list = ports(resources({ ports: [p1, p3], groups }));
    const summary = await driver.syncByFamily(list, [], {
      before: (v, sync, first) => void seen.push(`before ${v} ${first} added=${sync.added}`),
      chainsWritten: (v, chains) => void seen.push(`${v}: ${chains.join(" ")}`),
      after: (v, last) => void seen.push(`after ${v} ${last}`),
    });
    expect(summary.added).toBe(2);
    expect(seen).toEqual([
      "before 6 true added=2",
      "6: i11111111-1 o11111111-1",
      "6: i33333333-3 o33333333-3",
      "after 6 false",
      "before 4 false added=2",
      "4: s11111111-1 i11111111-1 o11111111-1",
      "4: s33333333-3 i33333333-3 o33333333-3",
      "after 4 true",
    ]);
    // The tables hold what sync() would have written.
    const other = new IptablesManager({ runner: new FakeHost({ namespaces: [NS] }), namespace: NS, wrapName: iptablesFlavor.defaultWrapName, stateless: true, strict: true });
    new IptablesFirewallDriver({ manager: other, flavor: iptablesFlavor, enableIpset: false }).sync(list, []);
    for (const family of [4, 6] as const) expect((await manager.plan()).families[family === 4 ? 0 : 1]!.input).toBe((await other.plan()).families[family === 4 ? 0 : 1]!.input);
  });

  it("syncByFamily that fails half-way (no conntrack zone left) leaves the tables as sync would", async () => {
    // Zones run out for p3's network: p1 (network A) is programmed, p3 is not.
    class ExhaustedForB extends ConntrackZones {
      override allocate(key: string, inUse: () => Iterable<string>): number {
        if (key === iptablesFlavor.zoneKey({ device: p3.device, network_id: NET_B })) throw new ConntrackZoneExhaustedError();
        return super.allocate(key, inUse);
      }
    }
    const tables = async (byFamily: boolean) => {
      const manager = new IptablesManager({ runner: new FakeHost({ namespaces: [NS] }), namespace: NS, wrapName: iptablesFlavor.defaultWrapName, stateless: true, strict: true });
      const driver = new IptablesFirewallDriver({ manager, flavor: iptablesFlavor, enableIpset: false, zones: new ExhaustedForB() });
      const list = ports(resources({ ports: [p1, p3] }));
      if (byFamily) await expect(driver.syncByFamily(list, [], {})).rejects.toBeInstanceOf(ConntrackZoneExhaustedError);
      else expect(() => driver.sync(list, [])).toThrow(ConntrackZoneExhaustedError);
      return (await manager.plan()).families.map((f) => f.input);
    };
    const plain = await tables(false);
    expect(plain[0]).toContain(":neutron-linuxbri-i11111111-1 - [0:0]");
    expect(plain[0]).not.toContain("33333333");
    expect(await tables(true)).toEqual(plain);
  });

  it("syncByFamily whose hook fails still writes every family's tables before the error goes on", async () => {
    const manager = new IptablesManager({ runner: new FakeHost({ namespaces: [NS] }), namespace: NS, wrapName: iptablesFlavor.defaultWrapName, stateless: true, strict: true });
    const driver = new IptablesFirewallDriver({ manager, flavor: iptablesFlavor, enableIpset: false });
    const list = ports(resources({ ports: [p1, p3] }));
    await expect(
      driver.syncByFamily(list, [], {
        chainsWritten: (v) => {
          if (v === 6) throw new Error("an ipset could not be made");
        },
      }),
    ).rejects.toThrow("an ipset could not be made");
    const other = new IptablesManager({ runner: new FakeHost({ namespaces: [NS] }), namespace: NS, wrapName: iptablesFlavor.defaultWrapName, stateless: true, strict: true });
    new IptablesFirewallDriver({ manager: other, flavor: iptablesFlavor, enableIpset: false }).sync(list, []);
    expect((await manager.plan()).families.map((f) => f.input)).toEqual((await other.plan()).families.map((f) => f.input));
    // Nothing written twice (the write whose hook threw is not repeated).
    for (const family of [4, 6] as const) {
      expect(manager.table(family, "filter").getChain("i11111111-1")).toHaveLength(other.table(family, "filter").getChain("i11111111-1").length);
    }
  });
});
