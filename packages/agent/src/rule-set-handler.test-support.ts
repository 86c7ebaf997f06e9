/**
 * The reconcile loop's test bench (not shipped): a small `rule_set` handler that follows the
 * handler contract (stand-ins for invalid input, held ids kept as the kernel has them or failed
 * closed, nothing removed while the input is incomplete, a stale cleanup) on the fake iptables.
 */
import { FakeHost, type RestoreCall } from "@chainwarden/testing";
import { pino } from "pino";
import { afterEach } from "vitest";
import { AgentMetrics } from "./agent-metrics.js";
import { baseConfigSchema, type AgentConfig } from "./config-schema.js";
import type { ApplyEvent, HostAction, ParsedResources, ResourceHandler, StateDocument } from "./extension-points.js";
import type { Problem } from "./agent-errors.js";
import { ReconcileLoop } from "./reconcile-loop.js";

// ---- a small handler: kind rule_set, { id, namespace, rules } → one filter chain per resource ----

export interface RuleSet {
  id: string;
  namespace?: string;
  rules: string[];
}

export const WRAP = "cw-test";
export const chainOf = (id: string) => `rs-${id}`;
export const kernelChain = (id: string) => `${WRAP}-${chainOf(id)}`;

export function ruleSetHandler(hooks: { beforeReconcile?: (ns: string | undefined, changed: string[]) => void | Promise<void>; home?: (string | undefined)[] } = {}) {
  const calls: { namespace: string | undefined; changed: string[]; removed: string[]; full: boolean; held: string[]; complete: boolean }[] = [];
  /** Namespaces an "earlier run" left behind: the stale cleanup removes those no resource claims. */
  const leftovers = new Set<string>();
  const handler: ResourceHandler<RuleSet> = {
    kind: "rule_set",
    documentKeys: ["rule_sets"],
    ...(hooks.home ? { homeNamespaces: hooks.home } : {}),
    parse(document: StateDocument, origin: string): ParsedResources<RuleSet> {
      const resources = new Map<string, RuleSet>();
      const held = new Map<string, RuleSet>();
      const problems: Problem[] = [];
      const list = document.rule_sets;
      if (list === undefined) return { resources, problems };
      if (!Array.isArray(list)) return { resources, problems: [{ source: origin, path: "rule_sets", message: "must be a list" }] };
      list.forEach((raw: unknown, i) => {
        const r = raw as Partial<RuleSet>;
        const id = typeof r?.id === "string" ? r.id : undefined;
        const namespace = typeof r?.namespace === "string" ? { namespace: r.namespace } : {};
        if (!id || !Array.isArray(r.rules) || !r.rules.every((x) => typeof x === "string")) {
          problems.push({ source: origin, path: `rule_sets.${i}.rules`, message: "rules must be a list of strings", ...(id ? { resource: id } : {}) });
          // The stand-in: enough to find the resource's namespace and chain.
          if (id) held.set(id, { id, rules: [], ...namespace });
          return;
        }
        resources.set(id, { id, rules: r.rules, ...namespace });
      });
      return { resources, problems, held };
    },
    namespaceOf: (r) => r.namespace,
    async reconcile(context, request) {
      calls.push({
        namespace: context.namespace,
        changed: [...request.changed],
        removed: [...request.removed.keys()],
        full: request.full,
        held: [...request.held],
        complete: request.complete,
      });
      await hooks.beforeReconcile?.(context.namespace, [...request.changed]);
      const manager = context.manager();
      const filter = manager.ipv4.filter!;
      for (const id of request.removed.keys()) filter.removeChain(chainOf(id));
      // Held: keep the kernel's copy, or fail closed where the kernel has none.
      const keep = async (id: string) => {
        if (filter.hasChain(chainOf(id))) return;
        const kernel = (await manager.kernelChains(4, "filter")).get(kernelChain(id));
        const resource = `rule_set/${id}`;
        filter.addChain(chainOf(id), { resource });
        filter.addRule("INPUT", `-j $${chainOf(id)}`, { resource });
        for (const rule of kernel ?? ["-j DROP"]) filter.addRule(chainOf(id), rule, { resource });
      };
      for (const id of request.changed) {
        const r = request.desired.get(id)!;
        const resource = `rule_set/${id}`;
        if (request.held.has(id)) {
          if (filter.hasChain(chainOf(id)) && request.full) filter.removeChain(chainOf(id));
          await keep(id);
          continue;
        }
        if (filter.hasChain(chainOf(id))) filter.emptyChain(chainOf(id));
        else {
          filter.addChain(chainOf(id), { resource });
          filter.addRule("INPUT", `-j $${chainOf(id)}`, { resource });
        }
        for (const rule of r.rules) filter.addRule(chainOf(id), rule, { resource });
      }
      // Incomplete input: what the kernel has and no desired resource explains stays.
      if (!request.complete) {
        for (const chain of (await manager.kernelChains(4, "filter")).keys()) {
          const id = chain.startsWith(`${WRAP}-rs-`) ? chain.slice(`${WRAP}-rs-`.length) : undefined;
          if (id !== undefined && !request.desired.has(id)) await keep(id);
        }
      }
    },
    async cleanupStale(context, desired) {
      const wanted = new Set([...desired.values()].map((r) => r.namespace));
      const actions: HostAction[] = [];
      for (const ns of [...leftovers]) {
        if (wanted.has(ns)) continue;
        actions.push({ verb: "remove", object: "namespace", name: ns });
        if (!context.dryRun) leftovers.delete(ns);
      }
      return actions;
    },
  };
  return { handler, calls, leftovers };
}

export const rs = (id: string, namespace: string | undefined, ...rules: string[]): RuleSet => ({ id, ...(namespace ? { namespace } : {}), rules });
export const doc = (...sets: unknown[]): StateDocument => ({ rule_sets: sets });
export const accept = (n: number) => `-s 10.0.${Math.floor(n / 250)}.${(n % 250) + 1}/32 -j ACCEPT`;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export async function until(check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error("condition not reached in time");
    await sleep(5);
  }
}

export function config(overrides: Partial<AgentConfig> = {}): AgentConfig {
  return baseConfigSchema.parse({
    wrap_name: WRAP,
    use_ipv6: false,
    resync_interval: 0,
    coalesce_ms: 20,
    retry_initial_delay_ms: 50,
    retry_max_delay_ms: 1_000,
    ...overrides,
  }) as AgentConfig;
}

export async function metricValue(metrics: AgentMetrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const base = name.replace(/_count$/, "");
  const m = (await metrics.registry.getMetricsAsJSON()).find((x) => x.name === name || x.name === base);
  const v = m?.values.find(
    (x) =>
      ((x as { metricName?: string }).metricName ?? m.name) === name &&
      Object.entries(labels).every(([k, val]) => (x.labels as Record<string, unknown>)[k] === val),
  );
  return v?.value ?? 0;
}

/** The edit lines of a restore input (no `*table`, `COMMIT`). */
export const edits = (call: RestoreCall) => call.input.split("\n").filter((l) => l && !l.startsWith("*") && l !== "COMMIT");

export const loops: ReconcileLoop[] = [];
afterEach(async () => {
  for (const l of loops.splice(0)) await l.stop();
});

export function setup(options: { config?: Partial<AgentConfig>; namespaces?: string[]; handler?: Omit<ReturnType<typeof ruleSetHandler>, "leftovers"> & { leftovers?: Set<string> }; defaultNamespace?: string } = {}) {
  const host = new FakeHost({ namespaces: options.namespaces ?? ["ns-a", "ns-b"] });
  const fake = host.iptables;
  const metrics = new AgentMetrics();
  const events: ApplyEvent[] = [];
  const { handler, calls, leftovers = new Set<string>() } = options.handler ?? ruleSetHandler();
  const loop = new ReconcileLoop({
    handlers: [handler as ResourceHandler],
    observers: [{ onApply: (e) => void events.push(e) }],
    runner: host,
    logger: pino({ level: "silent" }),
    metrics,
    config: config(options.config),
    ...(options.defaultNamespace ? { defaultNamespace: options.defaultNamespace } : {}),
  });
  loops.push(loop);
  const rules = (ns: string | undefined, id: string) => fake.rules({ namespace: ns, family: 4 }, "filter", kernelChain(id));
  const input = (ns: string | undefined) => fake.rules({ namespace: ns, family: 4 }, "filter", `${WRAP}-INPUT`);
  return { host, fake, metrics, events, loop, calls, leftovers, rules, input };
}

