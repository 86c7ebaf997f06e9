/** What a `ProgressLog` counts and how it writes a line. */
export interface ProgressLogOptions {
  /** How many items the work has (namespaces of a full pass, routers of a full sync). */
  total: number;
  /** Writes one progress line: the caller's logger, level (info) and constant message. */
  log(done: number, total: number): void;
  /** Least time between two lines, and from the start to the first (default 1000 ms). */
  intervalMs?: number;
  /** The clock (default `performance.now`); tests pass their fake timers' one. */
  now?: () => number;
}

/**
 * Progress of long work, for an operator watching the logs: `done / total`, at most one line per
 * interval (1 s), none for work that ends within the first interval. A step inside an interval is
 * not lost: a timer writes the count at the interval's end, so the last line is never older than
 * the work's real state by more than an interval while something moves. `finish()` ends it (the
 * caller logs its own "finished" line).
 */
export class ProgressLog {
  private done = 0;
  private last: number;
  private timer: NodeJS.Timeout | undefined;
  private finished = false;
  private readonly intervalMs: number;
  private readonly now: () => number;

  constructor(private readonly options: ProgressLogOptions) {
    this.intervalMs = options.intervalMs ?? 1_000;
    this.now = options.now ?? (() => performance.now());
    this.last = this.now();
  }

  /** How many are done so far. */
  get count(): number {
    return this.done;
  }

  /** `n` more items are done. */
  step(n = 1): void {
    if (this.finished) return;
    this.done += n;
    if (this.done >= this.options.total) return;
    const wait = this.last + this.intervalMs - this.now();
    if (wait <= 0) this.write();
    else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        if (!this.finished && this.done < this.options.total) this.write();
      }, wait);
      // Progress alone never keeps the process alive.
      this.timer.unref?.();
    }
  }

  /** The work ended (done, failed or abandoned): no more lines. */
  finish(): void {
    this.finished = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private write(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.last = this.now();
    this.options.log(this.done, this.options.total);
  }
}
