/**
 * One pending retry per key, each after its own capped backoff: the timers behind the reconcile
 * loop's failure sets (`FailedResources`, `FailingHandlers`). A key's new schedule replaces its
 * pending one; nothing is scheduled, and nothing fires, while the loop is not live; timers never
 * keep the process up.
 */
export class RetryTimers {
  private readonly timers = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly options: {
      /** Delay before the retry after the given number of consecutive failures. */
      backoff(failures: number): number;
      /** False while the loop is not started or is stopping. */
      live(): boolean;
    },
  ) {}

  /** Schedules `fire` for `key` after the backoff for `failures`; the delay, or undefined when the loop is not live. */
  schedule(key: string, failures: number, fire: () => void): number | undefined {
    this.cancel(key);
    if (!this.options.live()) return undefined;
    const delay = this.options.backoff(failures);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      if (this.options.live()) fire();
    }, delay);
    timer.unref?.();
    this.timers.set(key, timer);
    return delay;
  }

  /** A retry of `key` is waiting for its backoff. */
  pending(key: string): boolean {
    return this.timers.has(key);
  }

  cancel(key: string): void {
    const timer = this.timers.get(key);
    if (timer) clearTimeout(timer);
    this.timers.delete(key);
  }

  /** Some retry is waiting for its backoff (the loop is not idle). */
  waiting(): boolean {
    return this.timers.size > 0;
  }

  /** Cancels every pending retry. */
  stop(): void {
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
  }
}
