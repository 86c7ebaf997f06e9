/**
 * The reconcile loop against real iptables (nf_tables) in a network namespace the test creates and
 * always deletes. Nothing here touches the host namespace's rules.
 */
import { ExecaRunner } from "@chainwarden/core";
import { createNetns, isRoot, type TestNetns } from "@chainwarden/testing";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentMetrics } from "./agent-metrics.js";
import { baseConfigSchema, type AgentConfig } from "./config-schema.js";
import type { ParsedResources, ResourceHandler, StateDocument } from "./extension-points.js";
import { ReconcileLoop } from "./reconcile-loop.js";

interface RuleSet {
  id: string;
  namespace: string;
  rules: string[];
}

/** rule_set → one filter chain per resource, jumped to from the wrapped INPUT chain. */
const handler: ResourceHandler<RuleSet> = {
  kind: "rule_set",
  documentKeys: ["rule_sets"],
  parse(document: StateDocument): ParsedResources<RuleSet> {
    const resources = new Map<string, RuleSet>();
    for (const r of (document.rule_sets ?? []) as RuleSet[]) resources.set(r.id, r);
    return { resources, problems: [] };
  },
  namespaceOf: (r) => r.namespace,
  async reconcile(context, request) {
    const filter = context.manager().ipv4.filter!;
    for (const id of request.removed.keys()) filter.removeChain(`rs-${id}`);
    for (const id of request.changed) {
      const chain = `rs-${id}`;
      if (filter.hasChain(chain)) filter.emptyChain(chain);
      else {
        filter.addChain(chain);
        filter.addRule("INPUT", `-j $${chain}`);
      }
      for (const rule of request.desired.get(id)!.rules) filter.addRule(chain, rule);
    }
  },
};

/** iptables-save without its `#` lines (they carry timestamps) and counters. */
async function save(netns: TestNetns): Promise<string> {
  const out: string[] = [];
  for (const tool of ["iptables-save", "ip6tables-save"]) {
    const r = await netns.exec([tool]);
    out.push(r.stdout.split("\n").filter((l) => !l.startsWith("#")).map((l) => l.replace(/ \[\d+:\d+\]$/, "")).join("\n"));
  }
  return out.join("\n");
}

describe("ReconcileLoop on the real kernel (nft)", () => {
  let netns: TestNetns;
  let loop: ReconcileLoop | undefined;

  beforeAll(async () => {
    if (!isRoot()) throw new Error("this test programs iptables in a network namespace: run it as root");
    netns = await createNetns("cw-loop");
  });
  afterAll(async () => {
    await loop?.stop();
    await netns?.delete();
  });

  it("programs a namespace, applies a change, and plan() changes nothing", async () => {
    const config = baseConfigSchema.parse({ wrap_name: "cw-test", backend: "nft", resync_interval: 0, coalesce_ms: 10 }) as AgentConfig;
    loop = new ReconcileLoop({
      handlers: [handler as ResourceHandler],
      observers: [],
      runner: new ExecaRunner({ backend: "nft" }),
      logger: pino({ level: "silent" }),
      metrics: new AgentMetrics(),
      config,
    });
    const ns = netns.name;
    loop.update({ rule_sets: [{ id: "r1", namespace: ns, rules: ["-s 10.1.2.3 -p tcp --dport 22 -j ACCEPT"] }, { id: "r2", namespace: ns, rules: ["-j DROP"] }] }, "test");
    const report = await loop.start();
    expect(report).toMatchObject({ namespaces: 1, applied: 1, failed: [] });

    const v4 = (await netns.exec(["iptables-save", "-t", "filter"])).stdout;
    expect(v4).toContain("-A cw-test-INPUT -j cw-test-rs-r1");
    expect(v4).toContain("-A cw-test-rs-r1 -s 10.1.2.3/32 -p tcp -m tcp --dport 22 -j ACCEPT");
    expect(v4).toContain("-A cw-test-rs-r2 -j DROP");
    expect((await netns.exec(["ip6tables-save", "-t", "filter"])).stdout).toContain("-A FORWARD -j neutron-filter-top");

    // A change is applied incrementally.
    loop.update({ rule_sets: [{ id: "r1", namespace: ns, rules: ["-s 10.1.2.3 -p tcp --dport 22 -j ACCEPT", "-j LOG"] }] }, "test");
    await loop.idle();
    const changed = (await netns.exec(["iptables-save", "-t", "filter"])).stdout;
    expect(changed).toContain("-A cw-test-rs-r1 -j LOG");
    expect(changed).not.toContain("cw-test-rs-r2");

    // plan() reads the kernel with fresh managers, finds nothing to do, and changes nothing.
    const before = await save(netns);
    const plans = (await loop.plan()).namespaces;
    expect(plans).toHaveLength(1);
    expect(plans[0]!.error).toBeUndefined();
    expect(plans[0]!.families.map((f) => [f.family, f.lines, f.input])).toEqual([
      [4, 0, ""],
      [6, 0, ""],
    ]);
    expect(await save(netns)).toBe(before);

    const status = (await loop.status()).namespaces;
    expect(status).toEqual([expect.objectContaining({ namespace: ns, exists: true, inSync: true, pendingLines: 0 })]);
  });
});
