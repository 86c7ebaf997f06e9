import { FakeHost } from "@chainwarden/testing";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { AgentMetrics } from "./agent-metrics.js";
import type { ResourceHandler } from "./extension-points.js";
import { ReconcileLoop } from "./reconcile-loop.js";
import { accept, chainOf, config, doc, edits, kernelChain, loops, metricValue, rs, ruleSetHandler, setup, sleep, until, WRAP, type RuleSet } from "./rule-set-handler.test-support.js";

describe("ReconcileLoop", () => {
  it("initial sync applies every namespace, one restore per namespace and family", async () => {
    const { fake, loop, metrics, rules, input, events } = setup();
    loop.update(doc(rs("r1", "ns-a", "-s 10.0.0.1/32 -j ACCEPT"), rs("r2", "ns-a", "-p tcp --dport 22 -j DROP"), rs("r3", "ns-b", "-j RETURN")), "test");
    expect(fake.restoreCalls).toHaveLength(0); // nothing before start
    const report = await loop.start();
    expect(report).toEqual({ namespaces: 2, applied: 2, failed: [], failedResources: [], failedHandlers: [], stateRead: true, problems: [] });
    expect(fake.restoreCalls.map((c) => c.target).sort((a, b) => a.namespace!.localeCompare(b.namespace!))).toEqual([
      { namespace: "ns-a", family: 4 },
      { namespace: "ns-b", family: 4 },
    ]);
    expect(rules("ns-a", "r1")).toEqual(["-s 10.0.0.1/32 -j ACCEPT"]);
    expect(rules("ns-a", "r2")).toEqual(["-p tcp -m tcp --dport 22 -j DROP"]);
    expect(rules("ns-b", "r3")).toEqual(["-j RETURN"]);
    expect(input("ns-a")).toEqual([`-j ${kernelChain("r1")}`, `-j ${kernelChain("r2")}`]);
    expect(await metricValue(metrics, "chainwarden_last_successful_sync_timestamp_seconds")).toBeGreaterThan(0);
    expect(await metricValue(metrics, "chainwarden_restore_calls_total", { family: "ipv4" })).toBe(2);
    // Our 3 chains + the manager's own layout; rules: 3 resource rules + 3 jumps + layout.
    expect(await metricValue(metrics, "chainwarden_chains", { family: "ipv4", table: "filter" })).toBeGreaterThanOrEqual(3);
    expect(await metricValue(metrics, "chainwarden_rules", { family: "ipv4", table: "filter" })).toBeGreaterThanOrEqual(6);
    expect(events.map((e) => [e.namespace, e.full, e.error, e.result?.sent]).sort()).toEqual([
      ["ns-a", true, undefined, true],
      ["ns-b", true, undefined, true],
    ]);
    expect(events.find((e) => e.namespace === "ns-a")!.resources.sort()).toEqual(["rule_set/r1", "rule_set/r2"]);
  });

  it("puts resources without a namespace in defaultNamespace (the host when unset)", async () => {
    const { loop, rules } = setup({ defaultNamespace: "ns-b" });
    loop.update(doc(rs("r1", undefined, "-j ACCEPT")), "test");
    await loop.start();
    expect(rules("ns-b", "r1")).toEqual(["-j ACCEPT"]);

    const host = setup();
    host.loop.update(doc(rs("r1", undefined, "-j ACCEPT")), "test");
    await host.loop.start();
    expect(host.rules(undefined, "r1")).toEqual(["-j ACCEPT"]);
  });

  it("a change to one resource in a 50-resource namespace sends only that resource's lines", async () => {
    const { fake, loop, calls, metrics } = setup();
    const sets = Array.from({ length: 50 }, (_, i) => rs(`r${i}`, "ns-a", accept(i * 3), accept(i * 3 + 1), accept(i * 3 + 2)));
    loop.update(doc(...sets), "test");
    await loop.start();
    const before = fake.restoreCalls.length;
    const linesBefore = await metricValue(metrics, "chainwarden_restore_lines_total", { family: "ipv4" });

    const changed = sets.map((s) => (s.id === "r17" ? { ...s, rules: [s.rules[0]!, "-s 192.168.9.9/32 -j DROP", s.rules[2]!] } : { ...s, rules: [...s.rules] }));
    loop.update(doc(...changed), "test");
    await loop.idle();

    const sent = fake.restoreCalls.slice(before);
    expect(sent).toHaveLength(1);
    const lines = edits(sent[0]!);
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) expect(l).toContain(kernelChain("r17"));
    expect(lines).toEqual([`-D ${kernelChain("r17")} 2`, `-I ${kernelChain("r17")} 2 -s 192.168.9.9/32 -j DROP`]);
    expect(calls.at(-1)).toEqual({ namespace: "ns-a", changed: ["r17"], removed: [], full: false, held: [], complete: true });
    expect(await metricValue(metrics, "chainwarden_restore_lines_total", { family: "ipv4" })).toBe(linesBefore + 2);
    expect(await metricValue(metrics, "chainwarden_apply_duration_seconds_count", { kind: "partial" })).toBe(1);
  });

  it("calls a handler again when it asks (requeue), with nothing changed and the kernel not re-read, until it stops asking", async () => {
    let waitsLeft = 2;
    const { handler, calls } = ruleSetHandler();
    const inner = handler.reconcile.bind(handler);
    handler.reconcile = async (context, request) => {
      await inner(context, request);
      if (waitsLeft-- > 0) context.requeue(30);
    };
    const { loop, fake } = setup({ handler: { handler, calls } });
    loop.update(doc(rs("r1", "ns-a", "-j ACCEPT")), "test");
    await loop.start();
    const saves = fake.saveCalls.length;
    await until(() => calls.length >= 3);
    await sleep(100);
    expect(calls.length).toBe(3);
    expect(calls.slice(1)).toEqual([
      { namespace: "ns-a", changed: [], removed: [], full: false, held: [], complete: true },
      { namespace: "ns-a", changed: [], removed: [], full: false, held: [], complete: true },
    ]);
    expect(fake.saveCalls.length).toBe(saves);
    await loop.idle(); // a pending requeue does not hold idle() up
  });

  it("a requeue replaced by a change's run is kept: the change's run calls the handler that asked", async () => {
    const first = ruleSetHandler();
    const inner = first.handler.reconcile.bind(first.handler);
    let asked = false;
    first.handler.reconcile = async (context, request) => {
      await inner(context, request);
      if (!asked) {
        asked = true;
        context.requeue(60_000);
      }
    };
    const other: ResourceHandler<RuleSet> = { ...ruleSetHandler().handler, kind: "other_set", parse: () => ({ resources: new Map([["o1", { id: "o1", namespace: "ns-a", rules: [] }]]), problems: [] }) };
    const otherCalls: string[][] = [];
    const otherInner = other.reconcile.bind(other);
    other.reconcile = async (context, request) => {
      otherCalls.push([...request.changed]);
      await otherInner(context, request);
    };
    const loop = new ReconcileLoop({
      handlers: [first.handler as ResourceHandler, other as ResourceHandler],
      observers: [],
      runner: new FakeHost({ namespaces: ["ns-a"] }),
      logger: pino({ level: "silent" }),
      metrics: new AgentMetrics(),
      config: config(),
    });
    loops.push(loop);
    loop.update(doc(rs("r1", "ns-a", "-j ACCEPT")), "test");
    await loop.start();
    expect(first.calls).toHaveLength(1);
    expect(otherCalls).toHaveLength(1);
    loop.update(doc(rs("r1", "ns-a", "-j ACCEPT"), rs("r2", "ns-a", "-j DROP")), "test");
    await loop.idle();
    // The change's run: r2 for the first handler, which also gets the recheck it asked for; the
    // other handler, with nothing changed and nothing asked, is not called.
    expect(first.calls).toHaveLength(2);
    expect(first.calls[1]!.changed).toEqual(["r2"]);
    expect(otherCalls).toHaveLength(1);
  });

  it("a handler's waker calls it again soon, with nothing changed; after stop it does nothing", async () => {
    let wake: (() => void) | undefined;
    const { handler, calls } = ruleSetHandler();
    const inner = handler.reconcile.bind(handler);
    handler.reconcile = async (context, request) => {
      wake = context.waker?.();
      await inner(context, request);
    };
    const { loop, fake } = setup({ handler: { handler, calls } });
    loop.update(doc(rs("r1", "ns-a", "-j ACCEPT")), "test");
    await loop.start();
    expect(calls).toHaveLength(1);
    const saves = fake.saveCalls.length;
    wake!();
    wake!(); // coalesced with the first
    await until(() => calls.length === 2);
    await loop.idle();
    expect(calls[1]).toEqual({ namespace: "ns-a", changed: [], removed: [], full: false, held: [], complete: true });
    expect(fake.saveCalls.length).toBe(saves);
    await sleep(50);
    expect(calls).toHaveLength(2);
    await loop.stop();
    wake!();
    await sleep(50);
    expect(calls).toHaveLength(2);
  });

  it("no waker in a dry run or a pass of a loop never started (apply --once); handlers are stopped with the loop", async () => {
    const wakers: unknown[] = [];
    let stopped = 0;
    const { handler, calls } = ruleSetHandler();
    const inner = handler.reconcile.bind(handler);
    handler.reconcile = async (context, request) => {
      wakers.push(context.waker?.());
      await inner(context, request);
    };
    handler.stop = async () => void stopped++;
    const { loop } = setup({ handler: { handler, calls } });
    loop.update(doc(rs("r1", "ns-a", "-j ACCEPT")), "test");
    await loop.plan();
    await loop.syncOnce();
    expect(wakers).toEqual([undefined, undefined]);
    expect(stopped).toBe(0);
    await loop.stop();
    expect(stopped).toBe(1);
  });

  it("an update that changes nothing sends nothing", async () => {
    const { fake, loop, calls } = setup();
    loop.update(doc(rs("r1", "ns-a", "-j ACCEPT")), "test");
    await loop.start();
    const before = fake.restoreCalls.length;
    loop.update(doc(rs("r1", "ns-a", "-j ACCEPT")), "again");
    await loop.idle();
    expect(fake.restoreCalls.length).toBe(before);
    expect(calls).toHaveLength(1);
  });

  it("coalesces a burst of 20 updates within coalesce_ms into one restore", async () => {
    const { fake, loop, rules, calls, metrics } = setup({ config: { coalesce_ms: 200 } });
    loop.update(doc(rs("r1", "ns-a", accept(0))), "test");
    await loop.start();
    const before = fake.restoreCalls.length;
    for (let i = 1; i <= 20; i++) {
      loop.update(doc(rs("r1", "ns-a", accept(i)), rs(`extra${i}`, "ns-a", accept(100 + i))), "test");
      await sleep(2);
    }
    await loop.idle();
    expect(fake.restoreCalls.length - before).toBe(1);
    expect(rules("ns-a", "r1")).toEqual([accept(20)]);
    expect(rules("ns-a", "extra20")).toEqual([accept(120)]);
    expect(rules("ns-a", "extra19")).toBeUndefined();
    expect(calls.at(-1)).toMatchObject({ changed: ["r1", "extra20"], removed: [], full: false });
    expect(await metricValue(metrics, "chainwarden_event_to_applied_seconds_count")).toBe(1);
  });

  it("runs namespaces in parallel but never two applies of one namespace at once", async () => {
    const { fake, loop, rules } = setup({ config: { coalesce_ms: 0 }, namespaces: ["ns-a", "ns-b", "ns-c"] });
    let overlapSameNamespace = 0;
    let overlapOtherNamespace = 0;
    let version = 0;
    const state = (v: number) => doc(rs("a1", "ns-a", accept(v)), rs("b1", "ns-b", accept(v)), rs("c1", "ns-c", accept(v)));
    // FakeIptablesRunner runs hooks for one restore at a time, so look at what else was recorded while this one waits.
    fake.onBeforeRestore(async (call, f) => {
      const seen = f.restoreCalls.length;
      if (call.target.namespace === "ns-a" && version < 5) loop.update(state(++version), "burst"); // changes while ns-a runs
      await sleep(30);
      for (const other of f.restoreCalls.slice(seen)) {
        if (other.target.namespace === call.target.namespace) overlapSameNamespace++;
        else overlapOtherNamespace++;
      }
    });
    loop.update(state(0), "test");
    await loop.start();
    await loop.idle();
    expect(overlapSameNamespace).toBe(0);
    expect(overlapOtherNamespace).toBeGreaterThan(0);
    expect(rules("ns-a", "a1")).toEqual([accept(5)]);
    expect(rules("ns-b", "b1")).toEqual([accept(5)]);
  });

  it("respects max_parallel_namespaces", async () => {
    const namespaces = ["n1", "n2", "n3", "n4", "n5", "n6"];
    let active = 0;
    let maxActive = 0;
    // Measured in the handler, which runs inside the namespace's worker.
    const handler = ruleSetHandler({
      beforeReconcile: async () => {
        active++;
        maxActive = Math.max(maxActive, active);
        await sleep(20);
        active--;
      },
    });
    const { loop } = setup({ config: { max_parallel_namespaces: 2 }, namespaces, handler });
    loop.update(doc(...namespaces.map((ns, i) => rs(`r${i}`, ns, "-j ACCEPT"))), "test");
    const report = await loop.start();
    expect(report.applied).toBe(6);
    expect(maxActive).toBe(2);
  });

  it("retries a failed namespace with backoff, as a full pass; other namespaces are unaffected", async () => {
    // One namespace at a time: the fake's injected failure goes to the next restore of any
    // namespace, and a restore that runs while another's hook is awaited skips the hooks, so with
    // ns-a and ns-b restoring at once ns-b could take ns-a's failure.
    const { fake, loop, rules, metrics, events, calls } = setup({ config: { retry_initial_delay_ms: 100, max_parallel_namespaces: 1 } });
    loop.update(doc(rs("a1", "ns-a", accept(1)), rs("b1", "ns-b", accept(1))), "test");
    await loop.start();

    let failures = 2;
    const times: Record<string, number[]> = { "ns-a": [], "ns-b": [] };
    fake.onBeforeRestore((call, f) => {
      times[call.target.namespace!]!.push(performance.now());
      // A failure no resource is to blame for (no line named): the namespace is retried.
      if (call.target.namespace === "ns-a" && failures-- > 0) f.failNextRestore({ exitCode: 1, stderr: "iptables-restore: unable to initialize table 'filter'\n" });
    });
    loop.update(doc(rs("a1", "ns-a", accept(2)), rs("b1", "ns-b", accept(2))), "test");
    await until(() => times["ns-b"]!.length === 1);
    // ns-b is applied at once while ns-a waits for its retry.
    expect(rules("ns-b", "b1")).toEqual([accept(2)]);
    expect(rules("ns-a", "a1")).toEqual([accept(1)]);
    await loop.idle();

    expect(rules("ns-a", "a1")).toEqual([accept(2)]);
    expect(times["ns-a"]).toHaveLength(3);
    const [t0, t1, t2] = times["ns-a"] as [number, number, number];
    expect(t1 - t0).toBeGreaterThanOrEqual(95); // 100 ms, then doubled
    expect(t2 - t1).toBeGreaterThanOrEqual(195);
    expect(times["ns-b"]).toHaveLength(1);
    expect(await metricValue(metrics, "chainwarden_retries_total")).toBe(2);
    expect(await metricValue(metrics, "chainwarden_restore_errors_total", { code: "RESTORE_FAILED" })).toBe(2);

    const aEvents = events.filter((e) => e.namespace === "ns-a").slice(1);
    expect(aEvents.map((e) => [e.full, e.error?.constructor.name])).toEqual([
      [false, "RestoreError"],
      [true, "RestoreError"],
      [true, undefined],
    ]);
    // The retries are full passes: the handler rebuilds everything of the namespace.
    expect(calls.filter((c) => c.namespace === "ns-a").slice(1).map((c) => c.full)).toEqual([false, true, true]);
  });

  it("merges a newer change into the pending retry", async () => {
    const { fake, loop, rules } = setup({ config: { retry_initial_delay_ms: 150 } });
    loop.update(doc(rs("a1", "ns-a", accept(1))), "test");
    await loop.start();
    fake.failNextRestore({ exitCode: 1, stderr: "iptables-restore: unable to initialize table 'filter'\n" });
    const before = fake.restoreCalls.length;
    loop.update(doc(rs("a1", "ns-a", accept(2))), "test");
    await until(() => fake.restoreCalls.length === before + 1);
    loop.update(doc(rs("a1", "ns-a", accept(3))), "test"); // during the backoff
    await sleep(60);
    expect(fake.restoreCalls.length).toBe(before + 1);
    await loop.idle();
    expect(fake.restoreCalls.length).toBe(before + 2);
    expect(rules("ns-a", "a1")).toEqual([accept(3)]);
  });

  it("a handler that threw naming no resource: its resources there are held (closed where the kernel has none) and retried alone", async () => {
    let throwOnce = true;
    const h = ruleSetHandler({
      beforeReconcile: (ns) => {
        if (ns === "ns-a" && throwOnce) {
          throwOnce = false;
          throw new Error("boom");
        }
      },
    });
    const { loop, rules, metrics } = setup({ handler: h, config: { retry_initial_delay_ms: 20 } });
    loop.update(doc(rs("a1", "ns-a", accept(1)), rs("b1", "ns-b", accept(1))), "test");
    const report = await loop.start();
    expect(report.failed).toEqual([]);
    expect(report.failedResources.map((f) => [f.namespace, f.resource, f.error.message])).toEqual([["ns-a", "rule_set/a1", "boom"]]);
    expect(report.applied).toBe(2);
    expect(rules("ns-b", "b1")).toEqual([accept(1)]);
    // Never applied, so the kernel has nothing of it: held closed until its retry.
    expect(rules("ns-a", "a1")).toEqual(["-j DROP"]);
    await loop.idle();
    expect(rules("ns-a", "a1")).toEqual([accept(1)]);
    expect(await metricValue(metrics, "chainwarden_restore_errors_total", { code: "HANDLER_FAILED" })).toBe(1);
  });

  it("a handler that throws with a restore stream open: the stream ends uncommitted at once, the retry applies", async () => {
    let throwOnce = true;
    const base = ruleSetHandler();
    const handler: ResourceHandler<RuleSet> = {
      ...base.handler,
      async reconcile(context, request) {
        await base.handler.reconcile(context, request);
        if (context.namespace !== "ns-a" || !throwOnce) return;
        throwOnce = false;
        const m = context.manager();
        expect(await m.openStream(4, "filter")).toBe(true);
        m.streamChains(4, "filter", [chainOf("a1")]);
        throw new Error("boom with a stream open");
      },
    };
    const { fake, loop, rules } = setup({ handler: { handler, calls: base.calls }, config: { retry_initial_delay_ms: 20 } });
    loop.update(doc(rs("a1", "ns-a", accept(1))), "test");
    const report = await loop.start();
    expect(report.failedResources.map((f) => f.error.message)).toEqual(["boom with a stream open"]);
    await sleep(0);
    // Ended without COMMIT (the tool refused it), long before the 30-second watchdog.
    const streamed = fake.restoreCalls.filter((c) => c.streamed);
    expect(streamed).toHaveLength(1);
    expect(streamed[0]!.input).not.toContain("COMMIT");
    // The run again at once held it: closed, as the kernel had nothing of it.
    expect(rules("ns-a", "a1")).toEqual(["-j DROP"]);
    await loop.idle();
    expect(rules("ns-a", "a1")).toEqual([accept(1)]);
  });

  it("keeps the last good version of a resource that became invalid", async () => {
    const { fake, loop, rules, metrics, calls, events } = setup();
    loop.update(doc(rs("r1", "ns-a", "-j ACCEPT"), rs("r2", "ns-a", "-j DROP")), "state.yaml");
    await loop.start();
    const before = fake.restoreCalls.length;

    // r1 is now broken, r3 is new and broken, r2 changes.
    loop.update(doc({ id: "r1", namespace: "ns-a", rules: 42 }, rs("r2", "ns-a", "-j RETURN"), { id: "r3", namespace: "ns-a", rules: [1] }), "state.yaml");
    await loop.idle();
    expect(fake.restoreCalls.length).toBe(before + 1);
    expect(rules("ns-a", "r1")).toEqual(["-j ACCEPT"]);
    expect(rules("ns-a", "r2")).toEqual(["-j RETURN"]);
    // r3 was never valid: its stand-in is held, and with nothing in the kernel it is filtered closed.
    expect(rules("ns-a", "r3")).toEqual(["-j DROP"]);
    expect(calls.at(-1)).toMatchObject({ changed: ["r2", "r3"], removed: [], held: ["r3"] });
    // Observers learn which resources of the apply are held (not applied as asked).
    expect(events.at(-1)).toMatchObject({ namespace: "ns-a", resources: ["rule_set/r2", "rule_set/r3"], held: ["rule_set/r3"] });

    const report = await loop.syncOnce();
    expect(report.problems.map((p) => [p.resource, p.path])).toEqual([
      ["r1", "rule_sets.0.rules"],
      ["r3", "rule_sets.2.rules"],
    ]);
    expect(rules("ns-a", "r1")).toEqual(["-j ACCEPT"]);
    expect(await metricValue(metrics, "chainwarden_state_problems_total")).toBe(2);

    // The same problems again are not counted again.
    loop.update(doc({ id: "r1", namespace: "ns-a", rules: 42 }, rs("r2", "ns-a", "-j RETURN"), { id: "r3", namespace: "ns-a", rules: [1] }), "state.yaml");
    expect(await metricValue(metrics, "chainwarden_state_problems_total")).toBe(2);

    // A broken section as a whole keeps every resource of the kind.
    loop.update({ rule_sets: { oops: true } }, "state.yaml");
    await loop.idle();
    expect(rules("ns-a", "r1")).toEqual(["-j ACCEPT"]);
    expect(rules("ns-a", "r2")).toEqual(["-j RETURN"]);

    // Fixed: applied; r3, gone from a state without problems, is removed.
    loop.update(doc(rs("r1", "ns-a", "-j LOG"), rs("r2", "ns-a", "-j RETURN")), "state.yaml");
    await loop.idle();
    expect(rules("ns-a", "r1")).toEqual(["-j LOG"]);
    expect(rules("ns-a", "r3")).toBeUndefined();
  });

  it("removes a deleted resource's rules, and forgets a namespace left empty", async () => {
    const { loop, rules, input, calls, metrics } = setup();
    loop.update(doc(rs("r1", "ns-a", "-j ACCEPT"), rs("r2", "ns-a", "-j DROP"), rs("b1", "ns-b", "-j ACCEPT")), "test");
    await loop.start();
    const chainsBefore = await metricValue(metrics, "chainwarden_chains", { family: "ipv4", table: "filter" });

    loop.update(doc(rs("r1", "ns-a", "-j ACCEPT")), "test");
    await loop.idle();
    expect(rules("ns-a", "r2")).toBeUndefined();
    expect(input("ns-a")).toEqual([`-j ${kernelChain("r1")}`]);
    expect(rules("ns-b", "b1")).toBeUndefined();
    expect(input("ns-b")).toEqual([]);
    expect(calls.filter((c) => c.removed.length > 0).map((c) => [c.namespace, c.removed]).sort()).toEqual([
      ["ns-a", ["r2"]],
      ["ns-b", ["b1"]],
    ]);
    expect((await loop.plan()).namespaces.map((p) => p.namespace)).toEqual(["ns-a"]);
    expect(await metricValue(metrics, "chainwarden_chains", { family: "ipv4", table: "filter" })).toBeLessThan(chainsBefore);
  });

  it("does not retry removals from a namespace that is gone", async () => {
    const { fake, loop, metrics } = setup({ config: { retry_initial_delay_ms: 20 } });
    loop.update(doc(rs("r1", "ns-a", "-j ACCEPT"), rs("b1", "ns-b", "-j ACCEPT")), "test");
    await loop.start();
    fake.deleteNamespace("ns-a");
    loop.update(doc(rs("b1", "ns-b", "-j ACCEPT")), "test");
    await loop.idle();
    expect(await metricValue(metrics, "chainwarden_retries_total")).toBe(0);
    expect((await loop.plan()).namespaces.map((p) => p.namespace)).toEqual(["ns-b"]);
  });

  it("moves a resource that changed namespace", async () => {
    const { loop, rules } = setup();
    loop.update(doc(rs("r1", "ns-a", "-j ACCEPT")), "test");
    await loop.start();
    loop.update(doc(rs("r1", "ns-b", "-j ACCEPT")), "test");
    await loop.idle();
    expect(rules("ns-a", "r1")).toBeUndefined();
    expect(rules("ns-b", "r1")).toEqual(["-j ACCEPT"]);
  });

  it("plan() sends nothing and returns exactly the input a sync sends", async () => {
    const { fake, loop } = setup();
    loop.update(doc(rs("r1", "ns-a", "-s 10.0.0.1 -j ACCEPT"), rs("b1", "ns-b", "-j DROP")), "test");
    const plans = (await loop.plan()).namespaces;
    expect(fake.restoreCalls).toHaveLength(0);
    expect(plans.map((p) => p.namespace).sort()).toEqual(["ns-a", "ns-b"]);
    const planA = plans.find((p) => p.namespace === "ns-a")!;
    expect(planA.resources).toEqual(["rule_set/r1"]);
    expect(planA.families).toHaveLength(1);
    expect(planA.families[0]!.input).toContain(`-A ${kernelChain("r1")} -s 10.0.0.1/32 -j ACCEPT`);

    // syncOnce (not started): sends exactly what plan said.
    const report = await loop.syncOnce();
    expect(report.applied).toBe(2);
    const sentA = fake.restoreCalls.find((c) => c.target.namespace === "ns-a")!;
    expect(sentA.input).toBe(planA.families[0]!.input);

    // Now in sync: empty plans, status says so.
    const after = (await loop.plan()).namespaces;
    expect(after.flatMap((p) => p.families).map((f) => f.input)).toEqual(["", ""]);
    const status = (await loop.status()).namespaces;
    expect(status.map(({ namespace, exists, inSync, pendingLines }) => ({ namespace, exists, inSync, pendingLines })).sort((a, b) => a.namespace!.localeCompare(b.namespace!))).toEqual([
      { namespace: "ns-a", exists: true, inSync: true, pendingLines: 0 },
      { namespace: "ns-b", exists: true, inSync: true, pendingLines: 0 },
    ]);
    expect(status[0]!.rules).toBeGreaterThan(0);
    expect(status[0]!.chains).toBeGreaterThan(0);
    expect(fake.restoreCalls).toHaveLength(2);
  });

  it("status() reports a missing namespace and drift", async () => {
    const { fake, loop } = setup();
    loop.update(doc(rs("r1", "ns-a", "-j ACCEPT"), rs("g1", "ns-gone", "-j ACCEPT")), "test");
    await loop.syncOnce().then((r) => expect(r.failed.map((f) => f.namespace)).toEqual(["ns-gone"]));
    fake.externalRestore({ namespace: "ns-a", family: 4 }, `*filter\n-F ${kernelChain("r1")}\nCOMMIT\n`);
    const status = (await loop.status()).namespaces;
    const a = status.find((s) => s.namespace === "ns-a")!;
    const gone = status.find((s) => s.namespace === "ns-gone")!;
    expect(a).toMatchObject({ exists: true, inSync: false, pendingLines: 1 });
    expect(gone).toMatchObject({ exists: false, inSync: false });
    expect(gone.pendingLines).toBeGreaterThan(0);
    expect(fake.restoreCalls.filter((c) => c.target.namespace === "ns-a")).toHaveLength(1);
  });

  it("stop() during an apply waits for it to finish, then starts nothing", async () => {
    const { fake, loop, rules } = setup();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const unhook = fake.onBeforeRestore(() => gate);
    loop.update(doc(rs("r1", "ns-a", "-j ACCEPT")), "test");
    const started = loop.start();
    await until(() => fake.restoreCalls.length === 1);

    let stopped = false;
    const stopping = loop.stop().then(() => (stopped = true));
    await sleep(50);
    expect(stopped).toBe(false);
    release();
    await stopping;
    unhook();
    expect(rules("ns-a", "r1")).toEqual(["-j ACCEPT"]);
    const report = await started;
    expect(report.applied).toBe(1);

    loop.update(doc(rs("r1", "ns-a", "-j DROP")), "test");
    await sleep(60);
    expect(fake.restoreCalls).toHaveLength(1);
    expect(rules("ns-a", "r1")).toEqual(["-j ACCEPT"]);
  });

  it("stop() cancels a pending retry", async () => {
    const { fake, loop } = setup({ config: { retry_initial_delay_ms: 100 } });
    fake.failNextRestore({ exitCode: 1, stderr: "iptables-restore: line 2 failed\n" });
    loop.update(doc(rs("r1", "ns-a", "-j ACCEPT")), "test");
    const report = await loop.start();
    expect(report.failed).toHaveLength(1);
    await loop.stop();
    await sleep(200);
    expect(fake.restoreCalls).toHaveLength(1);
    await loop.idle();
  });

  it("resync verifies every manager and repairs drift", async () => {
    const { fake, loop, rules, input, metrics } = setup({ config: { resync_interval: 1 } });
    loop.update(doc(rs("r1", "ns-a", "-j ACCEPT", "-j LOG"), rs("b1", "ns-b", "-j DROP")), "test");
    await loop.start();
    // Someone flushes our chain and deletes a jump.
    fake.externalRestore({ namespace: "ns-a", family: 4 }, `*filter\n-F ${kernelChain("r1")}\n-D ${WRAP}-INPUT -j ${kernelChain("r1")}\nCOMMIT\n`);
    expect(rules("ns-a", "r1")).toEqual([]);
    await until(() => (rules("ns-a", "r1") ?? []).length === 2, 4_000);
    expect(rules("ns-a", "r1")).toEqual(["-j ACCEPT", "-j LOG"]);
    expect(input("ns-a")).toEqual([`-j ${kernelChain("r1")}`]);
    // One drifted namespace; ns-b was verified and is fine.
    await sleep(50);
    expect(await metricValue(metrics, "chainwarden_drift_repairs_total")).toBe(1);
    expect(rules("ns-b", "b1")).toEqual(["-j DROP"]);
  }, 10_000);
});
