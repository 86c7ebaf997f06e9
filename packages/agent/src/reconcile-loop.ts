import {
  IptablesApplier,
  IptablesManager,
  listNamespaces,
  wrapNameFor,
  type ApplyResult,
  type CoreLogger,
  type FamilyApplyResult,
  type FamilyPlan,
  type IpFamily,
  type IptablesManagerOptions,
  type IptablesRunner,
} from "@chainwarden/core";
import type { Logger } from "pino";
import type { Problem } from "./agent-errors.js";
import type { AgentMetrics } from "./agent-metrics.js";
import type { AgentConfig } from "./config-schema.js";
import type {
  ApplyEvent,
  ApplyObserver,
  ReconcileContext,
  ReconcileRequest,
  ResourceHandler,
  StateDocument,
  StateSink,
} from "./extension-points.js";

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

export interface SyncReport {
  /** Namespaces in the pass. */
  namespaces: number;
  /** Namespaces applied successfully. */
  applied: number;
  failed: { namespace: string | undefined; error: Error }[];
  /**
   * The invalid resources of the current desired state, plus the problems state sources reported
   * since the previous report.
   */
  problems: Problem[];
}

export interface NamespacePlan {
  namespace: string | undefined;
  /** `kind/id` of every desired resource in the namespace. */
  resources: string[];
  /** One entry per manager and IP family; `input` is exactly what would be sent. */
  families: FamilyPlan[];
  /** Set when a handler (or reading the kernel) failed; `families` is then empty. */
  error?: string;
}

export interface NamespaceStatus {
  namespace: string | undefined;
  resources: string[];
  /** The namespace exists (`ip netns list`); always true for the host's own. */
  exists: boolean;
  /** Nothing would be sent (and nothing failed). */
  inSync: boolean;
  /** Edit lines a pass would send now. */
  pendingLines: number;
  /** Rules and chains the agent wants there (all managers, tables and families). */
  rules: number;
  chains: number;
  error?: string;
}

type NsKey = string | undefined;
type ManagerOptions = Pick<IptablesManagerOptions, "wrapName" | "stateless" | "nat" | "useIpv6">;
/** kind → id → resource. Never mutated once built (runs keep references to them). */
type ByKind = Map<string, ReadonlyMap<string, unknown>>;

interface Outcome {
  ok: boolean;
  error?: Error;
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
 * Desired state
 * - Each handler parses the document on its own. Invalid resources are logged, counted and reported,
 *   and are left out of the new desired state only if they were never valid: **a resource that was
 *   valid before and is now invalid keeps its last good version**, so one bad edit never deletes a
 *   router's rules. A problem that names no resource (the kind's whole section is broken, or `parse`
 *   threw) keeps every previous resource of that kind that the new parse did not return.
 * - Resources equal to their previous version (`handler.equals`, default deep JSON equality) are not
 *   reconciled again. A resource that moved namespace is removed from the old one and added to the new.
 *
 * Scheduling
 * - Work is queued per namespace. The first change starts a `coalesce_ms` window; later changes join
 *   it, and changes that arrive while the namespace is queued, running or waiting for a retry are
 *   merged into the next run: what a run reconciles is computed when it starts, as the difference
 *   between the desired state then and what the namespace's last successful run reconciled.
 * - One run at a time per namespace; up to `max_parallel_namespaces` namespaces in parallel.
 * - A run calls every handler with work in the namespace, in registration order, with every manager
 *   they touch deferred, then applies each manager once.
 * - A failed run (a handler threw, a restore failed, the namespace is gone) is logged with the
 *   error's fields and retried with capped exponential backoff as a full pass. The namespace's
 *   managers are dropped on failure: a handler that threw may have left a manager half-changed, and
 *   fresh managers re-read the kernel and compare everything, which also cleans up whatever a
 *   partial apply left. Other namespaces are not affected.
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

  /** The desired state, per kind. */
  private desired: ByKind = new Map();
  /** The namespace of each desired resource, per kind. */
  private nsOfResource = new Map<string, Map<string, NsKey>>();
  /** The desired state by namespace, then kind. */
  private desiredByNs = new Map<NsKey, ByKind>();
  private resourceProblems: Problem[] = [];
  private reportedProblemKeys = new Set<string>();
  private sourceProblems: Problem[] = [];

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
      if (kinds.has(h.kind)) throw new Error(`two resource handlers for kind ${JSON.stringify(h.kind)}`);
      kinds.add(h.kind);
    }
  }

  // ---- StateSink -------------------------------------------------------------------------------

  update(document: StateDocument, origin: string): void {
    const arrival = performance.now();
    const desired: ByKind = new Map();
    const nsOfResource = new Map<string, Map<string, NsKey>>();
    const problems: { kind: string; problem: Problem }[] = [];
    const kept = new Set<string>();
    const affected = new Set<NsKey>();

    for (const handler of this.handlers) {
      const kind = handler.kind;
      const prev = this.desired.get(kind) ?? new Map<string, unknown>();
      const prevNs = this.nsOfResource.get(kind) ?? new Map<string, NsKey>();
      let resources: ReadonlyMap<string, unknown>;
      let kindProblems: Problem[];
      try {
        const parsed = handler.parse(document, origin);
        resources = parsed.resources;
        kindProblems = [...parsed.problems];
      } catch (err) {
        resources = new Map();
        kindProblems = [{ source: origin, path: "", message: `the ${kind} handler could not parse the document: ${errorMessage(err)}` }];
      }
      const next = new Map<string, unknown>();
      const nextNs = new Map<string, NsKey>();
      for (const [id, r] of resources) {
        let ns: NsKey;
        try {
          ns = handler.namespaceOf(r) ?? this.defaultNamespace;
        } catch (err) {
          kindProblems.push({ source: origin, path: "", resource: id, message: `cannot tell the namespace: ${errorMessage(err)}` });
          continue;
        }
        const p = prev.get(id);
        // Keep the previous object when equal: runs then see "unchanged" by identity.
        next.set(id, p !== undefined && this.same(handler, p, r) ? p : r);
        nextNs.set(id, ns);
      }
      const keepPrevious = (id: string) => {
        if (next.has(id) || !prev.has(id)) return;
        next.set(id, prev.get(id));
        nextNs.set(id, prevNs.get(id));
        kept.add(`${kind}/${id}`);
      };
      for (const p of kindProblems) if (p.resource !== undefined) keepPrevious(p.resource);
      if (kindProblems.some((p) => p.resource === undefined)) for (const id of prev.keys()) keepPrevious(id);

      for (const [id, r] of next) {
        const p = prev.get(id);
        if (p === r) continue;
        affected.add(nextNs.get(id));
        if (p !== undefined) affected.add(prevNs.get(id));
      }
      for (const id of prev.keys()) if (!next.has(id)) affected.add(prevNs.get(id));

      desired.set(kind, next);
      nsOfResource.set(kind, nextNs);
      for (const p of kindProblems) problems.push({ kind, problem: p });
    }

    // Problems: logged and counted when new, reported while they last.
    const keys = new Set<string>();
    for (const { kind, problem: p } of problems) {
      const key = JSON.stringify([kind, p.source, p.path, p.resource, p.message]);
      keys.add(key);
      if (this.reportedProblemKeys.has(key)) continue;
      this.metrics.stateProblems.inc();
      const keptHere = p.resource !== undefined && kept.has(`${kind}/${p.resource}`);
      this.logger
        .child({ kind, resource: p.resource, source: p.source, path: p.path })
        .warn({ problem: p.message, keptLastGood: keptHere }, keptHere ? "invalid resource; its last good version stays in force" : "invalid resource in desired state");
    }
    this.reportedProblemKeys = keys;
    this.resourceProblems = problems.map((p) => p.problem);

    this.desired = desired;
    this.nsOfResource = nsOfResource;
    const byNs = new Map<NsKey, Map<string, Map<string, unknown>>>();
    for (const [kind, ids] of nsOfResource) {
      const resources = desired.get(kind)!;
      for (const [id, ns] of ids) {
        let kinds = byNs.get(ns);
        if (!kinds) byNs.set(ns, (kinds = new Map()));
        let m = kinds.get(kind);
        if (!m) kinds.set(kind, (m = new Map()));
        m.set(id, resources.get(id));
      }
    }
    this.desiredByNs = byNs;

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
    this.logger.warn({ source: problem.source, path: problem.path, resource: problem.resource, problem: problem.message }, "desired state problem; the last good state stays in force");
    this.sourceProblems.push(problem);
  }

  // ---- lifecycle -------------------------------------------------------------------------------

  /** One full pass over every namespace, then keeps reconciling changes, retries and resyncs. */
  async start(): Promise<SyncReport> {
    if (this.started) throw new Error("the reconcile loop was already started");
    if (this.stopping) throw new Error("the reconcile loop was stopped");
    this.started = true;
    const report = await this.pass({ verify: false, label: "initial sync" });
    this.scheduleResync();
    return report;
  }

  /**
   * One full pass over every namespace, then returns. Before `start()` nothing else runs: no
   * timers, no retries (the report says which namespaces failed). On a started loop it is an extra
   * full pass, and failures are retried as usual.
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
   * what would be sent. Nothing is applied.
   */
  async plan(): Promise<NamespacePlan[]> {
    const keys = this.allNamespaces();
    return mapLimit(keys, this.config.max_parallel_namespaces, async (ns) => {
      const { plan } = await this.dryRun(ns);
      return plan;
    });
  }

  async status(): Promise<NamespaceStatus[]> {
    const keys = this.allNamespaces();
    let existing: Set<string> | undefined;
    if (keys.some((k) => k !== undefined)) {
      try {
        existing = new Set(await listNamespaces(this.runner));
      } catch (err) {
        this.logger.warn({ err }, "cannot list network namespaces; inferring from the plans");
      }
    }
    return mapLimit(keys, this.config.max_parallel_namespaces, async (ns) => {
      const { plan, counts } = await this.dryRun(ns);
      const pendingLines = plan.families.reduce((n, f) => n + f.lines, 0);
      let rules = 0;
      let chains = 0;
      for (const c of counts.values()) {
        rules += c.rules;
        chains += c.chains;
      }
      const exists = ns === undefined ? true : existing ? existing.has(ns) : !plan.families.some((f) => f.namespaceMissing);
      const status: NamespaceStatus = {
        namespace: ns,
        resources: plan.resources,
        exists,
        inSync: plan.error === undefined && pendingLines === 0,
        pendingLines,
        rules,
        chains,
      };
      if (plan.error !== undefined) status.error = plan.error;
      return status;
    });
  }

  private async dryRun(ns: NsKey): Promise<{ plan: NamespacePlan; counts: Map<string, { rules: number; chains: number }> }> {
    const context = new LoopContext(ns, this.runner, this.logger.child({ namespace: ns ?? null, dryRun: true }), this.logger, true, this.config);
    const { work, resources } = this.work(ns, undefined, true);
    const plan: NamespacePlan = { namespace: ns, resources, families: [] };
    try {
      for (const w of work) await w.handler.reconcile(context, w.request);
      for (const m of context.managerList()) plan.families.push(...(await m.plan()).families);
    } catch (err) {
      plan.families = [];
      plan.error = errorMessage(err);
      this.logger.warn({ ...errorFields(err), namespace: ns ?? null }, "plan failed");
    }
    return { plan, counts: countRules(context) };
  }

  // ---- passes -------------------------------------------------------------------------------------

  private async pass(options: { verify: boolean; label: string }): Promise<SyncReport> {
    const keys = this.allNamespaces();
    const total = keys.length;
    const started = performance.now();
    let done = 0;
    let nextPercent = 10;
    let lastLog = started;
    const failed: SyncReport["failed"] = [];
    await this.cleanupStale();
    this.logger.info({ namespaces: total, pass: options.label }, "full pass started");
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
    if (failed.length === 0) this.metrics.lastSuccessfulSync.set(Date.now() / 1000);
    const log = failed.length === 0 ? this.logger.info.bind(this.logger) : this.logger.warn.bind(this.logger);
    log(
      { pass: options.label, namespaces: total, applied: total - failed.length, failed: failed.length, durationMs: Math.round(durationMs) },
      failed.length === 0 ? "full pass finished" : "full pass finished with failures",
    );
    return { namespaces: total, applied: total - failed.length, failed, problems: this.takeProblems() };
  }

  /** Each handler removes what earlier runs left for resources no longer desired (see ResourceHandler). */
  private async cleanupStale(): Promise<void> {
    for (const handler of this.handlers) {
      if (!handler.cleanupStale) continue;
      const logger = this.logger.child({ kind: handler.kind });
      try {
        const removed = await handler.cleanupStale({ runner: this.runner, logger }, this.desired.get(handler.kind) ?? new Map());
        if (removed.length) logger.info({ removed }, "stale resources from an earlier run removed");
      } catch (err) {
        // The pass goes on; the next full pass tries again.
        logger.warn({ err }, "stale resource cleanup failed");
      }
    }
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
    const delay = Math.min(this.config.retry_initial_delay_ms * 2 ** Math.min(st.failures - 1, 30), this.config.retry_max_delay_ms);
    this.setPhase(st, "retrying");
    this.logger.info({ namespace: st.key, delayMs: delay, failures: st.failures }, "namespace apply will be retried");
    st.timer = setTimeout(() => {
      st.timer = undefined;
      this.metrics.retries.inc();
      this.makeReady(st);
    }, delay);
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
    if (this.desiredByNs.has(st.key) || hasAny(st.applied)) return;
    this.dropContext(st);
    this.states.delete(st.key);
    this.phases.idle--;
  }

  private isIdle(): boolean {
    return this.phases.running === 0 && this.phases.ready === 0 && this.phases.coalescing === 0 && this.phases.retrying === 0;
  }

  private checkIdle(): void {
    if (this.idleWaiters.length === 0 || !this.isIdle()) return;
    for (const w of this.idleWaiters.splice(0)) w();
  }

  private allNamespaces(): NsKey[] {
    const keys = new Set<NsKey>(this.desiredByNs.keys());
    for (const [k, st] of this.states) if (hasAny(st.applied) || st.context) keys.add(k);
    return [...keys];
  }

  // ---- one namespace ------------------------------------------------------------------------------

  /** What each handler has to do in a namespace: the desired state now against what `applied` holds. */
  private work(ns: NsKey, applied: ByKind | undefined, full: boolean, recheck: ReadonlySet<string> = new Set()): { work: Work[]; resources: string[]; desired: ByKind } {
    const desired = this.desiredByNs.get(ns) ?? new Map<string, ReadonlyMap<string, unknown>>();
    const work: Work[] = [];
    const resources: string[] = [];
    for (const handler of this.handlers) {
      const want = desired.get(handler.kind) ?? new Map<string, unknown>();
      const had = applied?.get(handler.kind) ?? new Map<string, unknown>();
      const changed = new Set<string>();
      const removed = new Map<string, unknown>();
      for (const [id, r] of want) {
        if (full || !had.has(id) || !this.same(handler, had.get(id), r)) changed.add(id);
      }
      for (const [id, r] of had) if (!want.has(id)) removed.set(id, r);
      if (changed.size === 0 && removed.size === 0 && !recheck.has(handler.kind)) continue;
      for (const id of changed) resources.push(`${handler.kind}/${id}`);
      for (const id of removed.keys()) resources.push(`${handler.kind}/${id}`);
      work.push({ handler, request: { desired: want, changed, removed, full } });
    }
    return { work, resources, desired };
  }

  private async reconcileNamespace(st: NsState, full: boolean, verify: boolean, recheck: ReadonlySet<string>, pendingSince: number | undefined): Promise<Outcome> {
    const ns = st.key;
    const { work, resources, desired } = this.work(ns, st.applied, full, recheck);
    if (work.length === 0 && !(verify && st.context)) {
      // Nothing changed (e.g. a change reverted within the window).
      st.applied = desired;
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
      if (errorCode(error) === "NAMESPACE_GONE" && desired.size === 0 && !this.desiredByNs.has(ns)) {
        // Only removals were left, and the namespace went away with its rules: nothing to do.
        st.applied = desired;
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
      logger.error(
        { ...errorFields(error), code, kind: failingKind, full, resources: resources.length, durationMs: Math.round(durationMs) },
        failingKind ? "resource handler failed; namespace will be retried" : "namespace apply failed",
      );
      await this.notify({ namespace: ns, resources, error, durationMs, full });
      return { ok: false, error };
    }

    const durationMs = performance.now() - started;
    st.applied = desired;
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
    if (!this.desiredByNs.has(ns) && desired.size === 0) {
      // Nothing left here: forget the managers (their rules were removed by this run).
      this.dropContext(st);
    } else {
      this.setCounts(st, countRules(context));
    }
    logger.debug({ full, resources: resources.length, lines: result.lines, sent: result.sent, durationMs: Math.round(durationMs) }, "namespace applied");
    await this.notify({ namespace: ns, resources, result, durationMs, full });
    return { ok: true };
  }

  private dropContext(st: NsState): void {
    st.context = undefined;
    if (!hasAny(st.applied) && !this.desiredByNs.has(st.key)) this.setCounts(st, new Map());
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

  private same(handler: ResourceHandler, a: unknown, b: unknown): boolean {
    if (a === b) return true;
    try {
      return handler.equals ? handler.equals(a, b) : jsonEqual(a, b);
    } catch {
      return false;
    }
  }

  private takeProblems(): Problem[] {
    const out = [...this.resourceProblems, ...this.sourceProblems];
    this.sourceProblems = [];
    return out;
  }
}

/**
 * One namespace's `ReconcileContext`. Managers are keyed by (cut) wrap name and share one applier,
 * so that their kernel views stay in step. During a run every manager a handler obtains is deferred
 * (`deferApplyOn`) until the loop applies it at the end.
 */
class LoopContext implements ReconcileContext {
  private readonly managers = new Map<string, { manager: IptablesManager; options: string }>();
  private applier: IptablesApplier | undefined;
  private touched: Set<IptablesManager> | undefined;

  constructor(
    readonly namespace: string | undefined,
    readonly runner: IptablesRunner,
    readonly logger: Logger,
    /** Core logs name the namespace themselves: its logger is not bound to it. */
    private readonly coreLogger: CoreLogger,
    readonly dryRun: boolean,
    private readonly config: AgentConfig,
    private readonly loop?: { wake(kind: string): void; live(): boolean },
  ) {}

  /** The handler being called (set by the loop before each `reconcile`). */
  handlerKind: string | undefined;

  manager(options: ManagerOptions = {}): IptablesManager {
    const wrapName = wrapNameFor(options.wrapName ?? this.config.wrap_name);
    const effective = {
      stateless: options.stateless ?? false,
      nat: options.nat ?? true,
      useIpv6: options.useIpv6 ?? this.config.use_ipv6,
    };
    const key = JSON.stringify(effective);
    const existing = this.managers.get(wrapName);
    if (existing) {
      if (existing.options !== key) {
        throw new Error(
          `the ${wrapName} manager of ${this.namespace ?? "the host namespace"} was created with ${existing.options}; it cannot also be used with ${key}`,
        );
      }
      this.touch(existing.manager);
      return existing.manager;
    }
    const logger = this.coreLogger;
    this.applier ??= new IptablesApplier({
      runner: this.runner,
      namespace: this.namespace,
      logger,
      lockWaitSeconds: this.config.lock_wait_seconds,
    });
    const manager = new IptablesManager({
      runner: this.runner,
      namespace: this.namespace,
      wrapName,
      comments: this.config.comment_iptables_rules,
      logger,
      applier: this.applier,
      ...effective,
    });
    this.managers.set(wrapName, { manager, options: key });
    // A dry run never applies: its managers stay deferred, so even an explicit `apply()` is a no-op.
    if (this.dryRun) manager.deferApplyOn();
    else this.touch(manager);
    return manager;
  }

  private requeued: { afterMs: number; kinds: Set<string> } | undefined;

  requeue(afterMs: number): void {
    if (this.dryRun || !Number.isFinite(afterMs) || afterMs < 0 || this.handlerKind === undefined) return;
    this.requeued ??= { afterMs, kinds: new Set() };
    this.requeued.afterMs = Math.min(this.requeued.afterMs, afterMs);
    this.requeued.kinds.add(this.handlerKind);
  }

  /** The earliest requeue asked for during the run and the handlers that asked, cleared. */
  takeRequeue(): { afterMs: number; kinds: ReadonlySet<string> } | undefined {
    const r = this.requeued;
    this.requeued = undefined;
    return r;
  }

  waker(): (() => void) | undefined {
    const kind = this.handlerKind;
    const loop = this.loop;
    // Nothing runs this namespace again in a dry run or a one-shot pass (`apply --once`).
    if (this.dryRun || kind === undefined || loop === undefined || !loop.live()) return undefined;
    return () => loop.wake(kind);
  }

  forgetNamespace(): void {
    this.managers.clear();
    this.applier = undefined;
    this.touched?.clear();
  }

  managerList(): IptablesManager[] {
    return [...this.managers.values()].map((e) => e.manager);
  }

  beginRun(): void {
    this.touched = new Set();
  }

  /** The managers touched during the run, still deferred once (the caller turns that off). */
  endRun(): IptablesManager[] {
    const list = [...(this.touched ?? [])];
    this.touched = undefined;
    return list;
  }

  private touch(manager: IptablesManager): void {
    if (!this.touched || this.touched.has(manager)) return;
    manager.deferApplyOn();
    this.touched.add(manager);
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
  for (const k of ["code", "resource", "line", "lineText", "chain", "table", "exitCode", "plugin"]) {
    if (e[k] !== undefined) out[k] = e[k];
  }
  if (typeof e.stderr === "string" && e.stderr) out.stderr = e.stderr.trim();
  if (Array.isArray(e.context) && e.context.length > 0) {
    out.context = (e.context as { number: number; text: string; failing: boolean }[]).map((c) => `${c.failing ? ">" : " "}${c.number}: ${c.text}`);
  }
  return out;
}

/** Deep equality of JSON-like values (key order does not matter). */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return Number.isNaN(a) && Number.isNaN(b);
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    if (a.length !== bb.length) return false;
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i], bb[i])) return false;
    return true;
  }
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  for (const k of ka) {
    if (!Object.prototype.hasOwnProperty.call(b, k)) return false;
    if (!jsonEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  }
  return true;
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
