import { FakeHost } from "@chainwarden/testing";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { DesiredState, type NsKey } from "./desired-state.js";
import { DryRun, namespaceStatus } from "./dry-run.js";
import type { HostAction, ResourceHandler } from "./extension-points.js";
import type { NamespacePlan } from "./loop-reports.js";
import { namespaceWork } from "./namespace-work.js";
import { config, doc, rs, ruleSetHandler, WRAP } from "./rule-set-handler.test-support.js";

function setup(options: { stale?: HostAction[]; throwIn?: string; throwCode?: string } = {}) {
  const host = new FakeHost({ namespaces: ["ns-a"] });
  const fake = host.iptables;
  const { handler } = ruleSetHandler({
    beforeReconcile: (ns) => {
      if (ns === options.throwIn) throw Object.assign(new Error(`cannot plan ${ns}`), options.throwCode ? { code: options.throwCode } : {});
    },
  });
  const handlers = [handler as ResourceHandler];
  const desired = new DesiredState(handlers, undefined);
  const dryRun = new DryRun({
    runner: host,
    logger: pino({ level: "silent" }),
    config: config(),
    source: {
      namespaces: () => [...desired.namespaces()],
      work: (ns: NsKey, isolate) =>
        namespaceWork({
          handlers,
          desired: desired.in(ns),
          full: true,
          heldIn: (kind, want) => new Set([...want.keys()].filter((id) => desired.isHeld(kind, id) || isolate?.held?.get(kind)?.has(id))),
          complete: (k) => desired.complete(k),
          ...(isolate?.benched ? { benched: isolate.benched } : {}),
        }),
      staleActions: async () => options.stale ?? [],
      problems: () => desired.problems.map((p) => p.problem),
      stateRead: () => desired.read,
    },
  });
  return { fake, desired, dryRun };
}

describe("DryRun", () => {
  it("plans every namespace from the kernel as it is and sends nothing", async () => {
    const { fake, desired, dryRun } = setup();
    desired.update(doc(rs("r1", "ns-a", "-j ACCEPT"), rs("r2", "ns-gone", "-j DROP")), "test");
    const report = await dryRun.plan();
    expect(fake.restoreCalls).toEqual([]);
    expect(report.stateRead).toBe(true);
    const a = report.namespaces.find((p) => p.namespace === "ns-a")!;
    expect(a.resources).toEqual(["rule_set/r1"]);
    expect(a.families).toHaveLength(1);
    expect(a.families[0]!.input).toContain(`-A ${WRAP}-rs-r1 -j ACCEPT`);
    expect(a.error).toBeUndefined();

    const status = await dryRun.status();
    expect(status.namespaces.map((s) => [s.namespace, s.exists, s.inSync, s.pendingLines > 0, s.rules > 0])).toEqual([
      ["ns-a", true, false, true, true],
      ["ns-gone", false, false, true, true],
    ]);
  });

  it("a handler that fails in one namespace is named in its plan, held and then skipped there as a run would; the others plan", async () => {
    const { desired, dryRun } = setup({ throwIn: "ns-a" });
    desired.update(doc(rs("r1", "ns-a", "-j ACCEPT"), rs("r2", "ns-b", "-j DROP")), "test");
    const plans = (await dryRun.plan()).namespaces;
    expect(plans.find((p) => p.namespace === "ns-a")).toMatchObject({ held: ["rule_set/r1"], failedHandlers: [{ kind: "rule_set", error: "cannot plan ns-a" }], families: [] });
    expect(plans.find((p) => p.namespace === "ns-a")!.error).toBeUndefined();
    expect(plans.find((p) => p.namespace === "ns-b")!.families).toHaveLength(1);
    expect((await dryRun.status()).namespaces.find((s) => s.namespace === "ns-a")).toMatchObject({ inSync: false, error: "the rule_set handler failed: cannot plan ns-a" });
  });

  it("a failure of the namespace itself (the kernel cannot be read) gives its plan an error and no families", async () => {
    const { desired, dryRun } = setup({ throwIn: "ns-a", throwCode: "SAVE_FAILED" });
    desired.update(doc(rs("r1", "ns-a", "-j ACCEPT")), "test");
    const plans = (await dryRun.plan()).namespaces;
    expect(plans.find((p) => p.namespace === "ns-a")).toMatchObject({ error: "cannot plan ns-a", families: [] });
    expect(plans.find((p) => p.namespace === "ns-a")!.failedHandlers).toBeUndefined();
    expect((await dryRun.status()).namespaces.find((s) => s.namespace === "ns-a")).toMatchObject({ inSync: false, error: "cannot plan ns-a" });
  });

  it("lists what the stale cleanups would remove, by namespace, and never plans those", async () => {
    const stale: HostAction[] = [{ verb: "remove", object: "namespace", name: "ns-old" }];
    const { desired, dryRun } = setup({ stale });
    desired.update(doc(), "test");
    expect((await dryRun.plan()).namespaces).toEqual([{ namespace: "ns-old", resources: [], held: [], families: [], actions: stale, stale: true }]);
    expect((await dryRun.status()).namespaces).toEqual([{ namespace: "ns-old", resources: [], held: [], exists: true, inSync: false, pendingLines: 0, stale: true, rules: 0, chains: 0 }]);
  });
});

describe("namespaceStatus", () => {
  const plan = (over: Partial<NamespacePlan> = {}): NamespacePlan => ({ namespace: "ns-a", resources: ["k/1"], held: [], families: [], actions: [], ...over });
  const counts = new Map([
    ["ipv4/filter", { rules: 4, chains: 2 }],
    ["ipv6/filter", { rules: 1, chains: 1 }],
  ]);

  it("in sync only with nothing to send, remove or hold, and no error", () => {
    expect(namespaceStatus(plan(), counts, true)).toEqual({ namespace: "ns-a", resources: ["k/1"], held: [], exists: true, inSync: true, pendingLines: 0, rules: 5, chains: 3 });
    expect(namespaceStatus(plan({ held: ["k/1"] }), counts, true).inSync).toBe(false);
    expect(namespaceStatus(plan({ actions: [{ verb: "stop", object: "metadata-proxy", name: "r1" }] }), counts, true).inSync).toBe(false);
    expect(namespaceStatus(plan({ actions: [{ verb: "wait", object: "port", name: "tap1" }] }), counts, true).inSync).toBe(true);
    expect(namespaceStatus(plan({ error: "boom" }), counts, true)).toMatchObject({ inSync: false, error: "boom" });
    expect(namespaceStatus(plan({ failedHandlers: [{ kind: "guard", plugin: "acme", error: "unreachable\nmore" }] }), counts, true)).toMatchObject({
      inSync: false,
      error: "the guard handler of plugin acme failed: unreachable",
    });
  });
});
