import { readFileSync } from "node:fs";
import { join } from "node:path";
import { referenceDir } from "@chainwarden/testing";
import { describe, expect, it } from "vitest";
import { parseRouters, RouterParseCache } from "./parse-routers.js";

const seed = JSON.parse(readFileSync(join(referenceDir(), "l3_seed_router_fip.json"), "utf8")).steps[0].router;
const clone = (): Record<string, any> => structuredClone(seed);
const parse = (routers: unknown) => parseRouters({ routers }, "routers.json", { namespacePrefix: "qrouter-" });

describe("parseRouters", () => {
  it("reads the reference router with Neutron's defaults filled in", () => {
    const { resources, problems } = parse([seed]);
    expect(problems).toEqual([]);
    const r = resources.get(seed.id)!;
    expect(r.admin_state_up).toBe(true);
    expect(r.enable_snat).toBe(true);
    expect(r._interfaces[0]!.fixed_ips[0]!.prefixlen).toBe(24);
    expect(r._floatingips[0]!.fixed_ip_address_scope).toBeNull();
    // Keys the agent does not read are kept for router extensions.
    expect(r.tenant_id).toBe(seed.tenant_id);
    expect(r._floatingips[0]!.status).toBe("DOWN");
  });

  it("takes the prefix length from the subnet when the fixed IP has none, and enable_snat defaults to true", () => {
    const r = clone();
    delete r.enable_snat;
    delete r.gw_port.fixed_ips[0].prefixlen;
    r.gw_port.subnets[0].cidr = "200.200.0.0/16";
    const { resources, problems } = parse([r]);
    expect(problems).toEqual([]);
    expect(resources.get(seed.id)!.gw_port!.fixed_ips[0]!.prefixlen).toBe(16);
    expect(resources.get(seed.id)!.enable_snat).toBe(true);
  });

  it("has nothing to say about a document without routers, and reports a routers key that is not a list", () => {
    expect(parseRouters({ devices: {} }, "s.json", { namespacePrefix: "qrouter-" })).toEqual({ resources: new Map(), problems: [], held: new Map() });
    expect(parse({ r1: {} }).problems).toEqual([{ source: "routers.json", path: "routers", message: "expected a list of routers" }]);
  });

  it("an HA or a DVR router is a problem of that router (held, never touched); the others apply", () => {
    const ha = clone();
    ha.id = "ha-router";
    ha.ha = true;
    const dvr = clone();
    dvr.id = "dvr-router";
    dvr.distributed = true;
    const legacy = { ...clone(), ha: false, distributed: false };
    const { resources, problems, held } = parse([ha, dvr, legacy]);
    expect([...resources.keys()]).toEqual([seed.id]);
    expect(problems.map((p) => [p.resource, p.path, p.message])).toEqual([
      ["ha-router", "routers.0.ha", expect.stringMatching(/HA routers .* not supported/)],
      ["dvr-router", "routers.1.distributed", expect.stringMatching(/DVR\) routers are not supported/)],
    ]);
    expect([...held!.keys()]).toEqual(["ha-router", "dvr-router"]);
  });

  it("reports each bad router naming the router and the field, and keeps the good ones", () => {
    const badIp = clone();
    badIp.id = "bad-ip";
    badIp.gw_port.fixed_ips[0].ip_address = "200.200.128.300";
    const badCidr = clone();
    badCidr.id = "bad-cidr";
    badCidr._interfaces[0].subnets[0].cidr = "10.10.10.0/33";
    const noFixed = clone();
    noFixed.id = "no-fixed";
    delete noFixed._floatingips[0].fixed_ip_address;
    const noSubnet = clone();
    noSubnet.id = "no-subnet";
    noSubnet._interfaces[0].subnets = [];
    const outside = clone();
    outside.id = "outside";
    outside._interfaces[0].fixed_ips[0].ip_address = "10.10.11.1";
    const leadingZero = clone();
    leadingZero.id = "leading-zero";
    leadingZero._floatingips[0].floating_ip_address = "200.200.128.03";
    const v6Fip = clone();
    v6Fip.id = "v6-fip";
    v6Fip._floatingips[0].fixed_ip_address = "fd00::2";
    const badDevice = clone();
    badDevice.id = "bad-port-id";
    badDevice._interfaces[0].id = "c0ffee00 11";

    const { resources, problems } = parse([badIp, badCidr, seed, noFixed, noSubnet, outside, leadingZero, v6Fip, badDevice]);
    expect([...resources.keys()]).toEqual([seed.id]);
    const of = (id: string) => problems.filter((p) => p.resource === id).map((p) => ({ path: p.path, message: p.message }));
    expect(of("bad-ip")).toEqual([{ path: "routers.0.gw_port.fixed_ips.0.ip_address", message: "router bad-ip: not a valid IP address" }]);
    expect(of("bad-cidr")).toEqual([{ path: "routers.1._interfaces.0.subnets.0.cidr", message: "router bad-cidr: not a valid CIDR" }]);
    expect(of("no-fixed")).toEqual([{ path: "routers.3._floatingips.0.fixed_ip_address", message: "router no-fixed: a floating IP needs a fixed_ip_address" }]);
    expect(of("no-subnet")).toContainEqual({ path: "routers.4._interfaces.0.subnets", message: "router no-subnet: a router port needs at least one subnet" });
    expect(of("outside")).toEqual([{ path: "routers.5._interfaces.0.fixed_ips.0.ip_address", message: "router outside: 10.10.11.1 is not in subnet 10.10.10.0/24" }]);
    expect(of("leading-zero")).toEqual([{ path: "routers.6._floatingips.0.floating_ip_address", message: "router leading-zero: not a valid IPv4 address (floating IPs are IPv4)" }]);
    expect(of("v6-fip")).toEqual([{ path: "routers.7._floatingips.0.fixed_ip_address", message: "router v6-fip: not a valid IPv4 address (floating IPs are IPv4)" }]);
    expect(of("bad-port-id")[0]).toMatchObject({ path: "routers.8._interfaces.0.id" });
    expect(problems.every((p) => p.source === "routers.json")).toBe(true);
  });

  it("refuses duplicate floating IPs, two floating IPs on one fixed IP, colliding device names and duplicate routers", () => {
    const r = clone();
    r._floatingips.push({ ...r._floatingips[0], id: "other" });
    const s = clone();
    s.id = "collide";
    s._interfaces.push({ ...s._interfaces[0], id: "c0ffee00-11-different-tail" });
    const { problems } = parse([r, s, seed, seed]);
    expect(problems.map((p) => [p.resource, p.path])).toEqual([
      [seed.id, "routers.0._floatingips.1.floating_ip_address"],
      [seed.id, "routers.0._floatingips.1.fixed_ip_address"],
      ["collide", "routers.1._interfaces.1.id"],
      [seed.id, "routers.3.id"],
    ]);
    expect(problems[2]!.message).toMatch(/would share device qr-c0ffee00-11/);
  });

  it("an entry without a readable id is a problem that names no router; an id too long for a namespace is refused", () => {
    const long = clone();
    long.id = "x".repeat(57);
    const { problems } = parse(["nope", { gw_port: null }, long]);
    expect(problems[0]).toEqual({ source: "routers.json", path: "routers.0", message: "expected a router object" });
    expect(problems[1]).toMatchObject({ path: "routers.1.id" });
    expect(problems[1]!.resource).toBeUndefined();
    expect(problems[2]).toMatchObject({ path: "routers.2.id", resource: long.id });
  });

  it("leaves out a router that is administratively down, as the server does", () => {
    const r = clone();
    r.admin_state_up = false;
    expect(parse([r])).toEqual({ resources: new Map(), problems: [], held: new Map() });
  });

  it("with a cache, an unchanged router keeps its parsed object and a bad one keeps its path by position", () => {
    const cache = new RouterParseCache();
    const opts = { namespacePrefix: "qrouter-", cache };
    const bad = clone();
    bad.id = "bad";
    bad._floatingips[0].fixed_ip_address = "x";
    const first = parseRouters({ routers: [clone(), bad] }, "a.json", opts);
    const changed = clone();
    changed.enable_snat = false;
    const second = parseRouters({ routers: [clone(), changed.enable_snat === false ? bad : bad] }, "a.json", opts);
    expect(second.resources.get(seed.id)).toBe(first.resources.get(seed.id));
    const third = parseRouters({ routers: [bad, changed] }, "b.json", opts);
    expect(third.resources.get(seed.id)).not.toBe(first.resources.get(seed.id));
    expect(third.resources.get(seed.id)!.enable_snat).toBe(false);
    expect(third.problems).toEqual([{ source: "b.json", path: "routers.0._floatingips.0.fixed_ip_address", resource: "bad", message: "router bad: not a valid IPv4 address (floating IPs are IPv4)" }]);
    expect(cache.routers.size).toBe(2);
  });

  it("with a cache, a changed router re-validates only its changed floating IPs; the others keep their objects", () => {
    const cache = new RouterParseCache();
    const opts = { namespacePrefix: "qrouter-", cache };
    const many = clone();
    const template = many._floatingips[0];
    many._floatingips = Array.from({ length: 50 }, (_, i) => ({ ...template, id: `fip-${i}`, floating_ip_address: `172.24.5.${i + 1}`, fixed_ip_address: `10.0.0.${i + 100}` }));
    const first = parseRouters({ routers: [many] }, "a.json", opts).resources.get(seed.id)!;
    const moved = structuredClone(many);
    moved._floatingips[7].fixed_ip_address = "10.0.0.99";
    const second = parseRouters({ routers: [moved] }, "a.json", opts).resources.get(seed.id)!;
    expect(second).not.toBe(first);
    expect(second._floatingips[7]).toMatchObject({ id: "fip-7", fixed_ip_address: "10.0.0.99" });
    expect(second._floatingips.filter((f, i) => f === first._floatingips[i])).toHaveLength(49);
    expect(cache.floatingIps.get(seed.id)!.keys).toHaveLength(50);
    // A cached entry that is fine on its own is still checked against its neighbours, with its own path.
    const dup = structuredClone(moved);
    dup._floatingips[9].fixed_ip_address = "10.0.0.99";
    const third = parseRouters({ routers: [dup] }, "a.json", opts);
    expect(third.problems).toEqual([expect.objectContaining({ path: "routers.0._floatingips.9.fixed_ip_address", message: expect.stringContaining("also _floatingips.7") })]);
    // And a bad one keeps its path by position when it moves.
    const bad = structuredClone(moved);
    bad._floatingips[3].floating_ip_address = "300.1.1.1";
    expect(parseRouters({ routers: [bad] }, "a.json", opts).problems[0]!.path).toBe("routers.0._floatingips.3.floating_ip_address");
    bad._floatingips.unshift(bad._floatingips.pop());
    expect(parseRouters({ routers: [bad] }, "a.json", opts).problems[0]!.path).toBe("routers.0._floatingips.4.floating_ip_address");
    // Entries added in front: the unchanged ones are found by their text and keep their objects.
    const grown = structuredClone(moved);
    grown._floatingips.unshift({ ...template, id: "fip-new", floating_ip_address: "172.24.5.200", fixed_ip_address: "10.0.0.200" });
    const again = parseRouters({ routers: [moved] }, "a.json", opts).resources.get(seed.id)!;
    const fourth = parseRouters({ routers: [grown] }, "a.json", opts).resources.get(seed.id)!;
    expect(fourth._floatingips).toHaveLength(51);
    expect(fourth._floatingips.slice(1).filter((f, i) => f === again._floatingips[i])).toHaveLength(50);
  });

  it("reports a bad floating IP together with a bad router field", () => {
    const r = clone();
    r.gw_port.network_id = "bad id";
    r._floatingips[0].floating_ip_address = "172.24.4.300";
    const { problems } = parse([r]);
    expect(problems.map((p) => p.path)).toEqual(["routers.0.gw_port.network_id", "routers.0._floatingips.0.floating_ip_address"]);
  });

  it("keeps addresses in canonical text, so comparisons with the kernel's listing hold", () => {
    const r = clone();
    r._interfaces[0].fixed_ips.push({ ip_address: "FD00:0:0::1", subnet_id: "v6" });
    r._interfaces[0].subnets.push({ id: "v6", cidr: "fd00::/64", gateway_ip: "FD00::FFFF" });
    const { resources, problems } = parse([r]);
    expect(problems).toEqual([]);
    const port = resources.get(seed.id)!._interfaces[0]!;
    expect(port.fixed_ips[1]).toMatchObject({ ip_address: "fd00::1", prefixlen: 64 });
    expect(port.subnets[1]!.gateway_ip).toBe("fd00::ffff");
  });
});
