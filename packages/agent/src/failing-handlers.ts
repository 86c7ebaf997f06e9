import type { Logger } from "pino";
import type { NsKey } from "./desired-state.js";
import { RetryTimers } from "./retry-timers.js";

/** A resource handler skipped in a namespace after failing there with all its resources held. */
export interface FailingHandler {
  readonly ns: NsKey;
  readonly kind: string;
  readonly error: Error;
  /** Consecutive times it was skipped (backoff exponent). */
  readonly failures: number;
  /** Skipped until its retry. */
  readonly benched: boolean;
}

interface Entry extends FailingHandler {
  benched: boolean;
}

export interface FailingHandlersOptions {
  logger: Logger;
  /** Delay before the retry after the given number of consecutive failures. */
  backoff(failures: number): number;
  /** False while the loop is not started or is stopping: no retry is scheduled or fires. */
  live(): boolean;
  /** A skipped handler's backoff ran out: it is called again in its namespace, on fresh managers. */
  retry(handler: FailingHandler): void;
}

/**
 * Resource handlers that fail in a namespace even with every one of their resources held (DESIGN
 * §5a, failure isolation: a handler's failure is its own). Such a handler is *benched* there: the
 * namespace runs without it, so the other handlers' resources land, and what the kernel has of its
 * chains is kept as it is (`LoopContext.keepKernelStateFor`): nothing of its rules is removed or
 * loosened, and no half-built model of it is ever applied. After a capped exponential backoff it
 * is called again, on fresh managers that re-read the kernel, as a full pass; it leaves this set
 * once a run of its namespace succeeds with it called (or with nothing for it to do).
 */
export class FailingHandlers {
  private readonly entries = new Map<string, Entry>();
  private readonly timers: RetryTimers;

  constructor(private readonly options: FailingHandlersOptions) {
    this.timers = new RetryTimers(options);
  }

  /** Benches a handler in a namespace after a failure and schedules its retry. */
  bench(ns: NsKey, kind: string, error: Error): FailingHandler {
    const key = keyOf(ns, kind);
    const before = this.entries.get(key);
    const entry: Entry = { ns, kind, error, failures: (before?.failures ?? 0) + 1, benched: true };
    this.entries.set(key, entry);
    this.schedule(entry);
    return entry;
  }

  /** The kinds benched in a namespace. */
  benchedIn(ns: NsKey): Set<string> {
    const out = new Set<string>();
    for (const e of this.entries.values()) if (e.benched && e.ns === ns) out.add(e.kind);
    return out;
  }

  /**
   * After a successful run of a namespace: the handlers it did not skip (`skipped`: those benched
   * when it started), called again or with nothing to do, have recovered.
   */
  settle(ns: NsKey, skipped: ReadonlySet<string>): void {
    for (const [key, e] of this.entries) {
      if (e.ns !== ns || e.benched || skipped.has(e.kind)) continue;
      this.entries.delete(key);
      this.options.logger.info({ namespace: ns ?? null, kind: e.kind, failures: e.failures }, "failed resource handler recovered");
    }
  }

  /** The benched ones, for reports. */
  benched(): FailingHandler[] {
    return [...this.entries.values()].filter((e) => e.benched);
  }

  /** Schedules the retry of every benched handler that has none (the loop just started). */
  scheduleAll(): void {
    for (const [key, e] of this.entries) if (e.benched && !this.timers.pending(key)) this.schedule(e);
  }

  /** A retry is waiting for its backoff (the loop is not idle). */
  waiting(): boolean {
    return this.timers.waiting();
  }

  /** Cancels every pending retry; the handlers stay benched. */
  stop(): void {
    this.timers.stop();
  }

  private schedule(entry: Entry): void {
    const key = keyOf(entry.ns, entry.kind);
    this.timers.schedule(key, entry.failures, () => {
      if (this.entries.get(key) !== entry) return;
      entry.benched = false;
      this.options.retry(entry);
    });
  }

  /** The delay before a benched handler's retry (for the log line that benches it). */
  delayOf(handler: FailingHandler): number {
    return this.options.backoff(handler.failures);
  }
}

function keyOf(ns: NsKey, kind: string): string {
  return `${ns ?? ""}\u0000${kind}`;
}
