import type { Logger } from "pino";
import type { ByKind, NsKey } from "./desired-state.js";
import { resourcesNamedBy } from "./failure-scope.js";
import { RetryTimers } from "./retry-timers.js";

/** A resource whose apply failed, by `kind/id`. */
export interface FailingResource {
  readonly ns: NsKey;
  readonly kind: string;
  readonly id: string;
  readonly error: Error;
  /** Consecutive failures (backoff exponent). */
  readonly failures: number;
  /** Held until its retry: the rest of the namespace applies meanwhile. */
  readonly held: boolean;
}

interface Entry extends FailingResource {
  held: boolean;
  /** One of many held together (a handler's failure): its retry is logged at debug, the loop logs the batch. */
  quiet: boolean;
}

export interface FailedResourcesOptions {
  logger: Logger;
  /** Delay before the retry after the given number of consecutive failures. */
  backoff(failures: number): number;
  /** False while the loop is not started or is stopping: no retry is scheduled or fires. */
  live(): boolean;
  /** A held resource's backoff ran out: it is not held any more; run its namespace. */
  retry(resource: FailingResource): void;
  /** The number of held resources may have changed (for the gauge). */
  changed(): void;
}

/**
 * The resources whose apply failed (DESIGN §5a, failure isolation). A failure whose error names
 * resources holds them, and a handler that threw naming none has its resources of the namespace
 * held (`failureScope`): their namespace runs again at once without them, so the rest of it lands,
 * and they keep what the kernel has. Each is retried alone after its own capped exponential
 * backoff; it leaves this set when a run applies it, or when it is no longer desired.
 */
export class FailedResources {
  private readonly entries = new Map<string, Entry>();
  private readonly timers: RetryTimers;

  constructor(private readonly options: FailedResourcesOptions) {
    this.timers = new RetryTimers(options);
  }

  /**
   * The resources a failure is tied to, as its error names them (`resource` or `resources`,
   * `kind/id`, along the `cause` chain): those desired in the namespace and not held already.
   */
  culprits(error: unknown, desired: ByKind, held: ReadonlyMap<string, ReadonlySet<string>>): { kind: string; id: string }[] {
    return resourcesNamedBy(error, desired, held).filter(({ kind, id }) => !this.entries.get(`${kind}/${id}`)?.held);
  }

  /**
   * Holds a resource after a failure and schedules its retry. `quiet`: one of many held together
   * (every resource of a failing handler), whose retry is logged at debug level.
   */
  hold(ns: NsKey, kind: string, id: string, error: Error, options: { quiet?: boolean } = {}): void {
    const key = `${kind}/${id}`;
    const before = this.entries.get(key);
    const entry: Entry = { ns, kind, id, error, failures: (before?.failures ?? 0) + 1, held: true, quiet: options.quiet ?? false };
    this.entries.set(key, entry);
    this.options.changed();
    this.schedule(entry);
  }

  /** Schedules the retry of every held resource that has none (the loop just started). */
  scheduleAll(): void {
    for (const [key, e] of this.entries) if (e.held && !this.timers.pending(key)) this.schedule(e);
  }

  /** The failed resources held in a namespace for a kind, among `desired`. */
  heldIn(ns: NsKey, kind: string, desired: ReadonlyMap<string, unknown>): string[] {
    const out: string[] = [];
    for (const e of this.entries.values()) if (e.held && e.kind === kind && e.ns === ns && desired.has(e.id)) out.push(e.id);
    return out;
  }

  /** After a successful run of a namespace: the failed resources it applied (not held) have recovered. */
  settle(ns: NsKey, held: ReadonlyMap<string, ReadonlySet<string>>): void {
    let changed = false;
    for (const [key, e] of this.entries) {
      if (e.ns !== ns || e.held || held.get(e.kind)?.has(e.id)) continue;
      this.entries.delete(key);
      const logger = this.options.logger;
      (e.quiet ? logger.debug.bind(logger) : logger.info.bind(logger))({ namespace: ns ?? null, kind: e.kind, resource: e.id, failures: e.failures }, "failed resource applied");
      changed = true;
    }
    if (changed) this.options.changed();
  }

  /** Failed resources that are no longer desired are not retried. */
  forgetUndesired(desired: (kind: string, id: string) => boolean): void {
    for (const [key, e] of this.entries) {
      if (desired(e.kind, e.id)) continue;
      this.timers.cancel(key);
      this.entries.delete(key);
    }
  }

  /** The held ones, for reports. */
  held(): FailingResource[] {
    return [...this.entries.values()].filter((e) => e.held);
  }

  /** A retry is waiting for its backoff (the loop is not idle). */
  waiting(): boolean {
    return this.timers.waiting();
  }

  /** Cancels every pending retry; the resources stay held. */
  stop(): void {
    this.timers.stop();
  }

  private schedule(entry: Entry): void {
    const key = `${entry.kind}/${entry.id}`;
    const delay = this.timers.schedule(key, entry.failures, () => {
      if (this.entries.get(key) !== entry) return;
      entry.held = false;
      this.options.changed();
      this.options.retry(entry);
    });
    if (delay === undefined) return;
    const logger = this.options.logger;
    const log = entry.quiet ? logger.debug.bind(logger) : logger.info.bind(logger);
    log({ namespace: entry.ns ?? null, kind: entry.kind, resource: entry.id, delayMs: delay, failures: entry.failures }, "failed resource will be retried");
  }
}
