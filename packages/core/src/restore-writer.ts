/**
 * Runs one namespace's restores: a whole input (`write`), or a stream whose input comes while the
 * tool runs (`openStream`), each under the shared xtables hold when there is one.
 *
 * Lock contention (`XtablesLockError`: exit 4 and the lock message, told apart from other exit-4
 * failures by `classifyRestoreFailure`) is waited out with capped exponential backoff, a fresh use
 * of the hold per attempt; anything else is the caller's to handle, and `attribute` names the
 * resource that owns a failing line. A failed restore changed nothing in the table that failed,
 * but may have committed the tables before it: the caller drops its view.
 */
import { ResourceProblemError, RestoreError, XtablesLockError } from "./errors.js";
import type { TableState } from "./iptables-table.js";
import type { CoreLogger } from "./logger.js";
import type { FamilyPlan } from "./restore-render.js";
import type { IpFamily, IptablesRunner, RestoreOptions, RestoreStream, XtablesLockHold } from "./iptables-runner.js";
import type { SharedXtablesHold } from "./shared-xtables-hold.js";

/** How an apply retries a restore that found the xtables lock held (legacy): attempts and the backoff between them. */
export interface LockRetryPolicy {
  /** Attempts in all, the first included. */
  attempts: number;
  initialDelayMs: number;
  maxDelayMs: number;
}

export interface RestoreWriterOptions {
  runner: IptablesRunner;
  namespace: string | undefined;
  logger: CoreLogger;
  /** Seconds iptables-restore itself waits for the xtables lock on each attempt. */
  lockWaitSeconds?: number | undefined;
  lockRetry?: Partial<LockRetryPolicy> | undefined;
  hold: SharedXtablesHold;
}

const DEFAULT_LOCK_RETRY: LockRetryPolicy = { attempts: 8, initialDelayMs: 100, maxDelayMs: 2_000 };

export class RestoreWriter {
  private readonly runner: IptablesRunner;
  private readonly namespace: string | undefined;
  private readonly logger: CoreLogger;
  private readonly options: RestoreOptions;
  private readonly lockRetry: LockRetryPolicy;
  private readonly hold: SharedXtablesHold;

  constructor(options: RestoreWriterOptions) {
    this.runner = options.runner;
    this.namespace = options.namespace;
    this.logger = options.logger;
    this.options = options.lockWaitSeconds === undefined ? {} : { lockWaitSeconds: options.lockWaitSeconds };
    this.lockRetry = { ...DEFAULT_LOCK_RETRY, ...options.lockRetry };
    this.hold = options.hold;
  }

  /** True when the runner can take a restore's input while it runs (`IptablesRunner.restoreStream`). */
  get canStream(): boolean {
    return typeof this.runner.restoreStream === "function";
  }

  /**
   * Starts a restore whose input is written while it runs, under `underHold` when given (the caller
   * keeps that use of the hold until the stream has ended). Only when `canStream`.
   */
  openStream(family: IpFamily, underHold: XtablesLockHold | undefined): RestoreStream {
    const target = { namespace: this.namespace, family };
    return this.runner.restoreStream!(target, underHold ? { ...this.options, underHold } : this.options);
  }

  /**
   * Sends the plan's input, waiting out xtables lock contention; resolves to the number of retries.
   * Rejects with the error of the last attempt.
   */
  async write(plan: FamilyPlan): Promise<number> {
    const target = { namespace: this.namespace, family: plan.family };
    let delay = this.lockRetry.initialDelayMs;
    for (let attempt = 1; ; attempt++) {
      const use = this.hold.use();
      try {
        try {
          await this.runner.restore(target, plan.input, use.lock ? { ...this.options, underHold: use.lock } : this.options);
        } finally {
          use.done();
        }
        this.logger.debug({ namespace: this.namespace, family: plan.family, lines: plan.lines, tables: plan.tables }, "rules applied");
        return attempt - 1;
      } catch (err) {
        if (err instanceof XtablesLockError && attempt < this.lockRetry.attempts) {
          this.logger.warn({ namespace: this.namespace, family: plan.family, attempt, delayMs: delay }, "xtables lock held, retrying");
          await sleep(delay);
          delay = Math.min(delay * 2, this.lockRetry.maxDelayMs);
          continue;
        }
        throw err;
      }
    }
  }

  /**
   * The error to raise for a failed restore of this family: a `RestoreError` again, now naming the
   * resource that owns the failing line's chain or rule (logged with its context); anything else as
   * it is.
   */
  attribute(err: unknown, family: IpFamily, tables: readonly TableState[]): unknown {
    if (!(err instanceof RestoreError)) return err;
    const table = tables.find((t) => t.name === err.table);
    let resource: string | undefined;
    if (table && err.chain) {
      const text = err.lineText?.replace(/^-[AI] \S+ (?:\d+ )?/, "");
      resource = table.resourceOf(err.chain, text);
    }
    const failure = { exitCode: err.exitCode, stderr: err.stderr, input: err.input, ...(err.line !== undefined ? { line: err.line } : {}) };
    const opts = { namespace: this.namespace, family, ...(resource === undefined ? {} : { resource }), cause: err };
    const out = err instanceof ResourceProblemError ? new ResourceProblemError(failure, opts) : new RestoreError(failure, opts);
    this.logger.error(
      { namespace: this.namespace, family, line: err.line, chain: err.chain, resource, stderr: err.stderr.trim(), context: out.context.map((c) => `${c.number}: ${c.text}`) },
      "iptables-restore failed",
    );
    return out;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
