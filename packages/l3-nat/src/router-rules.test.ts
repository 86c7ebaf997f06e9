import { IptablesManager } from "@chainwarden/core";
import { FakeIptablesRunner } from "@chainwarden/testing";
import { describe, expect, it } from "vitest";
import { parseRouter, type Router } from "./router.js";
import { RouterRules, type RouterRulesOptions } from "./router-rules.js";

const NS = "qrouter-r1";

function router(overrides: Record<string, unknown> = {}): Router {
  const { router, issues } = parseRouter({
    id: "r1",
    enable_snat: true,
    gw_port: {
      id: "a1b2c3d4-0001-4e5f-8a9b-0c1d2e3f4a5b",
      network_id: "ext-net",
      fixed_ips: [{ ip_address: "200.200.128.2", subnet_id: "ext" }],
      subnets: [{ id: "ext", cidr: "200.200.0.0/16", gateway_ip: "200.200.0.1" }],
    },
    _interfaces: [
      {
        id: "c0ffee00-1111-4222-8333-444455556666",
        network_id: "int-net",
        fixed_ips: [{ ip_address: "10.0.0.1", subnet_id: "int" }],
        subnets: [{ id: "int", cidr: "10.0.0.0/8", gateway_ip: "10.0.0.1" }],
      },
    ],
    _floatingips: [],
    ...overrides,
  });
  if (!router) throw new Error(JSON.stringify(issues));
  return router;
}

/** FIP n: 200.200.(n>>8).(n&255)+... → 10.(n>>8)... — unique floating and fixed addresses. */
function fips(count: number, start = 0) {
  return Array.from({ length: count }, (_, k) => {
    const n = start + k + 10;
    return { id: `fip-${n}`, floating_ip_address: `200.200.${n >> 8}.${n & 255}`, fixed_ip_address: `10.1.${n >> 8}.${n & 255}` };
  });
}

function harness(options: Partial<RouterRulesOptions> = {}) {
  const runner = new FakeIptablesRunner({ variant: "nft", namespaces: [NS] });
  const manager = new IptablesManager({ runner, namespace: NS, wrapName: "neutron-l3-agent", strict: true });
  const rules = new RouterRules(manager, "router/r1", { enableMetadataProxy: true, metadataPort: 9697, randomFully: true, ...options });
  const nat = (chain: string) => runner.rules({ namespace: NS, family: 4 }, "nat", `neutron-l3-agent-${chain}`) ?? [];
  const apply = async (r: Router) => {
    const change = rules.update(r);
    const result = await manager.apply();
    return { change, result };
  };
  return { runner, manager, rules, nat, apply };
}

describe("RouterRules", () => {
  it("is idempotent: the same router again changes nothing and sends nothing", async () => {
    const h = harness();
    await h.apply(router({ _floatingips: fips(3) }));
    const again = await h.apply(router({ _floatingips: fips(3) }));
    // The REDIRECT moves to the top on the second update, as in Neutron; nothing else.
    expect(again.change.groups).toEqual(["metadata-redirect"]);
    const third = await h.apply(router({ _floatingips: fips(3) }));
    expect(third.change).toEqual({ groups: [], rulesAdded: 0, rulesRemoved: 0 });
    expect(third.result.lines).toBe(0);
  });

  // How long it takes is measured by `npm run bench -- --cases=l3`, not asserted here.
  it("one changed floating IP on a router with 1,000 touches only its rules: at most 10 lines", async () => {
    const h = harness();
    const many = fips(1000);
    await h.apply(router({ _floatingips: many }));
    await h.apply(router({ _floatingips: many }));
    const moved = many.map((f, i) => (i === 500 ? { ...f, fixed_ip_address: "10.9.9.9" } : f));
    const { change, result } = await h.apply(router({ _floatingips: moved }));
    expect(change.groups).toEqual([`fip:${many[500]!.floating_ip_address}`]);
    expect(change).toMatchObject({ rulesAdded: 3, rulesRemoved: 3 });
    expect(result.lines).toBeLessThanOrEqual(10);
    expect(h.nat("PREROUTING")).toContain(`-d ${many[500]!.floating_ip_address}/32 -j DNAT --to-destination 10.9.9.9`);
    expect(h.nat("PREROUTING")).toHaveLength(1001);

    // Adding and removing one floating IP are as small.
    const added = await h.apply(router({ _floatingips: [...moved, ...fips(1, 2000)] }));
    expect(added.result.lines).toBe(3);
    const removed = await h.apply(router({ _floatingips: moved.filter((_, i) => i !== 7) }));
    expect(removed.result.lines).toBeLessThanOrEqual(6);
    expect(h.nat("PREROUTING")).toHaveLength(1000);
  });

  it("removes the floating IP rules when the gateway and the floating IPs go in one update (Neutron leaves them)", async () => {
    const h = harness();
    await h.apply(router({ _floatingips: fips(2) }));
    expect(h.nat("PREROUTING").filter((r) => r.includes("DNAT"))).toHaveLength(2);
    await h.apply(router({ gw_port: null, _floatingips: [] }));
    expect(h.nat("PREROUTING")).toEqual(["-d 169.254.169.254/32 -i qr-+ -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 9697"]);
    expect(h.nat("OUTPUT")).toEqual([]);
    expect(h.nat("float-snat")).toEqual([]);
    expect(h.nat("snat")).toEqual(["-j neutron-l3-agent-float-snat"]);
    expect(h.nat("POSTROUTING")).toEqual([]);
  });

  it("serves no floating IP without a gateway", async () => {
    const h = harness();
    await h.apply(router({ gw_port: null, _floatingips: fips(2) }));
    expect(h.nat("OUTPUT")).toEqual([]);
    expect(h.rules.programmedFloatingIps()).toEqual([]);
  });

  it("writes SNAT without --random-fully when the host's iptables lacks it", async () => {
    const h = harness({ randomFully: false });
    await h.apply(router({ _floatingips: fips(1) }));
    expect(h.nat("snat")).toEqual([
      "-j neutron-l3-agent-float-snat",
      "-o qg-a1b2c3d4-00 -j SNAT --to-source 200.200.128.2",
      "-m mark ! --mark 0x2/0xffff -m conntrack --ctstate DNAT -j SNAT --to-source 200.200.128.2",
    ]);
    expect(h.nat("float-snat")).toEqual(["-s 10.1.0.10/32 -j SNAT --to-source 200.200.0.10"]);
  });

  it("without the metadata proxy keeps the mark but has no INPUT or REDIRECT rules; the port is configurable", async () => {
    const off = harness({ enableMetadataProxy: false });
    await off.apply(router());
    expect(off.nat("PREROUTING")).toEqual([]);
    expect(off.runner.rules({ namespace: NS, family: 4 }, "filter", "neutron-l3-agent-INPUT")).toEqual([]);
    expect(off.runner.rules({ namespace: NS, family: 4 }, "mangle", "neutron-l3-agent-PREROUTING")).toContain(
      "-d 169.254.169.254/32 -i qr-+ -p tcp -m tcp --dport 80 -j MARK --set-xmark 0x1/0xffff",
    );
    const other = harness({ metadataPort: 8775 });
    await other.apply(router());
    expect(other.nat("PREROUTING")).toEqual(["-d 169.254.169.254/32 -i qr-+ -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 8775"]);
    expect(other.runner.rules({ namespace: NS, family: 4 }, "filter", "neutron-l3-agent-INPUT")).toContain("-p tcp -m tcp --dport 8775 -j DROP");
  });

  it("never touches rules others put into the same chains (router extensions)", async () => {
    const h = harness();
    await h.apply(router({ _floatingips: fips(1) }));
    h.manager.table(4, "nat").addRule("POSTROUTING", "-s 10.99.0.0/16 -j ACCEPT");
    h.manager.table(4, "filter").addRule("FORWARD", "-o qr-+ -j DROP");
    await h.manager.apply();
    await h.apply(router({ enable_snat: false, _floatingips: [] }));
    expect(h.nat("POSTROUTING")).toEqual(["-s 10.99.0.0/16 -j ACCEPT", "! -o qg-a1b2c3d4-00 -m conntrack ! --ctstate DNAT -j ACCEPT"]);
    expect(h.runner.rules({ namespace: NS, family: 4 }, "filter", "neutron-l3-agent-FORWARD")).toContain("-o qr-+ -j DROP");
  });

  it("a fresh manager over a namespace it already programmed sends nothing (restart)", async () => {
    const h = harness();
    await h.apply(router({ _floatingips: fips(5) }));
    const manager = new IptablesManager({ runner: h.runner, namespace: NS, wrapName: "neutron-l3-agent", strict: true });
    const fresh = new RouterRules(manager, "router/r1", { enableMetadataProxy: true, metadataPort: 9697, randomFully: true });
    fresh.update(router({ _floatingips: fips(5) }));
    expect((await manager.apply()).lines).toBe(0);
  });

  it("clear() removes every rule the router added and leaves the manager's own layout", async () => {
    const h = harness();
    await h.apply(router({ _floatingips: fips(2) }));
    h.rules.clear();
    await h.manager.apply();
    const bare = new FakeIptablesRunner({ variant: "nft", namespaces: [NS] });
    await new IptablesManager({ runner: bare, namespace: NS, wrapName: "neutron-l3-agent" }).apply();
    for (const family of [4, 6] as const) expect(h.runner.dump({ namespace: NS, family })).toBe(bare.dump({ namespace: NS, family }));
  });
});
