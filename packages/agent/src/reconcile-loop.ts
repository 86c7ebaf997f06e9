import type { ApplyResult, FamilyApplyResult, HostRunner } from "@chainwarden/core";
import type { Logger } from "pino";
import { AgentError, type Problem } from "./agent-errors.js";
import type { AgentMetrics } from "./agent-metrics.js";
import type { AgentConfig } from "./config-schema.js";
import { DesiredState, type ByKind, type NsKey } from "./desired-state.js";
import { DryRun } from "./dry-run.js";
import { asError, errorCode, errorFields } from "./error-fields.js";
import type { ApplyEvent, ApplyObserver, HostAction, ResourceHandler, StateDocument, StateSink, StateUpdateOptions } from "./extension-points.js";
import { FailedResources } from "./failed-resources.js";
import { FailingHandlers } from "./failing-handlers.js";
import { failureScope } from "./failure-scope.js";
import { LoopContext } from "./loop-context.js";
import { ManagerFlavours, type ManagerDefaults } from "./manager-flavours.js";
import type { PlanReport, StatusReport, SyncReport } from "./loop-reports.js";
import { NamespaceScheduler, type RunOutcome, type RunRequest, type RunWaiter } from "./namespace-scheduler.js";
import { appliedAfter, namespaceWork, type NamespaceWork } from "./namespace-work.js";
import { ProgressLog } from "./progress-log.js";
import { countRules, familyLabel, RuleTotals } from "./rule-counts.js";

/** How many held resources a failure's log line names. */
const MAX_LOGGED_HELD = 20;

/** What a `ReconcileLoop` runs with: the handlers and observers, the host's tools, logs, metrics, config, and the app's manager flavour. */
export interface ReconcileLoopOptions {
  /** In registration order: within one namespace they reconcile in this order. */
  handlers: readonly ResourceHandler[];
  observers: readonly ApplyObserver[];
  runner: HostRunner;
  logger: Logger;
  metrics: AgentMetrics;
  config: AgentConfig;
  /** Namespace for resources whose handler returns undefined (undefined: the host's own). */
  defaultNamespace?: string;
  /**
   * The app's flavour for managers no handler declares otherwise (see `ManagerFlavours`): what
   * `context.manager()` without options gives. Default: stateful, with nat.
   */
  managerDefaults?: ManagerDefaults;
  /** The plugin that registered each kind's handler, for messages and logs (`Agent` passes it). */
  plugins?: ReadonlyMap<string, string>;
}

/** The loop's side of the agent's health (`ReconcileLoop.health`). */
export interface LoopHealth {
  /** `idle`: not started (a one-shot run, or the agent still starting its sources); `stopped`: `stop()` was called. */
  readonly state: "idle" | "running" | "stopped";
  /** A state source has delivered a document. */
  readonly stateRead: boolean;
  /**
   * A full pass over a read desired state has finished (failures included), or, when `start`'s pass
   * ran without one, every namespace of the first state read since has finished a run.
   */
  readonly synced: boolean;
  /** `start`'s own full pass has finished. */
  readonly startPassDone: boolean;
  /** Namespaces of that first late state still to finish a run. */
  readonly firstStatePending: number;
  /** Namespace runs in flight. */
  readonly running: number;
  /** The longest-running of them: its namespace (null: the host's own) and how long it has run. */
  readonly oldestRun?: { readonly namespace: string | null; readonly seconds: number };
}

/** What the loop keeps of a namespace between runs. */
interface NamespaceRun {
  /** The live context and its managers (kept between runs; dropped after a failure). */
  context: LoopContext | undefined;
  /** What the last successful run reconciled, per kind. */
  applied: ByKind;
  /** The ids the last successful run held, per kind. */
  appliedHeld: Map<string, ReadonlySet<string>>;
  /** The kinds whose input was incomplete at the last successful run. */
  appliedIncomplete: ReadonlySet<string>;
  /**
   * The wrap names each handler obtained managers for in this namespace, over every context so far:
   * where what the kernel has of a benched handler's chains is kept.
   */
  wrapsOf: Map<string, Set<string>>;
  /** A benched handler's retry is due: the next run starts from fresh managers, as a full pass. */
  restart: boolean;
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
 * - Work is queued per namespace. Runs of a namespace start at least `coalesce_ms` apart: a change
 *   to a namespace that has not run within that window runs at once; later changes wait for the
 *   window's end and join one run, and changes that arrive while the namespace is queued, running or waiting for a retry are
 *   merged into the next run: what a run reconciles is computed when it starts, as the difference
 *   between the desired state then and what the namespace's last successful run reconciled.
 * - One run at a time per namespace; up to `max_parallel_namespaces` namespaces in parallel.
 * - A run calls every handler with work in the namespace, in registration order, with every manager
 *   they touch deferred, then applies each manager once.
 * - A failure tied to resources (the error's `resource` or `resources`, as `kind/id`: a restore line
 *   of theirs, an ipset of theirs) holds those resources and runs the namespace again at once: the
 *   rest of it lands, and they keep what the kernel has (or fail closed). Each is retried alone with
 *   its own capped exponential backoff.
 * - A handler's failure is its own (`failureScope`). A handler that threw naming no resource has
 *   its resources in the namespace held, as above, and the namespace runs again at once: the other
 *   handlers' resources land. If it throws again with all of them held (or has none there), it is
 *   benched in the namespace (`FailingHandlers`): the namespace runs without it, what the kernel
 *   has of its chains is kept as it is (`LoopContext.keepKernelStateFor`), and it is called again
 *   after its own capped exponential backoff, on fresh managers, as a full pass.
 * - Any other failure (the namespace is gone, the kernel cannot be read, a restore that names no
 *   resource) is logged with the error's fields and the namespace retried with capped exponential
 *   backoff as a full pass. The namespace's managers are dropped on every failure: a handler that
 *   threw may have left a manager half-changed, and fresh managers re-read the kernel and compare
 *   everything, which also cleans up whatever a partial apply left: a failing handler's half-built
 *   model is never applied. Other namespaces are not affected.
 * - Managers: one per (cut) wrap name and namespace, each made with its wrap name's flavour
 *   (`ManagerFlavours`: what the handlers declare in `managers`, else the app's `managerDefaults`),
 *   whichever handler asks first.
 * - Every `resync_interval` seconds a full pass runs over every namespace and then `verify()`s each
 *   manager (drift repair). Full passes on kept managers drop their cached kernel view first.
 *
 * Observers run in the namespace's worker after each run (success or failure), in order; their
 * errors are logged and never propagate. A slow observer delays that namespace's next run only.
 *
 * This file runs one namespace and the passes; its parts: `DesiredState` (what is wanted, bad
 * input worked in), `NamespaceScheduler` (when each namespace runs), `namespaceWork` (what a run
 * asks each handler), `failureScope` (whose a failure is), `FailedResources` (held failures and
 * their retries), `FailingHandlers` (benched handlers and their retries), `ManagerFlavours` (which
 * manager a wrap name gets), `DryRun` (plan and status), `RuleTotals` (the rule gauges).
 */
export class ReconcileLoop implements StateSink {
  private readonly handlers: readonly ResourceHandler[];
  private readonly observers: readonly ApplyObserver[];
  private readonly runner: HostRunner;
  private readonly logger: Logger;
  private readonly metrics: AgentMetrics;
  private readonly config: AgentConfig;
  private readonly defaultNamespace: string | undefined;

  private readonly desired: DesiredState;
  private sourceProblems: Problem[] = [];
  private readonly failing: FailedResources;
  private readonly failingHandlers: FailingHandlers;
  private readonly flavours: ManagerFlavours;
  private readonly dryRun: DryRun;

  private readonly scheduler: NamespaceScheduler;
  private readonly runs = new Map<NsKey, NamespaceRun>();
  private started = false;
  private stopping = false;
  private resyncTimer: NodeJS.Timeout | undefined;
  private readonly ruleTotals: RuleTotals;
  /** A full pass with a desired state read has finished, or the first state read after a pass without one was applied. */
  private synced = false;
  /** `start`'s own full pass has finished. */
  private startPassDone = false;
  /**
   * The first state read after `start`'s pass had none (the source delivered late): the namespaces
   * it asked to run that have not finished a run since, and the progress of that work.
   */
  private firstState: { pending: Set<NsKey>; since: number; progress: ProgressLog } | undefined;

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
    // Managers with different needs in one namespace are refused here, before anything runs.
    this.flavours = ManagerFlavours.resolve(
      this.handlers.map((handler) => ({ handler, plugin: options.plugins?.get(handler.kind) })),
      { wrapName: this.config.wrap_name, useIpv6: this.config.use_ipv6, defaults: options.managerDefaults },
    );
    this.desired = new DesiredState(this.handlers, this.defaultNamespace);
    this.ruleTotals = new RuleTotals(this.metrics);
    this.scheduler = new NamespaceScheduler({
      config: this.config,
      logger: this.logger,
      run: (ns, request) => this.reconcileNamespace(ns, request),
      started: () => this.started,
      busy: () => this.failing.waiting() || this.failingHandlers.waiting(),
      forgettable: (ns) => !this.desired.has(ns) && !hasAny(this.runs.get(ns)?.applied) && this.homeOf(ns).length === 0,
      forget: (ns) => {
        const run = this.runs.get(ns);
        if (run) this.dropContext(ns, run);
        this.runs.delete(ns);
      },
      retried: () => this.metrics.retries.inc(),
    });
    this.failing = new FailedResources({
      logger: this.logger,
      backoff: (failures) => this.scheduler.backoff(failures),
      live: () => this.started && !this.stopping,
      retry: (f) => {
        this.metrics.retries.inc();
        this.scheduler.request(f.ns, { immediate: true });
      },
      changed: () => this.updateHeldGauge(),
    });
    this.failingHandlers = new FailingHandlers({
      logger: this.logger,
      backoff: (failures) => this.scheduler.backoff(failures),
      live: () => this.started && !this.stopping,
      retry: (f) => {
        this.metrics.retries.inc();
        const run = this.runs.get(f.ns);
        if (run) run.restart = true;
        this.scheduler.request(f.ns, { full: true, immediate: true });
      },
    });
    this.dryRun = new DryRun({
      runner: this.runner,
      logger: this.logger,
      config: this.config,
      flavours: this.flavours,
      source: {
        namespaces: () => this.allNamespaces(),
        work: (ns, isolate) =>
          this.work(ns, { full: true, ...(isolate?.held ? { extraHeld: isolate.held } : {}), benched: new Set([...this.failingHandlers.benchedIn(ns), ...(isolate?.benched ?? [])]) }),
        wrapNamesOf: (ns, kind) => this.wrapNamesOf(ns, kind),
        staleActions: () => this.cleanupStale(true),
        problems: () => this.takeProblems(),
        stateRead: () => this.desired.read,
      },
    });
  }

  // ---- StateSink -------------------------------------------------------------------------------

  update(document: StateDocument, origin: string, options?: StateUpdateOptions): void {
    const arrival = performance.now();
    const wasRead = this.desired.read;
    const { affected, fresh } = this.desired.update(document, origin, options);
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
    this.failing.forgetUndesired((kind, id) => this.desired.ofKind(kind).has(id));
    this.updateHeldGauge();

    // The initial pass had no state to apply (or is running without one): track what this one asks for.
    if (this.started && !this.stopping && !wasRead && this.desired.read) this.trackFirstState(affected, arrival);
    if (affected.size === 0) return;
    this.logger.debug({ origin, namespaces: affected.size }, "desired state changed");
    if (!this.started || this.stopping) return;
    for (const ns of affected) this.scheduler.request(ns, { immediate: false, pendingSince: arrival });
  }

  /**
   * The first desired state arrived after `start`'s pass began without one: readiness waits until
   * every namespace it touches has finished a run that started after it arrived, and an operator
   * sees that work's progress as for a full pass.
   */
  private trackFirstState(affected: ReadonlySet<NsKey>, arrival: number): void {
    if (affected.size === 0) {
      this.synced = true;
      return;
    }
    const total = affected.size;
    this.logger.info({ namespaces: total }, "first desired state read after the initial sync; applying it");
    const progress = new ProgressLog({
      total,
      log: (done, all) => this.logger.info({ pass: "first state", done, total: all, progress: `${done}/${all}` }, "full pass progress"),
    });
    this.firstState = { pending: new Set(affected), since: arrival, progress };
  }

  /** A run of `ns` that started at `runStarted` finished (either way). */
  private runFinished(ns: NsKey, runStarted: number): void {
    const first = this.firstState;
    if (!first || runStarted < first.since || !first.pending.delete(ns)) return;
    first.progress.step();
    if (first.pending.size > 0) return;
    first.progress.finish();
    this.firstState = undefined;
    this.synced = true;
    this.logger.info({ pass: "first state" }, "first desired state applied");
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
    this.startPassDone = true;
    // Resources that failed in the pass are retried alone from now on, benched handlers likewise.
    this.failing.scheduleAll();
    this.failingHandlers.scheduleAll();
    this.scheduleResync();
    return report;
  }

  /**
   * One full pass over every namespace, then returns. Before `start()` nothing else runs: no
   * timers, no retries (the report says which namespaces and resources failed). On a started loop
   * it is an extra full pass, and failures are retried as usual.
   */
  syncOnce(): Promise<SyncReport> {
    if (this.stopping) return Promise.reject(new AgentError("AGENT_STATE", "the reconcile loop was stopped"));
    return this.pass({ verify: false, label: "sync" });
  }

  /** No new work starts; the applies in flight finish; timers and pending retries are cancelled. Rules stay. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.firstState?.progress.finish();
    if (this.resyncTimer) clearTimeout(this.resyncTimer);
    this.resyncTimer = undefined;
    this.failing.stop();
    this.failingHandlers.stop();
    await this.scheduler.stop();
    for (const handler of this.handlers) {
      try {
        await handler.stop?.();
      } catch (err) {
        this.logger.error({ err, kind: handler.kind }, "resource handler failed to stop");
      }
    }
  }

  /** Resolves when nothing is queued, waiting (coalescing or retry backoff) or running. */
  idle(): Promise<void> {
    return this.scheduler.idle();
  }

  /** What `/healthz` and `/readyz` look at (see AgentHealth). */
  health(): LoopHealth {
    const now = performance.now();
    const running = this.scheduler.running();
    const oldest = running[0];
    return {
      state: this.stopping ? "stopped" : this.started ? "running" : "idle",
      stateRead: this.desired.read,
      synced: this.synced,
      startPassDone: this.startPassDone,
      firstStatePending: this.firstState?.pending.size ?? 0,
      running: running.length,
      ...(oldest ? { oldestRun: { namespace: oldest.ns ?? null, seconds: (now - oldest.since) / 1000 } } : {}),
    };
  }

  // ---- plan and status ---------------------------------------------------------------------------

  /** A dry run of every namespace: what would be sent and removed; nothing is applied (see DryRun). */
  plan(): Promise<PlanReport> {
    return this.dryRun.plan();
  }

  /** Per namespace: in sync or not, what is pending, held or stale (a dry run; see DryRun). */
  status(): Promise<StatusReport> {
    return this.dryRun.status();
  }

  // ---- passes -------------------------------------------------------------------------------------

  private async pass(options: { verify: boolean; label: string }): Promise<SyncReport> {
    const started = performance.now();
    await this.cleanupStale(false);
    const keys = this.allNamespaces();
    const total = keys.length;
    const stateRead = this.desired.read;
    const failed: SyncReport["failed"] = [];
    this.logger.info({ namespaces: total, pass: options.label }, stateRead ? "full pass started" : "full pass started; no desired state was read, so nothing is changed");
    // At most one line a second, none for a pass shorter than that (see ProgressLog).
    const progress = new ProgressLog({
      total,
      log: (done, all) => this.logger.info({ pass: options.label, done, total: all, failed: failed.length, progress: `${done}/${all}` }, "full pass progress"),
    });
    const outcomes = keys.map(
      (ns) =>
        new Promise<void>((resolve) => {
          const waiter: RunWaiter = (outcome) => {
            if (!outcome.ok) failed.push({ namespace: ns, error: outcome.error ?? new Error("failed") });
            progress.step();
            resolve();
          };
          this.scheduler.request(ns, { full: true, verify: options.verify, immediate: true, waiter });
        }),
    );
    await Promise.all(outcomes);
    progress.finish();
    if (stateRead && !this.stopping) this.synced = true;
    const durationMs = performance.now() - started;
    const failedResources = this.failing.held().map((f) => ({ namespace: f.ns, resource: `${f.kind}/${f.id}`, error: f.error }));
    const failedHandlers = this.failingHandlers.benched().map((f) => ({ namespace: f.ns, kind: f.kind, ...pluginField(this.flavours.pluginOf(f.kind)), error: f.error }));
    const clean = failed.length === 0 && failedResources.length === 0 && failedHandlers.length === 0;
    if (clean) this.metrics.lastSuccessfulSync.set(Date.now() / 1000);
    const log = clean ? this.logger.info.bind(this.logger) : this.logger.warn.bind(this.logger);
    log(
      {
        pass: options.label,
        namespaces: total,
        applied: total - failed.length,
        failed: failed.length,
        failedResources: failedResources.length,
        failedHandlers: failedHandlers.length,
        durationMs: Math.round(durationMs),
      },
      clean ? "full pass finished" : "full pass finished with failures",
    );
    return { namespaces: total, applied: total - failed.length, failed, failedResources, failedHandlers, problems: this.takeProblems(), stateRead: this.desired.read };
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

  // ---- namespaces ---------------------------------------------------------------------------------

  private allNamespaces(): NsKey[] {
    const keys = new Set<NsKey>(this.desired.namespaces());
    for (const [k, run] of this.runs) if (hasAny(run.applied) || run.context) keys.add(k);
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
    const held = new Set<string>(this.failing.heldIn(ns, kind, desired));
    for (const id of desired.keys()) if (this.desired.isHeld(kind, id)) held.add(id);
    return held;
  }

  /**
   * What each handler has to do in a namespace (see namespaceWork); the home handlers join full
   * passes. `extraHeld` holds more (a dry run's failed handlers), `benched` skips handlers.
   */
  private work(
    ns: NsKey,
    run: {
      full: boolean;
      applied?: ByKind;
      appliedHeld?: ReadonlyMap<string, ReadonlySet<string>>;
      recheck?: ReadonlySet<string>;
      always?: ReadonlySet<string>;
      benched?: ReadonlySet<string>;
      extraHeld?: ReadonlyMap<string, ReadonlySet<string>>;
    },
  ): NamespaceWork {
    const { extraHeld, ...rest } = run;
    return namespaceWork({
      ...rest,
      handlers: this.handlers,
      desired: this.desired.in(ns),
      home: new Set(run.full ? this.homeOf(ns) : []),
      heldIn: (kind, desired) => {
        const held = this.heldIn(ns, kind, desired);
        for (const id of extraHeld?.get(kind) ?? []) if (desired.has(id)) held.add(id);
        return held;
      },
      complete: (kind) => this.desired.complete(kind),
    });
  }

  /**
   * Where a benched handler's rules may be: the wrap names it declares and those it obtained
   * managers for in the namespace; undefined (every manager) when it neither said nor showed any.
   */
  private wrapNamesOf(ns: NsKey, kind: string): ReadonlySet<string> | undefined {
    const out = new Set<string>([...this.flavours.wrapNamesOf(kind), ...(this.runs.get(ns)?.wrapsOf.get(kind) ?? [])]);
    for (const w of this.runs.get(ns)?.context?.wrapNamesByKind().get(kind) ?? []) out.add(w);
    return out.size > 0 ? out : undefined;
  }

  /** One run of a namespace (the scheduler's `run`); the handlers' requeue requests go back with the outcome. */
  private async reconcileNamespace(ns: NsKey, request: RunRequest): Promise<RunOutcome> {
    let run = this.runs.get(ns);
    if (!run) this.runs.set(ns, (run = { context: undefined, applied: new Map(), appliedHeld: new Map(), appliedIncomplete: new Set(), wrapsOf: new Map(), restart: false }));
    const runStarted = performance.now();
    let outcome: RunOutcome;
    try {
      outcome = await this.runNamespace(ns, run, request);
    } finally {
      this.runFinished(ns, runStarted);
    }
    const requeue = run.context?.takeRequeue();
    return requeue ? { ...outcome, requeue } : outcome;
  }

  private async runNamespace(ns: NsKey, st: NamespaceRun, request: RunRequest): Promise<RunOutcome> {
    const { verify, recheck, pendingSince } = request;
    let full = request.full;
    const incomplete = new Set(this.handlers.filter((h) => !this.desired.complete(h.kind)).map((h) => h.kind));
    const completed = [...st.appliedIncomplete].filter((kind) => !incomplete.has(kind));
    if (completed.length > 0 || st.restart) {
      // Input that was incomplete is complete now, or a benched handler is called again: what was
      // kept for want of it (in the managers' models, unknown to the loop) goes, so the run starts
      // from fresh managers, as a full pass.
      st.restart = false;
      this.dropContext(ns, st);
      full = true;
    }
    const benched = this.failingHandlers.benchedIn(ns);
    // On a full pass a kind whose input is incomplete is called everywhere, even with nothing
    // desired here, so that it keeps what the kernel has; and once more when it turned complete.
    const always = new Set(full && this.desired.read ? [...incomplete, ...completed] : completed);
    const { work, resources, heldByKind, desired } = this.work(ns, { full, applied: st.applied, appliedHeld: st.appliedHeld, recheck, always, benched });
    if (work.length === 0 && !(verify && st.context)) {
      // Nothing changed (e.g. a change reverted within the window).
      ({ applied: st.applied, appliedHeld: st.appliedHeld } = appliedAfter({ desired, heldByKind }, st, benched));
      st.appliedIncomplete = incomplete;
      if (pendingSince !== undefined) this.metrics.eventToApplied.observe((performance.now() - pendingSince) / 1000);
      return { ok: true };
    }
    const started = performance.now();
    const logger = this.logger.child({ namespace: ns ?? null });
    let context = st.context;
    // A full pass re-reads the kernel; with `verify` the verify after the apply does that (and counts the drift).
    if (context && full && !verify) for (const m of context.managerList()) m.invalidate();
    context ??= st.context = new LoopContext(
      ns,
      this.runner,
      logger,
      this.logger,
      false,
      this.config,
      {
        wake: (kind) => {
          if (this.started && !this.stopping) this.scheduler.wake(ns, kind);
        },
        live: () => this.started && !this.stopping,
      },
      this.flavours,
    );
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
      // A benched handler rebuilt nothing: what the kernel has of its chains stays as it is.
      for (const kind of benched) await context.keepKernelStateFor(this.wrapNamesOf(ns, kind));
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
        this.dropContext(ns, st);
        logger.info({ resources: resources.length }, "namespace is gone; nothing left to remove");
        await this.notify({ namespace: ns, resources, durationMs, full });
        return { ok: true };
      }
      // The managers may be half-changed (a handler threw) or out of step with the kernel: the retry
      // starts from fresh ones, which re-read the kernel.
      this.dropContext(ns, st);
      const code = errorCode(error) ?? (failingKind ? "HANDLER_FAILED" : "UNKNOWN");
      this.metrics.restoreErrors.inc({ code });
      const plugin = failingKind !== undefined ? pluginField(this.flavours.pluginOf(failingKind)) : {};
      const scope = failureScope({ error, failingKind, culprits: this.failing.culprits(error, desired, heldByKind), desired, held: heldByKind });
      if (scope.scope === "resources") {
        for (const { kind, id } of scope.resources) {
          this.metrics.resourceFailures.inc({ kind });
          this.failing.hold(ns, kind, id, error, { quiet: !scope.named });
        }
        const held = scope.resources.map((c) => `${c.kind}/${c.id}`);
        // A handler's failure can hold thousands (every port): the line names the first few.
        const named = held.length > MAX_LOGGED_HELD ? [...held.slice(0, MAX_LOGGED_HELD), `... ${held.length - MAX_LOGGED_HELD} more`] : held;
        logger.error(
          { ...errorFields(error), code, kind: failingKind, ...plugin, held: named, durationMs: Math.round(durationMs) },
          scope.named
            ? "resource failed to apply; held as the kernel has it, the rest of the namespace applies now, it is retried alone"
            : "resource handler failed; its resources here are held as the kernel has them, the rest of the namespace applies now, they are retried alone",
        );
        await this.notify({ namespace: ns, resources, error, durationMs, full });
        return { ok: false, error, isolated: held };
      }
      if (scope.scope === "handler") {
        const benchedNow = this.failingHandlers.bench(ns, scope.kind, error);
        logger.error(
          {
            ...errorFields(error),
            code,
            kind: scope.kind,
            ...plugin,
            failures: benchedNow.failures,
            ...(this.started && !this.stopping ? { retryInMs: this.failingHandlers.delayOf(benchedNow) } : {}),
            durationMs: Math.round(durationMs),
          },
          "resource handler failed with all its resources held; it is skipped in this namespace until its retry, what the kernel has of its chains is kept, the rest of the namespace applies now",
        );
        await this.notify({ namespace: ns, resources, error, durationMs, full });
        return { ok: false, error, isolated: [scope.kind] };
      }
      logger.error(
        { ...errorFields(error), code, kind: failingKind, ...plugin, full, resources: resources.length, durationMs: Math.round(durationMs) },
        failingKind ? "resource handler failed; namespace will be retried" : "namespace apply failed",
      );
      await this.notify({ namespace: ns, resources, error, durationMs, full });
      return { ok: false, error };
    }

    const durationMs = performance.now() - started;
    ({ applied: st.applied, appliedHeld: st.appliedHeld } = appliedAfter({ desired, heldByKind }, st, benched));
    st.appliedIncomplete = incomplete;
    this.failing.settle(ns, heldByKind);
    this.failingHandlers.settle(ns, benched);
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
      this.dropContext(ns, st);
    } else {
      this.ruleTotals.set(ns, countRules(context.managerList()));
    }
    const removed = work.reduce((n, w) => n + w.request.removed.size, 0);
    const changed = work.reduce((n, w) => n + (w.request.full ? 0 : w.request.changed.size), 0);
    const fields = { full, changed, removed, resources: resources.length, lines: result.lines, sent: result.sent, durationMs: Math.round(durationMs) };
    // One line per namespace that really changed; a resync that finds nothing to do stays quiet.
    if (result.sent || removed > 0 || changed > 0) logger.info(fields, "namespace applied");
    else logger.debug(fields, "namespace applied");
    await this.notify({ namespace: ns, resources, held: heldIds(heldByKind), result, durationMs, full });
    return { ok: true };
  }

  private updateHeldGauge(): void {
    let invalid = 0;
    for (const h of this.handlers) for (const id of this.desired.ofKind(h.kind).keys()) if (this.desired.isHeld(h.kind, id)) invalid++;
    const failed = this.failing.held().length;
    this.metrics.heldResources.set({ reason: "invalid" }, invalid);
    this.metrics.heldResources.set({ reason: "failed" }, failed);
  }

  private dropContext(ns: NsKey, run: NamespaceRun): void {
    // What each handler used there outlives the managers: a handler benched later keeps its chains there.
    for (const [kind, wraps] of run.context?.wrapNamesByKind() ?? []) {
      const set = run.wrapsOf.get(kind) ?? new Set<string>();
      for (const w of wraps) set.add(w);
      run.wrapsOf.set(kind, set);
    }
    run.context = undefined;
    if (!hasAny(run.applied) && !this.desired.has(ns)) this.ruleTotals.set(ns, new Map());
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

function mergeResults(results: readonly ApplyResult[]): ApplyResult {
  const families: FamilyApplyResult[] = results.flatMap((r) => r.families);
  return { families, sent: results.some((r) => r.sent), lines: results.reduce((n, r) => n + r.lines, 0), deferred: false };
}

/** `{ plugin }` when it is known, for log lines and reports. */
function pluginField(plugin: string | undefined): { plugin?: string } {
  return plugin !== undefined ? { plugin } : {};
}

function hasAny(byKind: ByKind | undefined): boolean {
  for (const m of byKind?.values() ?? []) if (m.size > 0) return true;
  return false;
}

/** `kind/id` of every held resource. */
function heldIds(heldByKind: ReadonlyMap<string, ReadonlySet<string>>): string[] {
  const out: string[] = [];
  for (const [kind, ids] of heldByKind) for (const id of ids) out.push(`${kind}/${id}`);
  return out;
}
