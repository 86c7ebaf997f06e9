/**
 * The host's xtables lock, held for one namespace's restores (legacy; `IptablesRunner.holdXtablesLock`,
 * which takes it with `xtables-lock-hold.ts`): while held, every restore the applier starts runs under
 * it, each tool taking a lock file of its own family, so the two families' restores go side by side
 * while every other xtables user still waits for us.
 *
 * Shared and counted: callers `acquire` (joining a hold already taken; callers at the same time wait
 * for one attempt) and `release`; each restore started under it is a `use`. The lock is let go only
 * when no taker is left and no restore that started under it still runs: a tool must never run under
 * a hold that is gone, since it would then skip the host's lock. Refusals cost nothing: without the
 * runner's support, on nf_tables, or when the lock is not free in time, `acquire` says false and the
 * restores take turns at the lock as usual.
 */
import type { CoreLogger } from "./logger.js";
import type { IptablesRunner, XtablesLockHold } from "./iptables-runner.js";

export interface SharedXtablesHoldOptions {
  runner: IptablesRunner;
  namespace: string | undefined;
  logger: CoreLogger;
  /** Seconds to wait for the lock. */
  lockWaitSeconds?: number | undefined;
}

/** A restore's use of the hold: `lock` to run under (undefined: no hold), `done` when it has ended. */
export interface HoldUse {
  lock: XtablesLockHold | undefined;
  /** Idempotent. */
  done: () => void;
}

export class SharedXtablesHold {
  private readonly runner: IptablesRunner;
  private readonly namespace: string | undefined;
  private readonly logger: CoreLogger;
  private readonly lockWaitSeconds: number | undefined;
  private hold: { lock: XtablesLockHold; takers: number; running: number } | undefined;
  private taking: Promise<void> | undefined;
  private refusalLogged = false;

  constructor(options: SharedXtablesHoldOptions) {
    this.runner = options.runner;
    this.namespace = options.namespace;
    this.logger = options.logger;
    this.lockWaitSeconds = options.lockWaitSeconds;
  }

  /** Takes the lock, or joins the hold already taken; false when it is not held. */
  async acquire(): Promise<boolean> {
    if (!this.hold) {
      // Callers at the same time wait for one attempt (a second flock would wait for the first).
      this.taking ??= this.take().finally(() => (this.taking = undefined));
      await this.taking;
    }
    if (!this.hold) return false;
    this.hold.takers++;
    return true;
  }

  private async take(): Promise<void> {
    if (!this.runner.holdXtablesLock) return;
    let lock: XtablesLockHold | undefined;
    try {
      lock = await this.runner.holdXtablesLock(this.lockWaitSeconds === undefined ? {} : { waitSeconds: this.lockWaitSeconds });
    } catch (err) {
      this.logger.warn({ namespace: this.namespace, err }, "xtables lock not taken for both families; their restores take turns");
      return;
    }
    if (!lock) {
      // Why the tools cannot share it, once: the families then take turns for good.
      const refusal = this.runner.holdRefusal;
      if (refusal !== undefined && !this.refusalLogged) {
        this.refusalLogged = true;
        this.logger.info({ namespace: this.namespace, reason: refusal }, "xtables lock cannot be shared; the families' restores take turns");
      }
      return;
    }
    this.hold = { lock, takers: 0, running: 0 };
    this.logger.debug({ namespace: this.namespace, lock: lock.path }, "xtables lock held for both families");
  }

  /** One taker of `acquire` is done with the hold. */
  release(): void {
    if (!this.hold || this.hold.takers === 0) return;
    this.hold.takers--;
    this.letGoIfUnused();
  }

  /** True while the lock is held. */
  get held(): boolean {
    return this.hold !== undefined;
  }

  /** Marks a restore as running under the current hold (if any) until its `done`. */
  use(): HoldUse {
    const hold = this.hold;
    if (!hold) return { lock: undefined, done: () => undefined };
    hold.running++;
    let done = false;
    return {
      lock: hold.lock,
      done: () => {
        if (done) return;
        done = true;
        hold.running--;
        this.letGoIfUnused();
      },
    };
  }

  private letGoIfUnused(): void {
    const hold = this.hold;
    if (!hold || hold.takers > 0 || hold.running > 0) return;
    this.hold = undefined;
    hold.lock.release();
    this.logger.debug({ namespace: this.namespace }, "xtables lock let go");
  }
}
