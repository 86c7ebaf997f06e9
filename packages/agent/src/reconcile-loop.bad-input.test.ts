/**
 * What bad input gets (DESIGN §5a), at the loop: nothing an input problem names is removed or
 * loosened, in a running loop or a fresh one (a restart), and `plan` and `status` say so.
 */
import { describe, expect, it } from "vitest";
import { doc, kernelChain, metricValue, rs, ruleSetHandler, setup, until, WRAP } from "./rule-set-handler.test-support.js";

/** What an earlier run (another process) left in ns-a: r1's chain and its jump. */
const earlierRun = `*filter\n:${WRAP}-INPUT - [0:0]\n:${kernelChain("r1")} - [0:0]\n-A INPUT -j ${WRAP}-INPUT\n-A ${WRAP}-INPUT -j ${kernelChain("r1")}\n-A ${kernelChain("r1")} -j ACCEPT\nCOMMIT\n`;

describe("ReconcileLoop: what bad input gets", () => {
  it("a fresh loop keeps the kernel's copy of a resource whose input is invalid now, and fails closed one the kernel never had", async () => {
    const { fake, loop, rules, calls, metrics } = setup();
    fake.externalRestore({ namespace: "ns-a", family: 4 }, earlierRun);
    loop.update(doc({ id: "r1", namespace: "ns-a", rules: "oops" }, rs("r2", "ns-a", "-j RETURN"), { id: "r3", namespace: "ns-a", rules: [7] }), "state.yaml");
    const report = await loop.start();

    expect(report).toMatchObject({ namespaces: 1, applied: 1, failed: [], failedResources: [], stateRead: true });
    expect(report.problems.map((p) => p.resource)).toEqual(["r1", "r3"]);
    expect(rules("ns-a", "r1")).toEqual(["-j ACCEPT"]); // as the earlier run left it
    expect(rules("ns-a", "r3")).toEqual(["-j DROP"]); // never valid: filtered closed
    expect(rules("ns-a", "r2")).toEqual(["-j RETURN"]);
    expect(calls.at(-1)).toMatchObject({ full: true, held: ["r1", "r3"], complete: true });
    expect(await metricValue(metrics, "chainwarden_held_resources", { reason: "invalid" })).toBe(2);

    // Valid input replaces the stand-in: the id leaves `held` and is reconciled as changed.
    loop.update(doc(rs("r1", "ns-a", "-j LOG"), rs("r2", "ns-a", "-j RETURN"), { id: "r3", namespace: "ns-a", rules: [7] }), "state.yaml");
    await loop.idle();
    expect(calls.at(-1)).toMatchObject({ full: false, changed: ["r1"], held: ["r3"] });
    expect(rules("ns-a", "r1")).toEqual(["-j LOG"]);
    expect(await metricValue(metrics, "chainwarden_held_resources", { reason: "invalid" })).toBe(1);
  });

  it("a problem that names no resource makes the kind incomplete: nothing is removed, the stale cleanup waits", async () => {
    const { fake, loop, rules, calls, leftovers } = setup();
    leftovers.add("ns-old");
    fake.externalRestore({ namespace: "ns-a", family: 4 }, earlierRun);
    // An entry without an id: which resource it was cannot be known.
    loop.update(doc(rs("r2", "ns-a", "-j RETURN"), { rules: "oops" }), "state.yaml");
    const report = await loop.start();
    expect(report.problems).toHaveLength(1);
    expect(rules("ns-a", "r1")).toEqual(["-j ACCEPT"]); // not desired, but not known to be gone
    expect(rules("ns-a", "r2")).toEqual(["-j RETURN"]); // valid changes still apply
    expect(calls.at(-1)).toMatchObject({ complete: false });
    expect(leftovers).toEqual(new Set(["ns-old"]));

    // A complete state: now what it lacks goes.
    loop.update(doc(rs("r2", "ns-a", "-j RETURN")), "state.yaml");
    await loop.idle();
    expect(rules("ns-a", "r1")).toBeUndefined();
    await loop.syncOnce();
    expect(leftovers).toEqual(new Set());
  });

  it("an unknown top-level key is a problem with a suggestion and removes nothing", async () => {
    const { fake, loop, rules, leftovers } = setup();
    leftovers.add("ns-old");
    fake.externalRestore({ namespace: "ns-a", family: 4 }, earlierRun);
    // `rule_set:` for `rule_sets:` would otherwise read as "no rule sets".
    loop.update({ rule_set: [{ id: "r1", namespace: "ns-a", rules: ["-j LOG"] }] }, "state.yaml");
    const report = await loop.syncOnce();
    expect(report.problems).toEqual([
      expect.objectContaining({ source: "state.yaml", path: "rule_set", message: expect.stringMatching(/^unknown key "rule_set"; did you mean rule_sets\? \(this agent reads rule_sets\)/) }),
    ]);
    expect(rules("ns-a", "r1")).toEqual(["-j ACCEPT"]);
    expect(leftovers).toEqual(new Set(["ns-old"]));
  });

  it("before any state was read nothing is changed: no pass over kernel leftovers, no stale cleanup", async () => {
    const { fake, loop, rules, leftovers } = setup({ handler: ruleSetHandler({ home: ["ns-a"] }) });
    leftovers.add("ns-old");
    fake.externalRestore({ namespace: "ns-a", family: 4 }, earlierRun);
    loop.problem({ source: "/etc/state.yaml", path: "", message: "state file does not exist" });
    const report = await loop.syncOnce();
    expect(report).toMatchObject({ namespaces: 0, stateRead: false, failed: [] });
    expect(report.problems.map((p) => p.message)).toEqual(["state file does not exist"]);
    expect(fake.restoreCalls).toHaveLength(0);
    expect(rules("ns-a", "r1")).toEqual(["-j ACCEPT"]);
    expect(leftovers).toEqual(new Set(["ns-old"]));
    const plan = await loop.plan();
    expect(plan).toMatchObject({ stateRead: false, namespaces: [] });
  });

  it("a home namespace is reconciled on a full pass with nothing desired, so a complete empty state removes what an earlier run left", async () => {
    const { fake, loop, rules, calls } = setup({ handler: ruleSetHandler({ home: ["ns-a"] }) });
    fake.externalRestore({ namespace: "ns-a", family: 4 }, earlierRun);
    loop.update(doc(), "state.yaml");
    const plan = await loop.plan();
    expect(plan.namespaces).toHaveLength(1);
    expect(plan.namespaces[0]!.families[0]!.input).toContain(`-X ${kernelChain("r1")}`);
    expect((await loop.status()).namespaces[0]).toMatchObject({ namespace: "ns-a", inSync: false });
    await loop.syncOnce();
    expect(calls.at(-1)).toMatchObject({ namespace: "ns-a", full: true, changed: [], complete: true });
    expect(rules("ns-a", "r1")).toBeUndefined();
    expect((await loop.status()).namespaces[0]).toMatchObject({ namespace: "ns-a", inSync: true });
  });

  it("plan and status list what the stale cleanup would remove, and count it as out of sync; nothing is removed", async () => {
    const { loop, leftovers } = setup();
    leftovers.add("ns-old");
    loop.update(doc(rs("r1", "ns-a", "-j ACCEPT")), "state.yaml");
    const plan = await loop.plan();
    expect(plan.namespaces.find((p) => p.stale)).toEqual({
      namespace: "ns-old",
      resources: [],
      held: [],
      families: [],
      actions: [{ verb: "remove", object: "namespace", name: "ns-old" }],
      stale: true,
    });
    const status = await loop.status();
    expect(status.namespaces.find((s) => s.namespace === "ns-old")).toMatchObject({ stale: true, inSync: false });
    expect(leftovers).toEqual(new Set(["ns-old"]));
  });

  it("plan and status report invalid input, and status counts a held resource as out of sync", async () => {
    const { fake, loop } = setup();
    fake.externalRestore({ namespace: "ns-a", family: 4 }, earlierRun);
    loop.update(doc({ id: "r1", namespace: "ns-a", rules: "oops" }), "state.yaml");
    const plan = await loop.plan();
    expect(plan.problems.map((p) => p.resource)).toEqual(["r1"]);
    expect(plan.namespaces[0]).toMatchObject({ namespace: "ns-a", held: ["rule_set/r1"] });
    // The kernel's copy is kept: nothing to send for it (the manager's own layout is new here).
    expect(plan.namespaces[0]!.families.some((f) => f.input.includes(kernelChain("r1")))).toBe(false);
    const status = await loop.status();
    expect(status.problems.map((p) => p.resource)).toEqual(["r1"]);
    expect(status.namespaces[0]).toMatchObject({ namespace: "ns-a", held: ["rule_set/r1"], inSync: false });
    expect(fake.restoreCalls).toHaveLength(0); // nothing was sent
  });
});

describe("ReconcileLoop: a resource's failure stays with the resource", () => {
  /** Fails every restore that writes r2's marked rule, naming that line as the tool does. */
  function failR2(fake: ReturnType<typeof setup>["fake"]) {
    const state = { failing: true, failures: 0 };
    fake.onBeforeRestore((call, f) => {
      const line = call.input.split("\n").findIndex((l) => l.startsWith(`-A ${kernelChain("r2")} -s 10.9.9.9/32`));
      if (!state.failing || line < 0) return;
      state.failures++;
      f.failNextRestore({ exitCode: 2, stderr: `iptables-restore v1.8.9 (nf_tables): line ${line + 1} failed\n` });
    });
    return state;
  }

  it("holds the resource the failing line belongs to, lands the rest of the namespace at once, retries it alone", async () => {
    // One namespace at a time: the fake's injected failure goes to the next restore of any namespace.
    const { fake, loop, rules, metrics } = setup({ config: { retry_initial_delay_ms: 40, retry_max_delay_ms: 200, max_parallel_namespaces: 1 } });
    const r2 = failR2(fake);
    loop.update(doc(rs("r1", "ns-a", "-j ACCEPT"), rs("r2", "ns-a", "-s 10.9.9.9/32 -j DROP"), rs("b1", "ns-b", "-j RETURN")), "state.yaml");
    const report = await loop.start();

    expect(report.failed).toEqual([]);
    expect(report.failedResources.map((f) => [f.namespace, f.resource, f.error.constructor.name])).toEqual([["ns-a", "rule_set/r2", "RestoreError"]]);
    expect(rules("ns-a", "r1")).toEqual(["-j ACCEPT"]);
    expect(rules("ns-a", "r2")).toEqual(["-j DROP"]); // held, nothing in the kernel: closed
    expect(rules("ns-b", "b1")).toEqual(["-j RETURN"]);
    expect(await metricValue(metrics, "chainwarden_held_resources", { reason: "failed" })).toBe(1);
    expect(await metricValue(metrics, "chainwarden_resource_failures_total", { kind: "rule_set" })).toBe(1);

    // Retried alone while it still fails (backoff grows), the rest untouched.
    await until(() => r2.failures >= 3, 3_000);
    expect(rules("ns-a", "r1")).toEqual(["-j ACCEPT"]);
    // Once it can apply, it does, and is no longer held.
    r2.failing = false;
    await until(() => (rules("ns-a", "r2") ?? [])[0] === "-s 10.9.9.9/32 -j DROP", 3_000);
    await loop.idle();
    expect(await metricValue(metrics, "chainwarden_held_resources", { reason: "failed" })).toBe(0);
    expect((await loop.syncOnce()).failedResources).toEqual([]);
  });

  it("apply --once (a loop never started) reports the failed resource and applies the rest", async () => {
    const { fake, loop, rules } = setup();
    failR2(fake);
    loop.update(doc(rs("r1", "ns-a", "-j ACCEPT"), rs("r2", "ns-a", "-s 10.9.9.9/32 -j DROP")), "state.yaml");
    const report = await loop.syncOnce();
    expect(report.failed).toEqual([]);
    expect(report.failedResources.map((f) => f.resource)).toEqual(["rule_set/r2"]);
    expect(rules("ns-a", "r1")).toEqual(["-j ACCEPT"]);
    expect(rules("ns-a", "r2")).toEqual(["-j DROP"]);
  });
});
