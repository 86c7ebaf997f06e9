/**
 * A handler's failure is its own (DESIGN §5a, issue 19): two plugins' handlers in one namespace on
 * the fake iptables; one of them throws, naming no resource.
 */
import { FakeHost } from "@chainwarden/testing";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { AgentMetrics } from "./agent-metrics.js";
import type { Problem } from "./agent-errors.js";
import type { ParsedResources, ResourceHandler, StateDocument } from "./extension-points.js";
import type { ManagerNeeds } from "./manager-flavours.js";
import { ReconcileLoop } from "./reconcile-loop.js";
import { accept, config, kernelChain, loops, rs, ruleSetHandler, until, WRAP } from "./rule-set-handler.test-support.js";

// ---- plugin-b's `guard` handler: { id, rules } → a wrapped filter chain gd-<id>, jumped to from INPUT ----

interface Guard {
  id: string;
  rules: string[];
}

/** `ok`; `held-only`: throws unless every resource it is given is held; `always`: throws on every call. */
type Mode = "ok" | "held-only" | "always";

function guardHandler(state: { mode: Mode; managers?: ManagerNeeds[]; ask?: { stateless?: boolean } }) {
  const calls: { held: string[]; removed: string[]; threw: boolean }[] = [];
  const handler: ResourceHandler<Guard> = {
    kind: "guard",
    documentKeys: ["guards"],
    ...(state.managers ? { managers: state.managers } : {}),
    parse(document: StateDocument): ParsedResources<Guard> {
      const resources = new Map<string, Guard>();
      const problems: Problem[] = [];
      for (const g of (document.guards ?? []) as Guard[]) resources.set(g.id, g);
      return { resources, problems };
    },
    namespaceOf: () => "ns-a",
    async reconcile(context, request) {
      const allHeld = [...request.desired.keys()].every((id) => request.held.has(id));
      const threw = state.mode === "always" || (state.mode === "held-only" && !allHeld);
      calls.push({ held: [...request.held], removed: [...request.removed.keys()], threw });
      const manager = context.manager(state.ask ?? {});
      const filter = manager.table(4, "filter");
      // Half-built before it throws: none of this may reach the kernel.
      filter.addChain("gd-half");
      filter.addRule("INPUT", "-j $gd-half");
      if (threw) throw new Error("guard backend unreachable");
      filter.removeChain("gd-half");
      for (const id of request.removed.keys()) filter.removeChain(`gd-${id}`);
      const kernel = await manager.kernelChains(4, "filter");
      for (const [id, g] of request.desired) {
        const resource = `guard/${id}`;
        filter.removeChain(`gd-${id}`);
        filter.addChain(`gd-${id}`, { resource });
        filter.addRule("INPUT", `-j $gd-${id}`, { resource });
        // Held: keep the kernel's copy, or fail closed where it has none.
        const rules = request.held.has(id) ? (kernel.get(`${WRAP}-gd-${id}`) ?? ["-j DROP"]) : g.rules;
        for (const rule of rules) filter.addRule(`gd-${id}`, rule, { resource });
      }
    },
  };
  return { handler, calls };
}

const guard = (id: string, ...rules: string[]): Guard => ({ id, rules });
const state = (sets: ReturnType<typeof rs>[], guards: Guard[]): StateDocument => ({ rule_sets: sets, guards });

function setup(options: { mode?: Mode; managers?: ManagerNeeds[]; ask?: { stateless?: boolean }; ruleSetManagers?: ManagerNeeds[]; logLines?: Record<string, unknown>[] } = {}) {
  const host = new FakeHost({ namespaces: ["ns-a"] });
  const fake = host.iptables;
  const a = ruleSetHandler();
  if (options.ruleSetManagers) Object.assign(a.handler, { managers: options.ruleSetManagers });
  const mode = { mode: options.mode ?? "ok", ...(options.managers ? { managers: options.managers } : {}), ...(options.ask ? { ask: options.ask } : {}) } as { mode: Mode; managers?: ManagerNeeds[]; ask?: { stateless?: boolean } };
  const b = guardHandler(mode);
  const loop = new ReconcileLoop({
    handlers: [a.handler as ResourceHandler, b.handler as ResourceHandler],
    observers: [],
    runner: host,
    logger: options.logLines ? pino({ level: "debug" }, { write: (line: string) => void options.logLines!.push(JSON.parse(line) as Record<string, unknown>) }) : pino({ level: "silent" }),
    metrics: new AgentMetrics(),
    config: config({ retry_initial_delay_ms: 40, retry_max_delay_ms: 200 }),
    plugins: new Map([
      ["rule_set", "plugin-a"],
      ["guard", "plugin-b"],
    ]),
  });
  loops.push(loop);
  const v4 = { namespace: "ns-a", family: 4 as const };
  const rules = (id: string) => fake.rules(v4, "filter", kernelChain(id));
  const guardRules = (id: string) => fake.rules(v4, "filter", `${WRAP}-gd-${id}`);
  const input = () => fake.rules(v4, "filter", `${WRAP}-INPUT`);
  return { fake, loop, mode, calls: b.calls, rules, guardRules, input, v4 };
}

describe("a handler's failure is its own", () => {
  it("a handler that throws naming no resource has its own resources held; the other plugin's change lands at once", async () => {
    const { loop, mode, rules, guardRules, calls } = setup();
    loop.update(state([rs("r1", "ns-a", accept(1))], [guard("g1", "-s 10.9.0.1/32 -j DROP")]), "test");
    await loop.start();

    mode.mode = "held-only";
    loop.update(state([rs("r1", "ns-a", accept(2))], [guard("g1", "-s 10.9.0.2/32 -j DROP")]), "test");
    await until(() => (rules("r1") ?? [])[0] === accept(2));
    // Held: as the kernel had it; nothing of the half-built model.
    expect(guardRules("g1")).toEqual(["-s 10.9.0.1/32 -j DROP"]);
    expect(guardRules("half")).toBeUndefined();
    expect(calls.at(-1)).toMatchObject({ held: ["g1"], threw: false });

    // Retried alone; it lands once the handler works again.
    mode.mode = "ok";
    await loop.idle();
    expect(guardRules("g1")).toEqual(["-s 10.9.0.2/32 -j DROP"]);
    expect(rules("r1")).toEqual([accept(2)]);
  });

  it("a handler that throws even with all its resources held is skipped there: the others apply, its chains stay as the kernel has them, and it is retried", async () => {
    const { loop, mode, rules, guardRules, input, calls } = setup();
    loop.update(state([rs("r1", "ns-a", accept(1))], [guard("g1", "-s 10.9.0.1/32 -j DROP"), guard("g2", "-s 10.9.0.9/32 -j DROP")]), "test");
    await loop.start();
    const jumps = input();

    mode.mode = "always";
    loop.update(state([rs("r1", "ns-a", accept(2)), rs("r2", "ns-a", accept(3))], [guard("g1", "-j ACCEPT")]), "test");
    await until(() => (rules("r2") ?? []).length > 0);
    expect(rules("r1")).toEqual([accept(2)]);
    expect(rules("r2")).toEqual([accept(3)]);
    // Nothing of plugin-b's is removed or loosened: g1 unchanged, g2 (gone from the state) kept, jumps kept.
    expect(guardRules("g1")).toEqual(["-s 10.9.0.1/32 -j DROP"]);
    expect(guardRules("g2")).toEqual(["-s 10.9.0.9/32 -j DROP"]);
    expect(guardRules("half")).toBeUndefined();
    for (const jump of jumps ?? []) expect(input()).toContain(jump);

    const report = await loop.syncOnce();
    expect(report.failed).toEqual([]);
    expect(report.failedHandlers.map((f) => [f.namespace, f.kind, f.plugin, f.error.message])).toEqual([["ns-a", "guard", "plugin-b", "guard backend unreachable"]]);
    expect(rules("r1")).toEqual([accept(2)]);

    // Its retry calls it again on fresh managers; once it works, what it last applied is its to remove.
    mode.mode = "ok";
    await loop.idle();
    expect(guardRules("g1")).toEqual(["-j ACCEPT"]);
    expect(guardRules("g2")).toBeUndefined();
    expect(calls.some((c) => c.removed.includes("g2") && !c.threw)).toBe(true);
    expect(rules("r2")).toEqual([accept(3)]);
    expect((await loop.syncOnce()).failedHandlers).toEqual([]);
  });

  it("while a handler is skipped, the other plugin's removals and changes keep landing, and its chains stay", async () => {
    // Never started: no retry fires, so the handler stays skipped across passes.
    const { loop, mode, rules, guardRules, fake, v4 } = setup();
    loop.update(state([rs("r1", "ns-a", accept(1)), rs("r2", "ns-a", accept(2))], [guard("g1", "-s 10.9.0.1/32 -j DROP")]), "test");
    await loop.syncOnce();
    mode.mode = "always";
    loop.update(state([rs("r1", "ns-a", accept(1)), rs("r2", "ns-a", accept(2))], [guard("g1", "-j ACCEPT")]), "test");
    expect((await loop.syncOnce()).failedHandlers.map((f) => f.kind)).toEqual(["guard"]);

    loop.update(state([rs("r1", "ns-a", accept(5))], [guard("g1", "-j ACCEPT")]), "test");
    const report = await loop.syncOnce();
    expect(report.failedHandlers.map((f) => f.kind)).toEqual(["guard"]);
    expect(rules("r1")).toEqual([accept(5)]);
    expect(rules("r2")).toBeUndefined();
    expect(fake.rules(v4, "filter", `${WRAP}-INPUT`)).not.toContain(`-j ${kernelChain("r2")}`);
    expect(guardRules("g1")).toEqual(["-s 10.9.0.1/32 -j DROP"]);
    expect(fake.rules(v4, "filter", `${WRAP}-INPUT`)).toContain(`-j ${WRAP}-gd-g1`);
  });

  it("plan and status name the failing handler, plan the rest as a run would apply it, and send nothing", async () => {
    const { loop, mode, fake } = setup();
    loop.update(state([rs("r1", "ns-a", accept(1))], [guard("g1", "-s 10.9.0.1/32 -j DROP")]), "test");
    await loop.syncOnce();
    const sent = fake.restoreCalls.length;

    mode.mode = "always";
    loop.update(state([rs("r1", "ns-a", accept(2))], [guard("g1", "-j ACCEPT")]), "test");
    const [plan] = (await loop.plan()).namespaces;
    expect(plan!.error).toBeUndefined();
    expect(plan!.failedHandlers).toEqual([{ kind: "guard", plugin: "plugin-b", error: "guard backend unreachable" }]);
    expect(plan!.held).toEqual(["guard/g1"]);
    const input = plan!.families.map((f) => f.input).join("");
    expect(input).toContain(`-A ${kernelChain("r1")} ${accept(2)}`);
    expect(input).not.toContain("gd-");

    const [status] = (await loop.status()).namespaces;
    expect(status).toMatchObject({ namespace: "ns-a", inSync: false });
    expect(status!.error).toBe("the guard handler of plugin plugin-b failed: guard backend unreachable");
    expect(fake.restoreCalls.length).toBe(sent);
  });

  it("a handler asking for another manager than the namespace's fails alone, with MANAGER_CONFLICT naming it", async () => {
    const { loop, rules, fake, v4 } = setup({ ask: { stateless: true } });
    loop.update(state([rs("r1", "ns-a", accept(1))], [guard("g1", "-j DROP")]), "test");
    const report = await loop.syncOnce();
    expect(rules("r1")).toEqual([accept(1)]);
    expect(report.failedHandlers).toHaveLength(1);
    expect(report.failedHandlers[0]!.error).toMatchObject({ code: "MANAGER_CONFLICT", plugin: "plugin-b" });
    expect(report.failedHandlers[0]!.error.message).toMatch(/^the guard handler of plugin plugin-b asks the cw-test manager of ns-a for \{"stateless":true\}, but it is \{"stateless":false,"nat":true,"useIpv6":false\}/);
    expect(fake.rules(v4, "filter", `${WRAP}-gd-g1`)).toBeUndefined();
  });

  it("two plugins that need one wrap name with different options are refused before anything runs, naming both", () => {
    expect(() => setup({ managers: [{ stateless: true }], ruleSetManagers: [{ stateless: false }] })).toThrow(
      expect.objectContaining({
        code: "PLUGIN_INVALID",
        plugin: "plugin-b",
        message:
          "the rule_set handler of plugin plugin-a and the guard handler of plugin plugin-b share the cw-test manager of a namespace but need it with stateless: false and stateless: true; give one of them a wrap name of its own",
      }),
    );
    expect(() => setup({ managers: [{ stateless: true }], ruleSetManagers: [{ nat: true }] })).toThrow(
      "the rule_set handler of plugin plugin-a needs the nat table of the cw-test manager, which the guard handler of plugin plugin-b needs stateless (no nat table)",
    );
    // Different wrap names do not meet.
    expect(() => setup({ managers: [{ stateless: true, wrapName: "cw-guard" }], ruleSetManagers: [{ nat: true }] })).not.toThrow();
  });

  it("a handler that declares a stateless manager shares it with one that names no options, whichever runs first", async () => {
    const { loop, rules, guardRules, fake, v4 } = setup({ managers: [{ stateless: true }], ask: { stateless: true } });
    loop.update(state([rs("r1", "ns-a", accept(1))], [guard("g1", "-j DROP")]), "test");
    const report = await loop.syncOnce();
    expect(report.failedHandlers).toEqual([]);
    expect(report.failedResources).toEqual([]);
    expect(rules("r1")).toEqual([accept(1)]);
    expect(guardRules("g1")).toEqual(["-j DROP"]);
    expect(fake.dump(v4)).not.toContain("*nat");
    expect(fake.dump(v4)).not.toContain("*mangle");
  });

  it("logs a handler's failure once at error, naming its plugin and the first 20 of the resources it held", async () => {
    const lines: Record<string, unknown>[] = [];
    const { loop } = setup({ mode: "held-only", logLines: lines });
    const guards = Array.from({ length: 25 }, (_, i) => guard(`g${i}`, "-j DROP"));
    loop.update(state([rs("r1", "ns-a", accept(1))], guards), "test");
    await loop.syncOnce();
    const errors = lines.filter((l) => l.level === 50);
    expect(errors.map((l) => l.msg)).toEqual(["resource handler failed; its resources here are held as the kernel has them, the rest of the namespace applies now, they are retried alone"]);
    expect(errors[0]).toMatchObject({ kind: "guard", plugin: "plugin-b", namespace: "ns-a" });
    expect(errors[0]!.held).toEqual([...guards.slice(0, 20).map((g) => `guard/${g.id}`), "... 5 more"]);
  });
});
