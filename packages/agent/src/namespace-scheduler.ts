import type { Logger } from "pino";
import type { AgentConfig } from "./config-schema.js";
import type { NsKey } from "./desired-state.js";
import { asError } from "./error-fields.js";

/** What one run of a namespace is asked to do. */
export interface RunRequest {
  /** Reconcile every desired resource, not only the changed ones, from a fresh kernel read. */
  full: boolean;
  /** Also verify every manager after the apply (drift repair). */
  verify: boolean;
  /** Handler kinds to call even with nothing changed (they asked to look again). */
  recheck: ReadonlySet<string>;
  /** Earliest arrival of a change the run applies (performance.now()). */
  pendingSince: number | undefined;
}

export interface RunOutcome {
  ok: boolean;
  error?: Error;
  /** Resources the failure was tied to: now held, the namespace runs again at once without them. */
  isolated?: string[];
  /** A handler asked for another run after this long, for these kinds. */
  requeue?: { afterMs: number; kinds: ReadonlySet<string> };
}

/** Told the outcome of the next run of its namespace to finish (the run again after an isolation). */
export type RunWaiter = (outcome: RunOutcome) => void;

export class StoppedError extends Error {
  constructor() {
    super("the reconcile loop is stopping");
    this.name = "StoppedError";
  }
}

/** `requeued`: idle, but a handler asked for another run later (it does not hold `idle()` up). */
type Phase = "idle" | "coalescing" | "ready" | "running" | "retrying" | "requeued";

interface Slot {
  readonly ns: NsKey;
  phase: Phase;
  timer: NodeJS.Timeout | undefined;
  full: boolean;
  verify: boolean;
  /** A request arrived while running: run again after. */
  again: boolean;
  recheck: Set<string>;
  /** Consecutive failures (backoff exponent). */
  failures: number;
  pendingSince: number | undefined;
  /** Told by the next run to finish. */
  waiters: RunWaiter[];
  /** When its last run started (performance.now()); the coalesce window counts from there. */
  lastStart: number | undefined;
}

export interface NamespaceSchedulerOptions {
  config: Pick<AgentConfig, "coalesce_ms" | "max_parallel_namespaces" | "retry_initial_delay_ms" | "retry_max_delay_ms">;
  logger: Logger;
  /** Runs one namespace. Its own errors are its to report; a throw is a bug, logged and taken as a failure. */
  run(ns: NsKey, request: RunRequest): Promise<RunOutcome>;
  /** Retries and requeues are scheduled only once the loop has started (not for a one-shot pass). */
  started(): boolean;
  /** Another reason not to be idle (a failed resource waiting for its retry). */
  busy(): boolean;
  /** A namespace at rest may be forgotten when nothing is desired or applied there. */
  forgettable(ns: NsKey): boolean;
  forget(ns: NsKey): void;
  /** A namespace's backoff ran out (for the retry counter). */
  retried(): void;
}

/**
 * When each namespace runs. Runs of a namespace start at least `coalesce_ms` apart (kube-proxy's
 * BoundedFrequencyRunner): a request for a namespace that has not started a run within the window
 * runs at once, so a lone change is not delayed; one within the window waits for its end, and
 * requests for a namespace that is queued, waiting or running merge into its next run. One run at a time per namespace, up to `max_parallel_namespaces` at once. A
 * failed run is retried as a full pass after a capped exponential backoff; a run whose failure was
 * isolated (resources held) runs again at once. What a run does is the caller's (`run`).
 */
export class NamespaceScheduler {
  private readonly slots = new Map<NsKey, Slot>();
  private readonly ready: Slot[] = [];
  private readonly phases: Record<Phase, number> = { idle: 0, coalescing: 0, ready: 0, running: 0, retrying: 0, requeued: 0 };
  private readonly inflight = new Set<Promise<void>>();
  private idleWaiters: (() => void)[] = [];
  private stopped = false;

  constructor(private readonly options: NamespaceSchedulerOptions) {}

  /**
   * Asks for a run of a namespace. `immediate` skips the coalesce window (and a pending retry's
   * backoff): full passes use it. After `stop()` the waiter hears StoppedError at once.
   */
  request(ns: NsKey, r: { full?: boolean; verify?: boolean; immediate: boolean; waiter?: RunWaiter; pendingSince?: number }): void {
    if (this.stopped) {
      r.waiter?.({ ok: false, error: new StoppedError() });
      return;
    }
    const st = this.slot(ns);
    st.full ||= r.full ?? false;
    st.verify ||= r.verify ?? false;
    if (r.pendingSince !== undefined) st.pendingSince ??= r.pendingSince;
    if (r.waiter) st.waiters.push(r.waiter);
    this.schedule(st, r.immediate);
  }

  /** A handler's kind asks to be called again in a namespace soon (coalesced). Unknown namespaces are ignored. */
  wake(ns: NsKey, kind: string): void {
    const st = this.slots.get(ns);
    // A forgotten namespace has nothing desired and nothing applied: nothing to look at again.
    if (!st || this.stopped) return;
    st.recheck.add(kind);
    this.schedule(st, false);
  }

  /** The namespaces it knows (forgotten ones are not). */
  namespaces(): NsKey[] {
    return [...this.slots.keys()];
  }

  /** The namespaces running now, each with when its run started (performance.now()), oldest first. */
  running(): { ns: NsKey; since: number }[] {
    const out: { ns: NsKey; since: number }[] = [];
    if (this.phases.running === 0) return out;
    for (const st of this.slots.values()) if (st.phase === "running") out.push({ ns: st.ns, since: st.lastStart ?? performance.now() });
    return out.sort((a, b) => a.since - b.since);
  }

  /** Resolves when nothing is queued, waiting (coalescing or retry backoff) or running. */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Delay before a retry after the given number of consecutive failures (capped exponential). */
  backoff(failures: number): number {
    const { retry_initial_delay_ms: initial, retry_max_delay_ms: max } = this.options.config;
    return Math.min(initial * 2 ** Math.min(failures - 1, 30), max);
  }

  /** Nothing new starts, timers are cancelled, the runs in flight finish; every waiter hears. */
  async stop(): Promise<void> {
    this.stopped = true;
    const stopped = new StoppedError();
    for (const st of this.slots.values()) {
      if (st.phase !== "running" && st.phase !== "idle") this.setPhase(st, "idle");
      if (st.phase !== "running") for (const w of st.waiters.splice(0)) w({ ok: false, error: stopped });
    }
    this.ready.length = 0;
    while (this.inflight.size > 0) await Promise.all([...this.inflight]);
    for (const st of this.slots.values()) for (const w of st.waiters.splice(0)) w({ ok: false, error: stopped });
    this.checkIdle();
  }

  /** Resolves `idle()` waiters if nothing is left (after something outside changed `busy()`). */
  checkIdle(): void {
    if (this.idleWaiters.length === 0 || !this.isIdle()) return;
    for (const w of this.idleWaiters.splice(0)) w();
  }

  private slot(ns: NsKey): Slot {
    let st = this.slots.get(ns);
    if (!st) {
      st = { ns, phase: "idle", timer: undefined, full: false, verify: false, again: false, recheck: new Set(), failures: 0, pendingSince: undefined, waiters: [], lastStart: undefined };
      this.slots.set(ns, st);
      this.phases.idle++;
    }
    return st;
  }

  private schedule(st: Slot, immediate: boolean): void {
    switch (st.phase) {
      case "running":
        st.again = true;
        return;
      case "ready":
        return;
      case "coalescing":
      case "retrying":
        if (immediate) this.makeReady(st);
        return;
      case "requeued":
        this.setPhase(st, "idle");
      // falls through: a requested run replaces the requeued one
      case "idle": {
        const left = st.lastStart === undefined ? 0 : this.options.config.coalesce_ms - (performance.now() - st.lastStart);
        if (immediate || left <= 0) this.makeReady(st);
        else this.wait(st, "coalescing", left);
      }
    }
  }

  private wait(st: Slot, phase: "coalescing" | "retrying" | "requeued", ms: number): void {
    this.setPhase(st, phase);
    st.timer = setTimeout(() => {
      st.timer = undefined;
      if (phase === "retrying") this.options.retried();
      this.makeReady(st);
    }, ms);
    // A requeue alone does not keep the process alive.
    if (phase === "requeued") st.timer.unref?.();
  }

  private makeReady(st: Slot): void {
    this.setPhase(st, "ready");
    this.ready.push(st);
    this.pump();
  }

  private setPhase(st: Slot, phase: Phase): void {
    if (st.timer) clearTimeout(st.timer);
    st.timer = undefined;
    this.phases[st.phase]--;
    this.phases[phase]++;
    st.phase = phase;
  }

  private pump(): void {
    while (!this.stopped && this.phases.running < this.options.config.max_parallel_namespaces && this.ready.length > 0) {
      const st = this.ready.shift()!;
      if (st.phase !== "ready") continue;
      const p = this.run(st);
      this.inflight.add(p);
      void p.finally(() => this.inflight.delete(p));
    }
  }

  private async run(st: Slot): Promise<void> {
    this.setPhase(st, "running");
    st.lastStart = performance.now();
    const waiters = st.waiters.splice(0);
    const request: RunRequest = { full: st.full, verify: st.verify, recheck: st.recheck, pendingSince: st.pendingSince };
    st.full = st.verify = st.again = false;
    st.recheck = new Set();
    st.pendingSince = undefined;
    let outcome: RunOutcome;
    try {
      outcome = await this.options.run(st.ns, request);
    } catch (err) {
      outcome = { ok: false, error: asError(err) };
      this.options.logger.error({ err, namespace: st.ns ?? null }, "reconcile loop error");
    }
    this.setPhase(st, "idle");
    const keepPending = () => {
      if (request.pendingSince !== undefined) st.pendingSince = Math.min(request.pendingSince, st.pendingSince ?? Infinity);
    };

    if (outcome.isolated && !this.stopped) {
      // The resources to blame are held now: the same run again at once lands the rest of the
      // namespace, and its waiters (a pass) hear of that run, not of this one.
      st.waiters.unshift(...waiters);
      st.full = true;
      st.verify ||= request.verify;
      for (const kind of request.recheck) st.recheck.add(kind);
      keepPending();
      this.makeReady(st);
      this.checkIdle();
      return;
    }
    for (const w of waiters) w(outcome);

    if (!outcome.ok) {
      st.failures++;
      st.full = true;
      keepPending();
    } else {
      st.failures = 0;
    }
    if (!this.stopped) {
      const started = this.options.started();
      if (st.waiters.length > 0) this.makeReady(st);
      else if (!outcome.ok && started) {
        const delay = this.backoff(st.failures);
        this.options.logger.info({ namespace: st.ns ?? null, delayMs: delay, failures: st.failures }, "namespace apply will be retried");
        this.wait(st, "retrying", delay);
      } else if (st.again) this.schedule(st, false);
      else if (outcome.requeue !== undefined && started) {
        // Kept for whichever run comes first: the timer's, or a request's that replaces it.
        for (const kind of outcome.requeue.kinds) st.recheck.add(kind);
        this.wait(st, "requeued", outcome.requeue.afterMs);
      }
    }
    this.maybeForget(st);
    this.pump();
    this.checkIdle();
  }

  /** A namespace at rest with nothing desired, nothing applied and nothing pending is forgotten. */
  private maybeForget(st: Slot): void {
    if (st.phase !== "idle" || st.waiters.length > 0 || st.again || st.failures > 0) return;
    if (!this.options.forgettable(st.ns)) return;
    this.slots.delete(st.ns);
    this.phases.idle--;
    this.options.forget(st.ns);
  }

  private isIdle(): boolean {
    const p = this.phases;
    return p.running === 0 && p.ready === 0 && p.coalescing === 0 && p.retrying === 0 && !this.options.busy();
  }
}
