/**
 * Golden tests: the seed's v1 example must give the seed's filter table exactly, and every
 * `fwaas_*` scenario of the Neutron reference (`referenceDir()`, real neutron-fwaas Zed) replayed step
 * by step must give the reference's normalized iptables-save / ip6tables-save of each router. Both on the honest fake
 * and on the real kernel (nft and legacy), in namespaces the test creates and always deletes.
 *
 * The router's own l3 rules come from `@chainwarden/l3-nat`'s `RouterRules` on the same manager, as
 * the l3 agent writes them before it calls its router extensions; the router step is compared too.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { IptablesManager, normalizeSave, type Backend } from "@chainwarden/core";
import { parseRouter, RouterRules } from "@chainwarden/l3-nat";
import { isRoot } from "@chainwarden/testing";
import { describe, expect, it } from "vitest";
import { parseFirewallGroup, type FirewallGroup } from "./firewall-group.js";
import { parseFirewall } from "./firewall.js";
import { RouterFirewall } from "./router-firewall.js";
import { fakeHost, kernelHost, type GoldenHost } from "./test-support/golden-host.js";
import { loadFwaasScenarios, type FwaasScenario, type RouterDict } from "./test-support/reference-scenario.js";

const SEED = join(import.meta.dirname, "../../testing/test-fixtures/seeds/002_e4aa6c92554ec131.txt");

/** The seed's `ip netns exec qrouter-… iptables-save` listing (its only table), normalized. */
function seedFilterListing(): string {
  const text = readFileSync(SEED, "utf8");
  const start = text.indexOf("*filter", text.indexOf("ip netns exec qrouter-"));
  const end = text.indexOf("\n", text.indexOf("-A neutron-l3-agent-ov480daec7b -p icmp -j DROP", start));
  return normalizeSave(`${text.slice(start, end)}\nCOMMIT\n`);
}

/** The seed's example as Neutron's v1 agent receives it (`firewall-rule-create --protocol icmp --action deny`, ...). */
const seedFirewall = {
  id: "80daec7b-8167-459e-b915-da02832a248b",
  tenant_id: "1b6e214ab4594fd9b57017fa0af0ff62",
  admin_state_up: true,
  status: "PENDING_CREATE",
  firewall_policy: {
    id: "77ea7104-557c-47bb-9b2f-810d70897c43",
    name: "kong_test_policy",
    audited: false,
    firewall_rules: [
      {
        id: "138cd8cd-b83d-433e-b673-9c8af3109c74",
        action: "deny",
        description: "",
        destination_ip_address: null,
        destination_port: null,
        enabled: true,
        ip_version: 4,
        name: "",
        protocol: "icmp",
        shared: false,
        source_ip_address: null,
        source_port: null,
      },
    ],
  },
};

function filterBlock(save: string): string {
  const n = normalizeSave(save);
  const start = n.indexOf("*filter");
  return n.slice(start, n.indexOf("COMMIT\n", start) + "COMMIT\n".length);
}

async function seedV1(host: GoldenHost): Promise<{ filter: string; second: number }> {
  const ns = await host.namespace("qrouter-b4124c09");
  // The Havana l3 agent's own rule of the seed's listing: the metadata proxy on 8775.
  const manager = new IptablesManager({ runner: host.runner, namespace: ns, wrapName: "neutron-l3-agent", strict: true });
  manager.table(4, "filter").addRule("INPUT", "-d 127.0.0.1/32 -p tcp -m tcp --dport 8775 -j ACCEPT");
  const { firewall, issues } = parseFirewall(seedFirewall);
  expect(issues).toEqual([]);
  const driver = new RouterFirewall(manager, { resource: "b4124c09-680e-4427-b758-767c8ffe794b" });
  await manager.deferApply(() => driver.sync({ ports: ["e049dac2-port"], firewalls: [firewall!] }));
  const { result } = await manager.deferApply(() => driver.sync({ ports: ["e049dac2-port"], firewalls: [firewall!] }));
  return { filter: filterBlock(await host.runner.save({ namespace: ns, family: 4 })), second: result.lines };
}

interface ReplayOutput {
  title: string;
  routers: Map<string, { iptables: string; ip6tables: string }>;
  /** Lines a repeated sync of the same state sent. */
  secondLines: number;
}

/** Replays a scenario: routers get their l3 base, firewall groups go through `RouterFirewall`. */
async function replay(scenario: FwaasScenario, host: GoldenHost): Promise<ReplayOutput[]> {
  const version = await host.runner.version();
  const routers = new Map<string, { dict: RouterDict; ns: string; manager: IptablesManager; rules: RouterRules; driver: RouterFirewall }>();
  const groups = new Map<string, FirewallGroup>();
  const out: ReplayOutput[] = [];
  const syncAll = async () => {
    let lines = 0;
    for (const r of routers.values()) {
      const input = { ports: (r.dict._interfaces ?? []).map((p) => p.id), groups: [...groups.values()] };
      await r.manager.deferApply(() => r.driver.sync(input));
      lines += (await r.manager.deferApply(() => r.driver.sync(input))).result.lines;
    }
    return lines;
  };
  for (const [i, step] of scenario.steps.entries()) {
    const expected = scenario.expected[i]!;
    switch (step.op) {
      case "add_router":
      case "update_router":
        for (const dict of step.routers) {
          const { router, issues } = parseRouter(dict);
          expect(issues).toEqual([]);
          let r = routers.get(dict.id);
          if (!r) {
            const ns = await host.namespace(`r${dict.id.slice(0, 8)}`);
            const manager = new IptablesManager({ runner: host.runner, namespace: ns, wrapName: "neutron-l3-agent", strict: true });
            const rules = new RouterRules(manager, `router/${dict.id}`, { enableMetadataProxy: true, metadataPort: 9697, randomFully: version.supportsRandomFully });
            r = { dict, ns, manager, rules, driver: new RouterFirewall(manager, { resource: dict.id }) };
            routers.set(dict.id, r);
          }
          r.dict = dict;
          r.rules.update(router!);
        }
        break;
      case "fwg_create":
      case "fwg_update": {
        const { group, issues } = parseFirewallGroup(step.group);
        expect(issues).toEqual([]);
        groups.set(group!.id, group!);
        break;
      }
      case "fwg_delete":
        groups.delete(step.groupId);
        break;
      default:
        throw new Error(`${scenario.name}: step ${step.op} needs the l3 plugin (not replayed by this harness)`);
    }
    const secondLines = await syncAll();
    const saves = new Map<string, { iptables: string; ip6tables: string }>();
    for (const [id, r] of routers) {
      saves.set(id, {
        iptables: normalizeSave(await host.runner.save({ namespace: r.ns, family: 4 })),
        ip6tables: normalizeSave(await host.runner.save({ namespace: r.ns, family: 6 })),
      });
    }
    out.push({ title: expected.title, routers: saves, secondLines });
  }
  return out;
}

function compare(scenario: FwaasScenario, actual: ReplayOutput[]): void {
  scenario.expected.forEach((want, i) => {
    const got = actual[i]!;
    expect([...got.routers.keys()].sort(), `${want.title}: routers`).toEqual([...want.routers.keys()].sort());
    for (const [id, sections] of want.routers) {
      expect(got.routers.get(id)!.iptables, `${want.title}: router ${id} iptables-save`).toBe(sections.iptables);
      expect(got.routers.get(id)!.ip6tables, `${want.title}: router ${id} ip6tables-save`).toBe(sections.ip6tables);
    }
    expect(got.secondLines, `${want.title}: a repeated sync sends nothing`).toBe(0);
  });
}

const scenarios = loadFwaasScenarios();

describe.each(["nft", "legacy"] as Backend[])("golden on the fake (%s)", (variant) => {
  it("the seed's v1 firewall gives the seed's filter table exactly", async () => {
    const host = fakeHost(variant);
    const { filter, second } = await seedV1(host);
    expect(filter).toBe(seedFilterListing());
    expect(second).toBe(0);
  });

  it.each(scenarios.map((s) => [s.name, s] as const))("reference scenario %s", async (_name, scenario) => {
    compare(scenario, await replay(scenario, fakeHost(variant)));
  });
});

describe.runIf(isRoot()).each(["nft", "legacy"] as Backend[])("golden on the kernel (%s)", (backend) => {
  it("the seed's v1 firewall gives the seed's filter table exactly", async () => {
    const host = kernelHost(backend);
    try {
      const { filter, second } = await seedV1(host);
      expect(filter).toBe(seedFilterListing());
      expect(second).toBe(0);
    } finally {
      await host.cleanup();
    }
  });

  it.each(scenarios.map((s) => [s.name, s] as const))("reference scenario %s", async (_name, scenario) => {
    const host = kernelHost(backend);
    try {
      compare(scenario, await replay(scenario, host));
    } finally {
      await host.cleanup();
    }
  });
});

describe("the seed listing", () => {
  it("is the four FORWARD jumps and the firewall's chains the issue names", () => {
    const listing = seedFilterListing();
    expect(listing.split("\n").filter((l) => l.startsWith("-A neutron-l3-agent-FORWARD"))).toEqual([
      "-A neutron-l3-agent-FORWARD -o qr-+ -j neutron-l3-agent-iv480daec7b",
      "-A neutron-l3-agent-FORWARD -i qr-+ -j neutron-l3-agent-ov480daec7b",
      "-A neutron-l3-agent-FORWARD -o qr-+ -j neutron-l3-agent-fwaas-defau",
      "-A neutron-l3-agent-FORWARD -i qr-+ -j neutron-l3-agent-fwaas-defau",
    ]);
  });
});
