/**
 * A handler's failure is its own, on the real kernel (nf_tables) in a network namespace the test
 * creates and always deletes: two plugins' handlers share one namespace and wrap name; one throws
 * naming no resource. The other's rules land; the thrower's earlier rules stay exactly as they were.
 */
import { ExecaRunner } from "@chainwarden/core";
import { createNetns, isRoot, type TestNetns } from "@chainwarden/testing";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentMetrics } from "./agent-metrics.js";
import { baseConfigSchema, type AgentConfig } from "./config-schema.js";
import type { ResourceHandler, StateDocument } from "./extension-points.js";
import { ReconcileLoop } from "./reconcile-loop.js";

/** `<kind>s: { id: [rules] }` → chain `<prefix>-<id>` jumped to from the wrapped INPUT; held ids keep the kernel's copy. */
function chainsHandler(kind: string, prefix: string, namespace: () => string, failing?: { on: boolean }): ResourceHandler<string[]> {
  return {
    kind,
    documentKeys: [`${kind}s`],
    parse: (document: StateDocument) => ({ resources: new Map(Object.entries((document[`${kind}s`] ?? {}) as Record<string, string[]>)), problems: [] }),
    namespaceOf: () => namespace(),
    async reconcile(context, request) {
      const manager = context.manager();
      const filter = manager.table(4, "filter");
      // Half-built before it fails: none of this may reach the kernel.
      filter.addChain(`${prefix}-half`);
      filter.addRule("INPUT", `-j $${prefix}-half`);
      if (failing?.on) throw new Error(`${kind} backend unreachable`);
      filter.removeChain(`${prefix}-half`);
      for (const id of request.removed.keys()) filter.removeChain(`${prefix}-${id}`);
      const kernel = await manager.kernelChains(4, "filter");
      for (const [id, rules] of request.desired) {
        const resource = `${kind}/${id}`;
        filter.removeChain(`${prefix}-${id}`);
        filter.addChain(`${prefix}-${id}`, { resource });
        filter.addRule("INPUT", `-j $${prefix}-${id}`, { resource });
        const held = request.held.has(id) ? (kernel.get(`cw-iso-${prefix}-${id}`) ?? ["-j DROP"]) : rules;
        for (const rule of held) filter.addRule(`${prefix}-${id}`, rule, { resource });
      }
    },
  };
}

async function filterTable(netns: TestNetns): Promise<string[]> {
  const out = (await netns.exec(["iptables-save", "-t", "filter"])).stdout;
  return out.split("\n").filter((l) => l.startsWith("-A cw-iso-") || l.startsWith(":cw-iso-")).map((l) => l.replace(/ \[\d+:\d+\]$/, ""));
}

async function eventually(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error("condition not reached in time");
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("a handler's failure is its own, on the real kernel (nft)", () => {
  let netns: TestNetns;
  let loop: ReconcileLoop | undefined;

  beforeAll(async () => {
    if (!isRoot()) throw new Error("this test programs iptables in a network namespace: run it as root");
    netns = await createNetns("cw-iso");
  });
  afterAll(async () => {
    await loop?.stop();
    await netns?.delete();
  });

  it("two plugins in one namespace, one throws: the other's rules are in the kernel, the thrower's earlier rules stay as they were", async () => {
    const config = baseConfigSchema.parse({ wrap_name: "cw-iso", backend: "nft", use_ipv6: false, resync_interval: 0, coalesce_ms: 10, retry_initial_delay_ms: 50 }) as AgentConfig;
    const failing = { on: false };
    const ns = () => netns.name;
    loop = new ReconcileLoop({
      handlers: [chainsHandler("chain_set", "cs", ns) as ResourceHandler, chainsHandler("guard", "gd", ns, failing) as ResourceHandler],
      observers: [],
      runner: new ExecaRunner({ backend: "nft" }),
      logger: pino({ level: "silent" }),
      metrics: new AgentMetrics(),
      config,
      plugins: new Map([
        ["chain_set", "static-chains"],
        ["guard", "acme-guard"],
      ]),
    });
    loop.update({ chain_sets: { web: ["-p tcp -m tcp --dport 80 -j ACCEPT"] }, guards: { ssh: ["-p tcp -m tcp --dport 22 -j DROP"], old: ["-s 10.9.9.9/32 -j DROP"] } }, "test");
    // Passes of a loop not started: nothing retries between them.
    expect(await loop.syncOnce()).toMatchObject({ applied: 1, failed: [], failedHandlers: [] });
    const before = (await filterTable(netns)).filter((l) => l.includes("-gd-"));
    expect([...before].sort()).toEqual([
      "-A cw-iso-INPUT -j cw-iso-gd-old",
      "-A cw-iso-INPUT -j cw-iso-gd-ssh",
      "-A cw-iso-gd-old -s 10.9.9.9/32 -j DROP",
      "-A cw-iso-gd-ssh -p tcp -m tcp --dport 22 -j DROP",
      ":cw-iso-gd-old -",
      ":cw-iso-gd-ssh -",
    ]);

    // acme-guard fails from now on; both plugins' state changes.
    failing.on = true;
    loop.update({ chain_sets: { web: ["-p tcp -m tcp --dport 443 -j ACCEPT"], dns: ["-p udp -m udp --dport 53 -j ACCEPT"] }, guards: { ssh: ["-j ACCEPT"] } }, "test");
    const report = await loop.syncOnce();
    expect(report.failed).toEqual([]);
    expect(report.failedHandlers.map((f) => [f.kind, f.plugin, f.error.message])).toEqual([["guard", "acme-guard", "guard backend unreachable"]]);
    const after = await filterTable(netns);
    // static-chains' changes are in the kernel.
    expect(after).toContain("-A cw-iso-cs-web -p tcp -m tcp --dport 443 -j ACCEPT");
    expect(after).toContain("-A cw-iso-cs-dns -p udp -m udp --dport 53 -j ACCEPT");
    expect(after).not.toContain("-A cw-iso-cs-web -p tcp -m tcp --dport 80 -j ACCEPT");
    // acme-guard's rules are as they were (old, gone from the state, included), and nothing half-built landed.
    expect(after.filter((l) => l.includes("-gd-"))).toEqual(before);
    expect(after.join("\n")).not.toContain("half");

    // Started, its retry calls it again; once it works its state lands, and what it dropped goes.
    failing.on = false;
    await loop.start();
    await eventually(async () => (await filterTable(netns)).includes("-A cw-iso-gd-ssh -j ACCEPT"));
    await loop.idle();
    const healed = await filterTable(netns);
    expect(healed.filter((l) => l.includes("-gd-")).sort()).toEqual(["-A cw-iso-INPUT -j cw-iso-gd-ssh", "-A cw-iso-gd-ssh -j ACCEPT", ":cw-iso-gd-ssh -"]);
    expect(healed).toContain("-A cw-iso-cs-dns -p udp -m udp --dport 53 -j ACCEPT");
  });
});
