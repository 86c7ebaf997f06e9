import { listNamespaces, type ApplyResult, type FamilyApplyResult, type FamilyPlan, type IpFamily, type IptablesRunner } from "@chainwarden/core";
import type { Logger } from "pino";
import { AgentError, type Problem } from "./agent-errors.js";
import type { AgentMetrics } from "./agent-metrics.js";
import type { AgentConfig } from "./config-schema.js";
import { DesiredState, same, type ByKind, type NsKey } from "./desired-state.js";
import type { ApplyEvent, ApplyObserver, HostAction, ReconcileRequest, ResourceHandler, StateDocument, StateSink } from "./extension-points.js";
import { LoopContext } from "./loop-context.js";

export interface ReconcileLoopOptions {
  /** In registration order: within one namespace they reconcile in this order. */
  handlers: readonly ResourceHandler[];
  observers: readonly ApplyObserver[];
  runner: IptablesRunner;
  logger: Logger;
  metrics: AgentMetrics;
  config: AgentConfig;
  /** Namespace for resources whose handler returns undefined (undefined: the host's own). */
  defaultNamespace?: string;
}

/** A resource whose apply failed: held as the kernel has it and retried alone. */
export interface FailedResource {
  namespace: string | undefined;
  /** `kind/id`. */
  resource: string;
  error: Error;
}

export interface SyncReport {
  /** Namespaces in the pass. */
  namespaces: number;
  /** Namespaces applied successfully (resources held in them included). */
  applied: number;
  failed: { namespace: string | undefined; error: Error }[];
  /** Resources whose apply failed: the rest of their namespace applied; they are retried alone. */
  failedResources: FailedResource[];
  /**
   * The invalid resources of the current desired state, plus the problems state sources reported
   * since the previous report.
   */
  problems: Problem[];
  /** False when no state source has delivered a document: nothing was changed. */
  stateRead: boolean;
}

export interface NamespacePlan {
  namespace: string | undefined;
  /** `kind/id` of every desired resource in the namespace. */
  resources: string[];
  /** `kind/id` of the resources kept as the kernel has them (invalid input). */
  held: string[];
  /** One entry per manager and IP family; `input` is exactly what would be sent. */
  families: FamilyPlan[];
  /** What handlers would change on the host besides iptables (namespaces, ipsets, proxies), and ports waiting. */
  actions: HostAction[];
  /** Left by an earlier run and no longer desired: the stale cleanup would remove it. */
  stale?: boolean;
  /** Set when a handler (or reading the kernel) failed; `families` is then empty. */
  error?: string;
}

export interface PlanReport {
  namespaces: NamespacePlan[];
  /** Problems of the desired state (invalid resources, unknown keys, an unreadable source). */
  problems: Problem[];
  stateRead: boolean;
}

export interface NamespaceStatus {
  namespace: string | undefined;
  resources: string[];
  /** `kind/id` of the resources kept as the kernel has them (invalid input). */
  held: string[];
  /** The namespace exists (`ip netns list`); always true for the host's own. */
  exists: boolean;
  /** Nothing would be sent, nothing would be removed, nothing is held, and nothing failed. */
  inSync: boolean;
  /** Edit lines a pass would send now. */
  pendingLines: number;
  /** Left by an earlier run and no longer desired: the stale cleanup would remove it. */
  stale?: boolean;
  /** Rules and chains the agent wants there (all managers, tables and families). */
  rules: number;
  chains: number;
  error?: string;
}

export interface StatusReport {
  namespaces: NamespaceStatus[];
  problems: Problem[];
  stateRead: boolean;
}

interface Outcome {
  ok: boolean;
  error?: Error;
  /** Resources the failure was tied to: now held, the namespace runs again at once without them. */
  isolated?: string[];
}
type Waiter = (outcome: Outcome) => void;

/** `requeued`: idle, but a handler asked for another pass later (it does not hold `idle()` up). */
type Phase = "idle" | "coalescing" | "ready" | "running" | "retrying" | "requeued";

interface NsState {
  readonly key: NsKey;
  /** The live context and its managers (kept between runs; dropped after a failure). */
  context: LoopContext | undefined;
  /** What the last successful run reconciled, per kind. */
  applied: ByKind;
  /** The ids the last successful run held, per kind. */
  appliedHeld: Map<string, ReadonlySet<string>>;
  /** The kinds whose input was incomplete at the last successful run. */
  appliedIncomplete: ReadonlySet<string>;
  phase: Phase;
  timer: NodeJS.Timeout | undefined;
  /** The next run must be a full pass. */
  full: boolean;
  /** The next run must also verify every manager. */
  verify: boolean;
  /** A change arrived while running: run again after. */
  again: boolean;
  /**
   * Handler kinds the next run calls even with nothing changed: they asked to look again
   * (`requeue`, or their waker: a device appeared). No kernel re-read, unlike a full pass.
   */
  recheck: Set<string>;
  /** Consecutive failures (backoff exponent). */
  failures: number;
  /** Earliest arrival of a change not yet applied (performance.now()). */
  pendingSince: number | undefined;
  /** Resolved by the next run to start. */
  waiters: Waiter[];
  /** Rules/chains per `family/table` last counted, for the gauges. */
  counts: Map<string, { rules: number; chains: number }>;
}

/** A resource whose apply failed, by `kind/id`. */
interface Failing {
  readonly ns: NsKey;
  readonly kind: string;
  readonly id: string;
  error: Error;
  /** Consecutive failures (backoff exponent). */
  failures: number;
  /** Held until its retry: the rest of the namespace applies meanwhile. */
  held: boolean;
  timer: NodeJS.Timeout | undefined;
}

interface Work {
  handler: ResourceHandler;
  request: ReconcileRequest<unknown>;
}

class StoppedError extends Error {
  constructor() {
    super("the reconcile loop is stopping");
    this.name = "StoppedError";
  }
}

/**
 * The reconcile loop: takes whole desired-state documents (it is the state sources' `StateSink`),
 * works out which resources changed, and reconciles each affected network namespace through the
 * handlers, one `iptables-restore` per (namespace, family) per apply.
 *
 * Desired state (`DesiredState`): each handler parses the document on its own; what bad input gets
 * is worked in there (DESIGN §5a): an invalid resource keeps its last good version, or is *held*
 * through its handler's stand-in where this process never had one, and a kind whose input is
 * incomplete removes nothing. Until a source has delivered a document, nothing is changed at all.
 *
 * Scheduling
 * - Work is queued per namespace. The first change starts a `coalesce_ms` window; later changes join
 *   it, and changes that arrive while the namespace is queued, running or waiting for a retry are
 *   merged into the next run: what a run reconciles is computed when it starts, as the difference
 *   between the desired state then and what the namespace's last successful run reconciled.
 * - One run at a time per namespace; up to `max_parallel_namespaces` namespaces in parallel.
 * - A run calls every handler with work in the namespace, in registration order, with every manager
 *   they touch deferred, then applies each manager once.
 * - A failure tied to resources (the error's `resource` or `resources`, as `kind/id`: a restore line
 *   of theirs, an ipset of theirs) holds those resources and runs the namespace again at once: the
 *   rest of it lands, and they keep what the kernel has (or fail closed). Each is retried alone with
 *   its own capped exponential backoff.
 * - Any other failure (a handler threw, the namespace is gone) is logged with the error's fields and
 *   the namespace retried with capped exponential backoff as a full pass. The namespace's managers
 *   are dropped on failure: a handler that threw may have left a manager half-changed, and fresh
 *   managers re-read the kernel and compare everything, which also cleans up whatever a partial
 *   apply left. Other namespaces are not affected.
 * - Every `resync_interval` seconds a full pass runs over every namespace and then `verify()`s each
 *   manager (drift repair). Full passes on kept managers drop their cached kernel view first.
 *
 * Observers run in the namespace's worker after each run (success or failure), in order; their
 * errors are logged and never propagate. A slow observer delays that namespace's next run only.
 */
export class ReconcileLoop implements StateSink {
  private readonly handlers: readonly ResourceHandler[];
  private readonly observers: readonly ApplyObserver[];
  private readonly runner: IptablesRunner;
  private readonly logger: Logger;
  private readonly metrics: AgentMetrics;
  private readonly config: AgentConfig;
  private readonly defaultNamespace: string | undefined;

  private readonly desired: DesiredState;
  private sourceProblems: Problem[] = [];
  /** Resources whose apply failed, by `kind/id`. */
  private readonly failing = new Map<string, Failing>();

  private readonly states = new Map<NsKey, NsState>();
  private readonly ready: NsState[] = [];
  /** How many namespaces are in each phase. */
  private readonly phases: Record<Phase, number> = { idle: 0, coalescing: 0, ready: 0, running: 0, retrying: 0, requeued: 0 };
  private readonly inflight = new Set<Promise<void>>();
  private idleWaiters: (() => void)[] = [];
  private started = false;
  private stopping = false;
  private resyncTimer: NodeJS.Timeout | undefined;
  /** Per `family/table`: rules and chains over all namespaces. */
  private readonly totals = new Map<string, { rules: number; chains: number }>();

  constructor(options: ReconcileLoopOptions) {
    this.handlers = options.handlers;
    this.observers = options.observers;
    this.runner = options.runner;
    this.logger = options.logger;
    this.metrics = options.metrics;
    this.config = options.config;
    this.defaultNamespace = options.defaultNamespace;
    const kinds = new Set<string>();
    for (const h of this.handlers) {
      if (kinds.has(h.kind)) throw new AgentError("PLUGIN_INVALID", `two resource handlers for kind ${JSON.stringify(h.kind)}`);
      if (!Array.isArray(h.documentKeys) || !h.documentKeys.every((k) => typeof k === "string")) {
        throw new AgentError("PLUGIN_INVALID", `the resource handler for kind ${JSON.stringify(h.kind)} must list the top-level state keys it reads in documentKeys`);
      }
      kinds.add(h.kind);
    }
    this.desired = new DesiredState(this.handlers, this.defaultNamespace);
  }

  // ---- StateSink -------------------------------------------------------------------------------

  update(document: StateDocument, origin: string): void {
    const arrival = performance.now();
    const { affected, fresh } = this.desired.update(document, origin);
    for (const { kind, problem: p, keptAs } of fresh) {
      this.metrics.stateProblems.inc();
      const message =
        keptAs === "last-good"
          ? "invalid resource; its last good version stays in force"
          : keptAs === "stand-in"
            ? "invalid resource; kept as the kernel has it (filtered closed where the kernel has nothing)"
            : p.resource !== undefined
              ? "invalid resource in desired state"
              : "desired state problem; nothing of it is removed until it is fixed";
      this.logger.child({ kind, resource: p.resource, source: p.source, path: p.path }).warn({ problem: p.message, keptAs }, message);
    }
    // Failed resources that are no longer desired are not retried.
    for (const [key, f] of this.failing) {
      if (this.desired.ofKind(f.kind).has(f.id)) continue;
      if (f.timer) clearTimeout(f.timer);
      this.failing.delete(key);
    }
    this.updateHeldGauge();

    if (affected.size === 0) return;
    this.logger.debug({ origin, namespaces: affected.size }, "desired state changed");
    if (!this.started || this.stopping) return;
    for (const ns of affected) {
      const st = this.state(ns);
      st.pendingSince ??= arrival;
      this.request(st, { full: false, verify: false, immediate: false });
    }
  }

  problem(problem: Problem): void {
    this.metrics.stateProblems.inc();
    this.logger.warn(
      { source: problem.source, path: problem.path, resource: problem.resource, problem: problem.message },
      this.desired.read ? "desired state problem; the last good state stays in force" : "desired state problem; no state was read yet, so nothing is changed",
    );
    this.sourceProblems.push(problem);
  }

  // ---- lifecycle -------------------------------------------------------------------------------

  /** One full pass over every namespace, then keeps reconciling changes, retries and resyncs. */
  async start(): Promise<SyncReport> {
    if (this.started) throw new AgentError("AGENT_STATE", "the reconcile loop was already started");
    if (this.stopping) throw new AgentError("AGENT_STATE", "the reconcile loop was stopped");
    this.started = true;
    const report = await this.pass({ verify: false, label: "initial sync" });
    // Resources that failed in the pass are retried alone from now on.
    for (const f of this.failing.values()) if (f.held && !f.timer) this.scheduleResourceRetry(f);
    this.scheduleResync();
    return report;
  }

  /**
   * One full pass over every namespace, then returns. Before `start()` nothing else runs: no
   * timers, no retries (the report says which namespaces and resources failed). On a started loop
   * it is an extra full pass, and failures are retried as usual.
   */
  syncOnce(): Promise<SyncReport> {
    if (this.stopping) return Promise.reject(new Error("the reconcile loop was stopped"));
    return this.pass({ verify: false, label: "sync" });
  }

  /** No new work starts; the applies in flight finish; timers and pending retries are cancelled. Rules stay. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.resyncTimer) clearTimeout(this.resyncTimer);
    this.resyncTimer = undefined;
    for (const f of this.failing.values()) {
      if (f.timer) clearTimeout(f.timer);
      f.timer = undefined;
    }
    const stopped = new StoppedError();
    for (const st of this.states.values()) {
      if (st.phase === "coalescing" || st.phase === "retrying" || st.phase === "ready" || st.phase === "requeued") {
        if (st.timer) clearTimeout(st.timer);
        st.timer = undefined;
        this.setPhase(st, "idle");
      }
      if (st.phase !== "running") {
        for (const w of st.waiters.splice(0)) w({ ok: false, error: stopped });
      }
    }
    this.ready.length = 0;
    while (this.inflight.size > 0) await Promise.all([...this.inflight]);
    for (const st of this.states.values()) for (const w of st.waiters.splice(0)) w({ ok: false, error: stopped });
    for (const handler of this.handlers) {
      try {
        await handler.stop?.();
      } catch (err) {
        this.logger.error({ err, kind: handler.kind }, "resource handler failed to stop");
      }
    }
    this.checkIdle();
  }

  /** Resolves when nothing is queued, waiting (coalescing or retry backoff) or running. */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  // ---- plan and status ---------------------------------------------------------------------------

  /**
   * A dry run: per namespace, fresh managers (never the live ones) in a `dryRun` context, every
   * handler reconciles everything as a full pass, and `manager.plan()` reads the kernel and says
   * what would be sent; what the stale cleanup would remove is listed too. Nothing is applied.
   */
  async plan(): Promise<PlanReport> {
    const stale = await this.staleNamespaces();
    const keys = this.allNamespaces().filter((ns) => ns === undefined || !stale.has(ns));
    const plans = await mapLimit(keys, this.config.max_parallel_namespaces, async (ns) => (await this.dryRun(ns)).plan);
    for (const [namespace, actions] of stale) plans.push({ namespace, resources: [], held: [], families: [], actions, stale: true });
    return { namespaces: plans, problems: this.takeProblems(), stateRead: this.desired.read };
  }

  async status(): Promise<StatusReport> {
    const stale = await this.staleNamespaces();
    const keys = this.allNamespaces().filter((ns) => ns === undefined || !stale.has(ns));
    let existing: Set<string> | undefined;
    if (keys.some((k) => k !== undefined)) {
      try {
        existing = new Set(await listNamespaces(this.runner));
      } catch (err) {
        this.logger.warn({ err }, "cannot list network namespaces; inferring from the plans");
      }
    }
    const rows = await mapLimit(keys, this.config.max_parallel_namespaces, async (ns) => {
      const { plan, counts } = await this.dryRun(ns);
      const pendingLines = plan.families.reduce((n, f) => n + f.lines, 0);
      let rules = 0;
      let chains = 0;
      for (const c of counts.values()) {
        rules += c.rules;
        chains += c.chains;
      }
      const exists = ns === undefined ? true : existing ? existing.has(ns) : !plan.families.some((f) => f.namespaceMissing);
      const removals = plan.actions.some((a) => a.verb === "remove" || a.verb === "stop");
      const status: NamespaceStatus = {
        namespace: ns,
        resources: plan.resources,
        held: plan.held,
        exists,
        inSync: plan.error === undefined && pendingLines === 0 && plan.held.length === 0 && !removals,
        pendingLines,
        rules,
        chains,
      };
      if (plan.error !== undefined) status.error = plan.error;
      return status;
    });
    for (const namespace of stale.keys()) {
      rows.push({ namespace, resources: [], held: [], exists: true, inSync: false, pendingLines: 0, stale: true, rules: 0, chains: 0 });
    }
    return { namespaces: rows, problems: this.takeProblems(), stateRead: this.desired.read };
  }

  private async dryRun(ns: NsKey): Promise<{ plan: NamespacePlan; counts: Map<string, { rules: number; chains: number }> }> {
    const context = new LoopContext(ns, this.runner, this.logger.child({ namespace: ns ?? null, dryRun: true }), this.logger, true, this.config);
    const { work, resources, held } = this.work(ns, undefined, undefined, true);
    const plan: NamespacePlan = { namespace: ns, resources, held, families: [], actions: context.actions };
    try {
      for (const w of work) {
        context.handlerKind = w.handler.kind;
        await w.handler.reconcile(context, w.request);
      }
      context.handlerKind = undefined;
      for (const m of context.managerList()) plan.families.push(...(await m.plan()).families);
    } catch (err) {
      plan.families = [];
      plan.error = errorMessage(err);
      // The logger is bound to the namespace already.
      context.logger.warn(errorFields(err), "plan failed");
    }
    return { plan, counts: countRules(context) };
  }

  /** What the stale cleanups would remove, by namespace (other objects under their own name). */
  private async staleNamespaces(): Promise<Map<string, HostAction[]>> {
    const out = new Map<string, HostAction[]>();
    for (const action of await this.cleanupStale(true)) {
      const list = out.get(action.name) ?? [];
      list.push(action);
      out.set(action.name, list);
    }
    return out;
  }

  // ---- passes -------------------------------------------------------------------------------------

  private async pass(options: { verify: boolean; label: string }): Promise<SyncReport> {
    const started = performance.now();
    await this.cleanupStale(false);
    const keys = this.allNamespaces();
    const total = keys.length;
    let done = 0;
    let nextPercent = 10;
    let lastLog = started;
    const failed: SyncReport["failed"] = [];
    this.logger.info({ namespaces: total, pass: options.label }, this.desired.read ? "full pass started" : "full pass started; no desired state was read, so nothing is changed");
    const outcomes = keys.map(
      (ns) =>
        new Promise<void>((resolve) => {
          const st = this.state(ns);
          const waiter: Waiter = (outcome) => {
            if (!outcome.ok) failed.push({ namespace: ns, error: outcome.error ?? new Error("failed") });
            done++;
            const now = performance.now();
            if (total >= 10 && done < total && (done * 100 >= nextPercent * total || now - lastLog >= 2_000)) {
              while (nextPercent <= (done * 100) / total) nextPercent += 10;
              lastLog = now;
              this.logger.info({ pass: options.label, done, total, failed: failed.length, progress: `${done}/${total}` }, "full pass progress");
            }
            resolve();
          };
          if (this.stopping) waiter({ ok: false, error: new StoppedError() });
          else this.request(st, { full: true, verify: options.verify, immediate: true, waiter });
        }),
    );
    await Promise.all(outcomes);
    const durationMs = performance.now() - started;
    const failedResources = [...this.failing.values()]
      .filter((f) => f.held)
      .map((f) => ({ namespace: f.ns, resource: `${f.kind}/${f.id}`, error: f.error }));
    if (failed.length === 0 && failedResources.length === 0) this.metrics.lastSuccessfulSync.set(Date.now() / 1000);
    const clean = failed.length === 0 && failedResources.length === 0;
    const log = clean ? this.logger.info.bind(this.logger) : this.logger.warn.bind(this.logger);
    log(
      { pass: options.label, namespaces: total, applied: total - failed.length, failed: failed.length, failedResources: failedResources.length, durationMs: Math.round(durationMs) },
      clean ? "full pass finished" : "full pass finished with failures",
    );
    return { namespaces: total, applied: total - failed.length, failed, failedResources, problems: this.takeProblems(), stateRead: this.desired.read };
  }

  /**
   * Each handler removes (or, in a dry run, lists) what earlier runs left for resources no longer
   * desired (see ResourceHandler). Never while the kind's input is incomplete or no state was read.
   */
  private async cleanupStale(dryRun: boolean): Promise<HostAction[]> {
    const all: HostAction[] = [];
    for (const handler of this.handlers) {
      if (!handler.cleanupStale) continue;
      const logger = this.logger.child({ kind: handler.kind });
      if (!this.desired.complete(handler.kind)) {
        if (!dryRun && this.desired.read) logger.warn({}, "stale resource cleanup skipped: the desired state of this kind is incomplete");
        continue;
      }
      try {
        const actions = await handler.cleanupStale({ runner: this.runner, logger, dryRun }, this.desired.ofKind(handler.kind));
        all.push(...actions);
        if (!dryRun && actions.length) logger.info({ removed: actions.map((a) => `${a.object} ${a.name}`) }, "stale resources from an earlier run removed");
      } catch (err) {
        // The pass goes on; the next full pass tries again.
        logger.warn({ err }, dryRun ? "stale resource check failed" : "stale resource cleanup failed");
      }
    }
    return all;
  }

  private scheduleResync(): void {
    const interval = this.config.resync_interval;
    if (this.stopping || interval <= 0) return;
    this.resyncTimer = setTimeout(() => {
      this.resyncTimer = undefined;
      void this.pass({ verify: true, label: "resync" })
        .catch((err: unknown) => this.logger.error({ err }, "resync failed"))
        .finally(() => this.scheduleResync());
    }, interval * 1000);
  }

  // ---- scheduling ---------------------------------------------------------------------------------

  private state(ns: NsKey): NsState {
    let st = this.states.get(ns);
    if (!st) {
      st = {
        key: ns,
        context: undefined,
        applied: new Map(),
        appliedHeld: new Map(),
        appliedIncomplete: new Set(),
        phase: "idle",
        timer: undefined,
        full: false,
        verify: false,
        again: false,
        recheck: new Set(),
        failures: 0,
        pendingSince: undefined,
        waiters: [],
        counts: new Map(),
      };
      this.states.set(ns, st);
      this.phases.idle++;
    }
    return st;
  }

  /**
   * Asks for a run of a namespace. `immediate` skips the coalesce window (and a pending retry's
   * backoff): full passes use it. Requests for a namespace that is already queued, waiting or
   * running are merged into its next run.
   */
  private request(st: NsState, r: { full: boolean; verify: boolean; immediate: boolean; waiter?: Waiter }): void {
    st.full ||= r.full;
    st.verify ||= r.verify;
    if (r.waiter) st.waiters.push(r.waiter);
    switch (st.phase) {
      case "running":
        st.again = true;
        return;
      case "ready":
        return;
      case "coalescing":
      case "retrying":
        if (r.immediate) this.makeReady(st);
        return;
      case "requeued":
        if (st.timer) clearTimeout(st.timer);
        st.timer = undefined;
        this.setPhase(st, "idle");
      // falls through: a requested run replaces the requeued one
      case "idle":
        if (r.immediate || this.config.coalesce_ms === 0) this.makeReady(st);
        else {
          this.setPhase(st, "coalescing");
          st.timer = setTimeout(() => {
            st.timer = undefined;
            this.makeReady(st);
          }, this.config.coalesce_ms);
        }
    }
  }

  private makeReady(st: NsState): void {
    if (st.timer) clearTimeout(st.timer);
    st.timer = undefined;
    this.setPhase(st, "ready");
    this.ready.push(st);
    this.pump();
  }

  private setPhase(st: NsState, phase: Phase): void {
    if (st.timer && phase !== "coalescing" && phase !== "retrying") {
      clearTimeout(st.timer);
      st.timer = undefined;
    }
    this.phases[st.phase]--;
    this.phases[phase]++;
    st.phase = phase;
  }

  private pump(): void {
    while (!this.stopping && this.phases.running < this.config.max_parallel_namespaces && this.ready.length > 0) {
      const st = this.ready.shift()!;
      if (st.phase !== "ready") continue;
      const p = this.run(st);
      this.inflight.add(p);
      void p.finally(() => this.inflight.delete(p));
    }
  }

  private async run(st: NsState): Promise<void> {
    this.setPhase(st, "running");
    const waiters = st.waiters.splice(0);
    const full = st.full;
    const verify = st.verify;
    const recheck = st.recheck;
    const pendingSince = st.pendingSince;
    st.full = st.verify = st.again = false;
    st.recheck = new Set();
    st.pendingSince = undefined;
    let outcome: Outcome;
    try {
      outcome = await this.reconcileNamespace(st, full, verify, recheck, pendingSince);
    } catch (err) {
      // reconcileNamespace handles its own errors; this is a bug guard.
      outcome = { ok: false, error: asError(err) };
      this.logger.error({ err, namespace: st.key }, "reconcile loop error");
    }
    this.setPhase(st, "idle");

    if (outcome.isolated && !this.stopping) {
      // The resources to blame are held now: the same run again at once lands the rest of the
      // namespace, and its waiters (a pass) hear of that run, not of this one.
      st.waiters.unshift(...waiters);
      st.full = true;
      st.verify ||= verify;
      for (const kind of recheck) st.recheck.add(kind);
      if (pendingSince !== undefined) st.pendingSince = Math.min(pendingSince, st.pendingSince ?? Infinity);
      this.makeReady(st);
      this.checkIdle();
      return;
    }
    for (const w of waiters) w(outcome);

    if (!outcome.ok) {
      st.failures++;
      st.full = true;
      if (pendingSince !== undefined) st.pendingSince = Math.min(pendingSince, st.pendingSince ?? Infinity);
    } else {
      st.failures = 0;
    }
    const requeue = st.context?.takeRequeue();
    if (!this.stopping) {
      if (st.waiters.length > 0) this.makeReady(st);
      else if (!outcome.ok && this.started) this.scheduleRetry(st);
      else if (st.again) this.request(st, { full: false, verify: false, immediate: false });
      else if (requeue !== undefined && this.started) this.scheduleRequeue(st, requeue);
    }
    this.maybeForget(st);
    this.pump();
    this.checkIdle();
  }

  private scheduleRetry(st: NsState): void {
    const delay = this.backoff(st.failures);
    this.setPhase(st, "retrying");
    this.logger.info({ namespace: st.key, delayMs: delay, failures: st.failures }, "namespace apply will be retried");
    st.timer = setTimeout(() => {
      st.timer = undefined;
      this.metrics.retries.inc();
      this.makeReady(st);
    }, delay);
  }

  private backoff(failures: number): number {
    return Math.min(this.config.retry_initial_delay_ms * 2 ** Math.min(failures - 1, 30), this.config.retry_max_delay_ms);
  }

  /** A held failed resource is tried again alone after its backoff (the namespace's other resources are applied). */
  private scheduleResourceRetry(f: Failing): void {
    if (!this.started || this.stopping) return;
    const delay = this.backoff(f.failures);
    this.logger.info({ namespace: f.ns ?? null, kind: f.kind, resource: f.id, delayMs: delay, failures: f.failures }, "failed resource will be retried");
    f.timer = setTimeout(() => {
      f.timer = undefined;
      if (this.failing.get(`${f.kind}/${f.id}`) !== f || this.stopping) return;
      f.held = false;
      this.updateHeldGauge();
      this.metrics.retries.inc();
      this.request(this.state(f.ns), { full: false, verify: false, immediate: true });
    }, delay);
    f.timer.unref?.();
  }

  private scheduleRequeue(st: NsState, requeue: { afterMs: number; kinds: ReadonlySet<string> }): void {
    this.setPhase(st, "requeued");
    // Kept for whichever run comes first: the timer's, or a change's that replaces it.
    for (const kind of requeue.kinds) st.recheck.add(kind);
    st.timer = setTimeout(() => {
      st.timer = undefined;
      this.makeReady(st);
    }, requeue.afterMs);
    st.timer.unref?.();
  }

  /** A handler's waker: call it again in this namespace soon (coalesced like a change), nothing re-read. */
  private wake(ns: NsKey, kind: string): void {
    if (!this.started || this.stopping) return;
    const st = this.states.get(ns);
    // A forgotten namespace has nothing desired and nothing applied: nothing to look at again.
    if (!st) return;
    st.recheck.add(kind);
    this.request(st, { full: false, verify: false, immediate: false });
  }

  /** A namespace with nothing desired, nothing applied and nothing pending is forgotten. */
  private maybeForget(st: NsState): void {
    if (st.phase !== "idle" || st.waiters.length > 0 || st.again || st.failures > 0) return;
    if (this.desired.has(st.key) || hasAny(st.applied) || this.homeOf(st.key).length > 0) return;
    this.dropContext(st);
    this.states.delete(st.key);
    this.phases.idle--;
  }

  private isIdle(): boolean {
    if (this.phases.running > 0 || this.phases.ready > 0 || this.phases.coalescing > 0 || this.phases.retrying > 0) return false;
    // A failed resource waiting for its retry is a retry backoff too.
    for (const f of this.failing.values()) if (f.timer) return false;
    return true;
  }

  private checkIdle(): void {
    if (this.idleWaiters.length === 0 || !this.isIdle()) return;
    for (const w of this.idleWaiters.splice(0)) w();
  }

  private allNamespaces(): NsKey[] {
    const keys = new Set<NsKey>(this.desired.namespaces());
    for (const [k, st] of this.states) if (hasAny(st.applied) || st.context) keys.add(k);
    for (const h of this.handlers) if (this.desired.complete(h.kind)) for (const ns of this.homeNamespaces(h)) keys.add(ns);
    return [...keys];
  }

  /** A handler's home namespaces, with undefined resolved to the agent's default namespace. */
  private homeNamespaces(handler: ResourceHandler): NsKey[] {
    return (handler.homeNamespaces ?? []).map((ns) => ns ?? this.defaultNamespace);
  }

  /** The handlers (complete kinds only) that have this namespace as a home. */
  private homeOf(ns: NsKey): ResourceHandler[] {
    return this.handlers.filter((h) => this.desired.complete(h.kind) && this.homeNamespaces(h).includes(ns));
  }

  // ---- one namespace ------------------------------------------------------------------------------

  /** Ids held in a namespace for a kind: stand-ins of invalid input, and failed resources waiting for their retry. */
  private heldIn(ns: NsKey, kind: string, desired: ReadonlyMap<string, unknown>): Set<string> {
    const held = new Set<string>();
    for (const id of desired.keys()) if (this.desired.isHeld(kind, id)) held.add(id);
    for (const f of this.failing.values()) if (f.held && f.kind === kind && f.ns === ns && desired.has(f.id)) held.add(f.id);
    return held;
  }

  /** What each handler has to do in a namespace: the desired state now against what `applied` holds. */
  private work(
    ns: NsKey,
    applied: ByKind | undefined,
    appliedHeld: ReadonlyMap<string, ReadonlySet<string>> | undefined,
    full: boolean,
    recheck: ReadonlySet<string> = new Set(),
    /** Kinds called even with nothing to do here: their input is incomplete, or just turned complete. */
    always: ReadonlySet<string> = new Set(),
  ): { work: Work[]; resources: string[]; held: string[]; heldByKind: Map<string, ReadonlySet<string>>; desired: ByKind } {
    const desired = this.desired.in(ns);
    const work: Work[] = [];
    const resources: string[] = [];
    const heldList: string[] = [];
    const heldByKind = new Map<string, ReadonlySet<string>>();
    const home = new Set(full ? this.homeOf(ns) : []);
    for (const handler of this.handlers) {
      const want = desired.get(handler.kind) ?? new Map<string, unknown>();
      const had = applied?.get(handler.kind) ?? new Map<string, unknown>();
      const held = this.heldIn(ns, handler.kind, want);
      const wasHeld = appliedHeld?.get(handler.kind) ?? new Set<string>();
      heldByKind.set(handler.kind, held);
      for (const id of held) heldList.push(`${handler.kind}/${id}`);
      const changed = new Set<string>();
      const removed = new Map<string, unknown>();
      for (const [id, r] of want) {
        if (full || !had.has(id) || !same(handler, had.get(id), r) || held.has(id) !== wasHeld.has(id)) changed.add(id);
      }
      for (const [id, r] of had) if (!want.has(id)) removed.set(id, r);
      if (changed.size === 0 && removed.size === 0 && !recheck.has(handler.kind) && !home.has(handler) && !always.has(handler.kind)) continue;
      for (const id of changed) resources.push(`${handler.kind}/${id}`);
      for (const id of removed.keys()) resources.push(`${handler.kind}/${id}`);
      work.push({ handler, request: { desired: want, changed, removed, full, held, complete: this.desired.complete(handler.kind) } });
    }
    return { work, resources, held: heldList, heldByKind, desired };
  }

  private async reconcileNamespace(st: NsState, full: boolean, verify: boolean, recheck: ReadonlySet<string>, pendingSince: number | undefined): Promise<Outcome> {
    const ns = st.key;
    const incomplete = new Set(this.handlers.filter((h) => !this.desired.complete(h.kind)).map((h) => h.kind));
    const completed = [...st.appliedIncomplete].filter((kind) => !incomplete.has(kind));
    if (completed.length > 0) {
      // Input that was incomplete is complete now: what was kept for want of it (in the managers'
      // models, unknown to the loop) goes, so the run starts from fresh managers, as a full pass.
      this.dropContext(st);
      full = true;
    }
    // On a full pass a kind whose input is incomplete is called everywhere, even with nothing
    // desired here, so that it keeps what the kernel has; and once more when it turned complete.
    const always = new Set(full && this.desired.read ? [...incomplete, ...completed] : completed);
    const { work, resources, heldByKind, desired } = this.work(ns, st.applied, st.appliedHeld, full, recheck, always);
    if (work.length === 0 && !(verify && st.context)) {
      // Nothing changed (e.g. a change reverted within the window).
      st.applied = desired;
      st.appliedHeld = heldByKind;
      st.appliedIncomplete = incomplete;
      if (pendingSince !== undefined) this.metrics.eventToApplied.observe((performance.now() - pendingSince) / 1000);
      return { ok: true };
    }
    const started = performance.now();
    const logger = this.logger.child({ namespace: ns ?? null });
    let context = st.context;
    // A full pass re-reads the kernel; with `verify` the verify after the apply does that (and counts the drift).
    if (context && full && !verify) for (const m of context.managerList()) m.invalidate();
    context ??= st.context = new LoopContext(ns, this.runner, logger, this.logger, false, this.config, {
      wake: (kind) => this.wake(ns, kind),
      live: () => this.started && !this.stopping,
    });
    const results: ApplyResult[] = [];
    let failingKind: string | undefined;
    let drift = false;
    context.beginRun();
    try {
      try {
        for (const w of work) {
          failingKind = w.handler.kind;
          context.handlerKind = w.handler.kind;
          await w.handler.reconcile(context, w.request);
        }
      } finally {
        // requeue() and waker() name the handler being called; outside a call there is none.
        context.handlerKind = undefined;
      }
      failingKind = undefined;
      for (const m of context.endRun()) results.push(await m.deferApplyOff());
      if (verify) {
        for (const m of context.managerList()) {
          const v = await m.verify();
          if (v.repaired) {
            drift = true;
            results.push({ families: v.drift, sent: true, lines: v.drift.reduce((n, f) => n + f.lines, 0), deferred: false });
          }
        }
      }
    } catch (err) {
      // A handler that threw may leave a restore stream open (a cold l2 add): end it uncommitted.
      for (const m of context.endRun()) m.abandonStreams();
      const error = asError(err);
      const durationMs = performance.now() - started;
      if (errorCode(error) === "NAMESPACE_GONE" && desired.size === 0 && !this.desired.has(ns)) {
        // Only removals were left, and the namespace went away with its rules: nothing to do.
        st.applied = desired;
        st.appliedHeld = heldByKind;
        this.dropContext(st);
        logger.info({ resources: resources.length }, "namespace is gone; nothing left to remove");
        await this.notify({ namespace: ns, resources, durationMs, full });
        return { ok: true };
      }
      // The managers may be half-changed (a handler threw) or out of step with the kernel: the retry
      // starts from fresh ones, which re-read the kernel.
      this.dropContext(st);
      const code = errorCode(error) ?? (failingKind ? "HANDLER_FAILED" : "UNKNOWN");
      this.metrics.restoreErrors.inc({ code });
      const culprits = this.culprits(error, desired, heldByKind);
      if (culprits.length > 0) {
        for (const { kind, id } of culprits) this.holdFailed(ns, kind, id, error);
        logger.error(
          { ...errorFields(error), code, kind: failingKind, held: culprits.map((c) => `${c.kind}/${c.id}`), durationMs: Math.round(durationMs) },
          "resource failed to apply; held as the kernel has it, the rest of the namespace applies now, it is retried alone",
        );
        await this.notify({ namespace: ns, resources, error, durationMs, full });
        return { ok: false, error, isolated: culprits.map((c) => `${c.kind}/${c.id}`) };
      }
      logger.error(
        { ...errorFields(error), code, kind: failingKind, full, resources: resources.length, durationMs: Math.round(durationMs) },
        failingKind ? "resource handler failed; namespace will be retried" : "namespace apply failed",
      );
      await this.notify({ namespace: ns, resources, error, durationMs, full });
      return { ok: false, error };
    }

    const durationMs = performance.now() - started;
    st.applied = desired;
    st.appliedHeld = heldByKind;
    st.appliedIncomplete = incomplete;
    this.settleFailing(ns, heldByKind);
    const result = mergeResults(results);
    this.metrics.applyDuration.observe({ kind: full ? "full" : "partial" }, durationMs / 1000);
    let lockRetries = 0;
    for (const f of result.families) {
      lockRetries += f.lockRetries;
      if (!f.sent) continue;
      const family = familyLabel(f.family);
      this.metrics.restoreCalls.inc({ family }, 1 + f.lockRetries);
      this.metrics.restoreLines.inc({ family }, f.lines);
    }
    if (lockRetries > 0) this.metrics.lockRetries.inc(lockRetries);
    if (drift) this.metrics.driftRepairs.inc();
    if (pendingSince !== undefined) this.metrics.eventToApplied.observe((performance.now() - pendingSince) / 1000);
    if (!this.desired.has(ns) && desired.size === 0 && this.homeOf(ns).length === 0) {
      // Nothing left here: forget the managers (their rules were removed by this run).
      this.dropContext(st);
    } else {
      this.setCounts(st, countRules(context));
    }
    const removed = work.reduce((n, w) => n + w.request.removed.size, 0);
    const changed = work.reduce((n, w) => n + (w.request.full ? 0 : w.request.changed.size), 0);
    const fields = { full, changed, removed, resources: resources.length, lines: result.lines, sent: result.sent, durationMs: Math.round(durationMs) };
    // One line per namespace that really changed; a resync that finds nothing to do stays quiet.
    if (result.sent || removed > 0 || changed > 0) logger.info(fields, "namespace applied");
    else logger.debug(fields, "namespace applied");
    await this.notify({ namespace: ns, resources, result, durationMs, full });
    return { ok: true };
  }

  /**
   * The resources a failure is tied to, as its error names them (`resource` or `resources`,
   * `kind/id`, along the `cause` chain): those desired in this namespace and not held yet.
   */
  private culprits(error: Error, desired: ByKind, held: ReadonlyMap<string, ReadonlySet<string>>): { kind: string; id: string }[] {
    const out: { kind: string; id: string }[] = [];
    const seen = new Set<string>();
    for (const name of resourcesOf(error)) {
      const slash = name.indexOf("/");
      if (slash <= 0 || seen.has(name)) continue;
      seen.add(name);
      const kind = name.slice(0, slash);
      const id = name.slice(slash + 1);
      if (!desired.get(kind)?.has(id) || held.get(kind)?.has(id)) continue;
      const f = this.failing.get(name);
      if (f?.held) continue;
      out.push({ kind, id });
    }
    return out;
  }

  private holdFailed(ns: NsKey, kind: string, id: string, error: Error): void {
    const key = `${kind}/${id}`;
    const before = this.failing.get(key);
    if (before?.timer) clearTimeout(before.timer);
    const f: Failing = { ns, kind, id, error, failures: (before?.failures ?? 0) + 1, held: true, timer: undefined };
    this.failing.set(key, f);
    this.metrics.resourceFailures.inc({ kind });
    this.updateHeldGauge();
    this.scheduleResourceRetry(f);
  }

  /** After a successful run: failed resources it applied (not held any more) have recovered. */
  private settleFailing(ns: NsKey, held: ReadonlyMap<string, ReadonlySet<string>>): void {
    let changed = false;
    for (const [key, f] of this.failing) {
      if (f.ns !== ns || f.held || held.get(f.kind)?.has(f.id)) continue;
      this.failing.delete(key);
      this.logger.info({ namespace: ns ?? null, kind: f.kind, resource: f.id, failures: f.failures }, "failed resource applied");
      changed = true;
    }
    if (changed) this.updateHeldGauge();
  }

  private updateHeldGauge(): void {
    let invalid = 0;
    for (const h of this.handlers) for (const id of this.desired.ofKind(h.kind).keys()) if (this.desired.isHeld(h.kind, id)) invalid++;
    let failed = 0;
    for (const f of this.failing.values()) if (f.held) failed++;
    this.metrics.heldResources.set({ reason: "invalid" }, invalid);
    this.metrics.heldResources.set({ reason: "failed" }, failed);
  }

  private dropContext(st: NsState): void {
    st.context = undefined;
    if (!hasAny(st.applied) && !this.desired.has(st.key)) this.setCounts(st, new Map());
  }

  private setCounts(st: NsState, counts: Map<string, { rules: number; chains: number }>): void {
    const labels = new Set([...st.counts.keys(), ...counts.keys()]);
    for (const label of labels) {
      const before = st.counts.get(label) ?? { rules: 0, chains: 0 };
      const after = counts.get(label) ?? { rules: 0, chains: 0 };
      const t = this.totals.get(label) ?? { rules: 0, chains: 0 };
      t.rules += after.rules - before.rules;
      t.chains += after.chains - before.chains;
      this.totals.set(label, t);
      const [family, table] = label.split("/") as [string, string];
      this.metrics.rules.set({ family, table }, t.rules);
      this.metrics.chains.set({ family, table }, t.chains);
    }
    st.counts = counts;
  }

  private async notify(event: ApplyEvent): Promise<void> {
    for (const observer of this.observers) {
      try {
        await observer.onApply(event);
      } catch (err) {
        this.logger.warn({ err, namespace: event.namespace }, "apply observer failed");
      }
    }
  }

  // ---- helpers ------------------------------------------------------------------------------------

  private takeProblems(): Problem[] {
    const out = [...this.desired.problems.map((p) => p.problem), ...this.sourceProblems];
    this.sourceProblems = [];
    return out;
  }
}

function countRules(context: LoopContext): Map<string, { rules: number; chains: number }> {
  const counts = new Map<string, { rules: number; chains: number }>();
  for (const m of context.managerList()) {
    for (const family of (m.useIpv6 ? [4, 6] : [4]) as IpFamily[]) {
      for (const table of Object.values(m.tables(family))) {
        const label = `${familyLabel(family)}/${table.name}`;
        const c = counts.get(label) ?? { rules: 0, chains: 0 };
        c.chains += [...table.declaredChains()].length;
        for (const chain of table.chainsWithRules()) c.rules += table.renderChain(chain).length;
        counts.set(label, c);
      }
    }
  }
  return counts;
}

function familyLabel(family: IpFamily): string {
  return family === 4 ? "ipv4" : "ipv6";
}

function mergeResults(results: readonly ApplyResult[]): ApplyResult {
  const families: FamilyApplyResult[] = results.flatMap((r) => r.families);
  return { families, sent: results.some((r) => r.sent), lines: results.reduce((n, r) => n + r.lines, 0), deferred: false };
}

function hasAny(byKind: ByKind): boolean {
  for (const m of byKind.values()) if (m.size > 0) return true;
  return false;
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

function errorCode(err: Error): string | undefined {
  const code = (err as unknown as { code?: unknown }).code;
  return typeof code === "string" ? code : undefined;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The resources an error names (`resources`, else `resource`), along its `cause` chain. */
function resourcesOf(err: unknown): string[] {
  const out: string[] = [];
  for (let e: unknown = err, depth = 0; typeof e === "object" && e !== null && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const { resources, resource } = e as { resources?: unknown; resource?: unknown };
    if (Array.isArray(resources)) out.push(...resources.filter((r): r is string => typeof r === "string"));
    else if (typeof resource === "string") out.push(resource);
  }
  return out;
}

/**
 * The fields of an error worth a log line. Typed errors (with a `code`) give their fields (code,
 * resource, line, context, ...) and the first line of their message; anything else (a handler's
 * bug) is logged whole, stack included. `namespace` is left to the caller's logger bindings.
 */
function errorFields(err: unknown): Record<string, unknown> {
  if (typeof err !== "object" || err === null) return { error: String(err) };
  const e = err as Record<string, unknown>;
  if (typeof e.code !== "string") return { err };
  const out: Record<string, unknown> = { error: String(e.message ?? "").split("\n")[0], type: e.name };
  for (const k of ["code", "resource", "resources", "line", "lineText", "chain", "table", "exitCode", "plugin"]) {
    if (e[k] !== undefined) out[k] = e[k];
  }
  if (typeof e.stderr === "string" && e.stderr) out.stderr = e.stderr.trim();
  if (Array.isArray(e.context) && e.context.length > 0) {
    out.context = (e.context as { number: number; text: string; failing: boolean }[]).map((c) => `${c.failing ? ">" : " "}${c.number}: ${c.text}`);
  }
  return out;
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
