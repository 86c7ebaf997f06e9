import { describe, expect, it } from "vitest";
import { iptablesFlavor, ovsHybridFlavor } from "./firewall-flavor.js";
import { L2ParseCache, parseL2State, trustedDeviceId, type PortFilterResource } from "./l2-state.js";

const SG = "5e2c1a4e-8a55-4d38-a5f0-1b2b5c0e2f10";
const port = (id: string, device: string, extra: Record<string, unknown> = {}) => ({
  id,
  device,
  mac_address: "fa:16:3e:00:00:01",
  fixed_ips: ["10.0.0.5"],
  network_id: "8f2e0c6a-3d1b-4b7e-9c55-1a2b3c4d5e6f",
  device_owner: "compute:nova",
  port_security_enabled: true,
  security_groups: [SG],
  security_group_rules: [],
  allowed_address_pairs: [],
  ...extra,
});
const groups = { [SG]: [{ direction: "ingress", ethertype: "IPv4", protocol: "tcp", port_range_min: 22, port_range_max: 22 }] };
const parse = (doc: Record<string, unknown>, enableIpset = false, flavor = iptablesFlavor) => parseL2State(doc, "state.json", { flavor, enableIpset });
const problemsOf = (r: ReturnType<typeof parse>) => r.problems.map((p) => ({ path: p.path, resource: p.resource, message: p.message }));

describe("parseL2State", () => {
  it("reads Neutron's security_group_info_for_devices shape, ignoring keys the server adds", () => {
    const r = parse({
      devices: { p1: port("p1", "tapp1", { admin_state_up: true, security_group_source_groups: [], fixed_ips: [{ subnet_id: "s", ip_address: "10.0.0.5" }], mac_address: "FA:16:3E:00:00:01" }) },
      security_groups: groups,
      sg_member_ips: {},
    });
    expect(r.problems).toEqual([]);
    const p = r.resources.get("p1") as PortFilterResource;
    expect(p.port).toMatchObject({ id: "p1", device: "tapp1", mac_address: "fa:16:3e:00:00:01", fixed_ips: ["10.0.0.5"] });
    expect(p.security_groups[SG]).toHaveLength(1);
  });

  it("an empty document has no ports; a missing group gives no rules (fail closed), not a problem", () => {
    expect(parse({})).toEqual({ resources: new Map(), problems: [], held: new Map() });
    const r = parse({ devices: { p1: port("p1", "tapp1", { security_groups: ["not-listed"] }) } });
    expect(r.problems).toEqual([]);
    expect((r.resources.get("p1") as PortFilterResource).security_groups).toEqual({});
  });

  it("a bad port is a problem naming the port and field; the other ports still apply", () => {
    const r = parse({
      devices: {
        good: port("good", "tapgood"),
        spaces: port("spaces", "tap bad"),
        newline: port("newline", "tap\nx"),
        quote: port("quote", 'tap"x'),
        plus: port("plus", "tap+"),
        long: port("long", "tap0123456789abc"),
        mac: port("mac", "tapmac", { mac_address: "fa:16:3e:00:00" }),
        ip: port("ip", "tapip", { fixed_ips: ["10.0.0.256"] }),
        pair: port("pair", "tappair", { allowed_address_pairs: [{ ip_address: "10.0.0.0/40" }] }),
        rule: port("rule", "taprule", { security_group_rules: [{ direction: "ingress", ethertype: "IPv4", protocol: "tcp", port_range_min: 90, port_range_max: 80 }] }),
        other: port("idmismatch", "tapother"),
      },
      security_groups: groups,
    });
    expect([...r.resources.keys()]).toEqual(["good"]);
    const p = problemsOf(r);
    expect(p).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ path: "devices.spaces.device", resource: "spaces" }),
        expect.objectContaining({ path: "devices.newline.device", resource: "newline" }),
        expect.objectContaining({ path: "devices.quote.device", resource: "quote" }),
        expect.objectContaining({ path: "devices.plus.device", resource: "plus" }),
        expect.objectContaining({ path: "devices.long.device", resource: "long", message: expect.stringMatching(/1-15 characters/) }),
        expect.objectContaining({ path: "devices.mac.mac_address", resource: "mac", message: expect.stringMatching(/invalid MAC/) }),
        expect.objectContaining({ path: "devices.ip.fixed_ips.0", resource: "ip" }),
        expect.objectContaining({ path: "devices.pair.allowed_address_pairs.0.ip_address", resource: "pair" }),
        expect.objectContaining({ path: "devices.rule.security_group_rules.0.port_range_max", resource: "rule", message: expect.stringMatching(/below port_range_min/) }),
        expect.objectContaining({ path: "devices.other.id", resource: "other" }),
      ]),
    );
    // Every problem names its resource, so the reconcile loop keeps that port's last good rules only.
    expect(r.problems.every((x) => x.resource !== undefined)).toBe(true);
  });

  it("a bad rule in a group is a problem for each port using the group; ports of other groups apply", () => {
    const r = parse({
      devices: { a: port("a", "tapa"), b: port("b", "tapb"), c: port("c", "tapc", { security_groups: ["other"] }) },
      security_groups: { [SG]: [{ direction: "ingress", ethertype: "IPv4", protocol: "tcp", port_range_min: 1, port_range_max: 70000 }], other: [], unused: [{ direction: "sideways", ethertype: "IPv4" }] },
    });
    expect([...r.resources.keys()]).toEqual(["c"]);
    expect(problemsOf(r)).toEqual([
      { path: `security_groups.${SG}.0.port_range_max`, resource: "a", message: expect.stringMatching(/must be 0-65535.*security group .* of this port/) },
      { path: `security_groups.${SG}.0.port_range_max`, resource: "b", message: expect.stringMatching(/must be 0-65535/) },
      { path: "security_groups.unused.0.direction", resource: "security_group:unused", message: expect.stringMatching(/ingress/) },
    ]);
  });

  it("bad member addresses are problems for the ports whose rules name the group", () => {
    const rules = { [SG]: [{ direction: "ingress", ethertype: "IPv4", remote_group_id: "rg" }], plain: [] };
    const r = parse({
      devices: { a: port("a", "tapa"), b: port("b", "tapb", { security_groups: ["plain"] }) },
      security_groups: rules,
      sg_member_ips: { rg: { IPv4: [["10.0.0.1", "fa:16:3e:00:00:09"], ["2001:db8::1", "x"]] } },
    });
    expect([...r.resources.keys()]).toEqual(["b"]);
    expect(problemsOf(r)).toEqual([{ path: "sg_member_ips.rg.IPv4.1", resource: "a", message: expect.stringMatching(/expected an IPv4 address/) }]);
  });

  it("two ports on one device, or whose chains Neutron would cut to one name: the smaller id keeps it", () => {
    const r = parse({
      devices: { a: port("a", "tap12345678-90"), b: port("b", "tap12345678-90"), c: port("c", "tap12345678-91") },
      security_groups: groups,
    });
    expect([...r.resources.keys()]).toEqual(["a"]);
    expect(problemsOf(r)).toEqual([
      { path: "devices.b.device", resource: "b", message: expect.stringMatching(/also port a's device/) },
      { path: "devices.c.device", resource: "c", message: expect.stringMatching(/same chain names as port a's \(i12345678-9\)/) },
    ]);
  });

  it("trusted devices: validated, and a device that is a port's is that port", () => {
    const r = parse({ devices: { a: port("a", "tapa") }, security_groups: groups, trusted_devices: ["tapdhcp", "tapa", "tap evil", 7] });
    expect([...r.resources.keys()].sort()).toEqual(["a", trustedDeviceId("tapdhcp")]);
    expect(problemsOf(r)).toEqual([
      { path: "trusted_devices.2", resource: trustedDeviceId("tap evil"), message: expect.stringMatching(/no spaces/) },
      { path: "trusted_devices.3", resource: trustedDeviceId("7"), message: expect.stringMatching(/expected a device name/) },
    ]);
  });

  it("a broken section is one problem without a resource and no resources (the loop keeps the last good state)", () => {
    const r = parse({ devices: [port("a", "tapa")] });
    expect(r.resources.size).toBe(0);
    expect(r.problems).toEqual([{ source: "state.json", path: "devices", message: expect.any(String) }]);
  });

  it("Linux bridge ports need a network (their zone and bridge); hybrid ports take a port id as device", () => {
    expect(problemsOf(parse({ devices: { a: port("a", "tapa", { network_id: undefined }) } }))).toEqual([
      { path: "devices.a.network_id", resource: "a", message: expect.stringMatching(/required/) },
    ]);
    const id = "6bc18a88-9619-4fce-bf4e-49cae6df1715";
    const r = parse({ devices: { [id]: port(id, id, { network_id: undefined }) }, security_groups: groups }, false, ovsHybridFlavor);
    expect(r.problems).toEqual([]);
  });

  it("fingerprints change exactly when something that shapes the port's rules changes", () => {
    const doc = (members: string[], rule = 22) => ({
      devices: { a: port("a", "tapa", { security_groups: [SG] }) },
      security_groups: { [SG]: [{ direction: "ingress", ethertype: "IPv4", remote_group_id: "rg" }, { direction: "ingress", ethertype: "IPv4", protocol: "tcp", port_range_min: rule, port_range_max: rule }] },
      sg_member_ips: { rg: { IPv4: members.map((m) => [m, "fa:16:3e:00:00:09"]) }, unrelated: { IPv4: [] } },
    });
    const fp = (d: Record<string, unknown>) => (parse(d).resources.get("a") as PortFilterResource).fingerprint;
    expect(fp(doc(["10.0.0.1"]))).toBe(fp(doc(["10.0.0.1"])));
    expect(fp(doc(["10.0.0.1"]))).not.toBe(fp(doc(["10.0.0.2"])));
    expect(fp(doc(["10.0.0.1"]))).not.toBe(fp(doc(["10.0.0.1"], 23)));
    const withUnrelated = { ...doc(["10.0.0.1"]), sg_member_ips: { rg: { IPv4: [["10.0.0.1", "m"]] }, unrelated: { IPv4: [["10.9.9.9", "m"]] } } };
    expect(fp(withUnrelated)).toBe(fp(doc(["10.0.0.1"])));
  });

  it("with ipset, two remote groups that would share a set name are refused", () => {
    const a = "0123456789abcdef0123456789-a";
    const b = "0123456789abcdef0123456789-b";
    const r = parse(
      {
        devices: { p: port("p", "tapp", { security_groups: ["g"] }) },
        security_groups: { g: [{ direction: "ingress", ethertype: "IPv4", remote_group_id: a }, { direction: "ingress", ethertype: "IPv4", remote_group_id: b }] },
        sg_member_ips: { [a]: { IPv4: [] }, [b]: { IPv4: [] } },
      },
      true,
    );
    expect(problemsOf(r)).toEqual([{ path: "devices.p.security_groups", resource: "p", message: expect.stringMatching(/would share ipset/) }]);
  });

  it("a parse cache gives the same resources and problems, and re-validates only what changed", () => {
    const doc = (mac: string) => ({
      devices: { a: port("a", "tapa"), b: port("b", "tapb", { mac_address: mac }) },
      security_groups: { ...groups, bad: [{ direction: "up", ethertype: "IPv4" }] },
    });
    const cache = new L2ParseCache();
    for (const mac of ["fa:16:3e:00:00:02", "bogus", "bogus", "fa:16:3e:00:00:03"]) {
      const cached = parseL2State(doc(mac), "s", { flavor: iptablesFlavor, enableIpset: false }, cache);
      const plain = parseL2State(doc(mac), "s", { flavor: iptablesFlavor, enableIpset: false });
      expect(cached).toEqual(plain);
    }
    expect(cache.ports.size).toBe(2);
    expect(cache.groups.size).toBe(2);
  });
});
