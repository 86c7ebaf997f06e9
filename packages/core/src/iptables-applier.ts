/**
 * The applier: turns what an `IptablesManager` wants into the smallest `iptables-restore --noflush`
 * input that gets the kernel there, for one network namespace and one IP family at a time.
 *
 * Model
 * - The kernel view. The first apply (or `verify()`) in a (namespace, family) runs `iptables-save`
 *   once and keeps the rules it printed, per table and chain, as text. After every successful restore
 *   the view is updated with exactly the edits we sent, so later applies never read the kernel: no
 *   `iptables-save` on the hot path. Any failure drops the view, and the next apply reads again.
 * - Ownership, as Neutron defines it. A chain named `<wrap>-...` is ours entirely. In any other chain
 *   (built-ins, shared unwrapped chains such as `neutron-filter-top`) a rule is ours when its text
 *   names our wrap, when it is one we want there, or when we placed it there before; every other rule
 *   is foreign and is never deleted, replaced or moved.
 * - Dirty chains. The manager reports which chains changed since the last successful apply; only
 *   those are compared (a full comparison happens when the view is (re)loaded). The work therefore
 *   grows with the change, not with the ruleset.
 * - Edit scripts. For each changed chain we match the rules of ours already there against the wanted
 *   list (longest common subsequence), delete the unmatched ones and insert the missing ones at their
 *   positions. Matched rules are not touched, so their packet counters survive. A chain where nothing
 *   can stay is flushed and rewritten when that is shorter. In chains we own alone, deletes are by
 *   index; in shared chains they are by rule text, so another writer's changes cannot make us delete
 *   the wrong rule.
 * - One restore per family. The two families have separate views and queues; on nf_tables a manager
 *   sends a large change of both (256+ changed chains each) side by side, since the two restores
 *   are independent transactions (a cold add of 108k rules: 3.5 s instead of 5.2); small changes go
 *   one after the other, because the second commit would find the generation moved and re-read its
 *   tables. On legacy both tools take the host-wide xtables lock, so they take turns, unless the
 *   applier holds that lock for them (`acquireHold`): then every restore it starts runs under a
 *   lock file of its family's own, the two families side by side, and other xtables users still
 *   wait for us (the manager holds for a change of both families into large tables). Only tables with edits
 *   appear, as one input: new chains are declared first (declaring an existing chain under
 *   `--noflush` would flush it), then the edits, then the chains to delete are flushed and removed.
 *   Jumps to chains that will not exist are refused before anything is sent, naming the rule's
 *   resource.
 * - Streams (`openStream`). For a large cold change a restore can be opened before the change is
 *   known in full: chains the kernel does not have go out as the caller finishes them (in groups,
 *   declarations first), each entering the view provisionally and leaving the caller's dirty list;
 *   the apply then diffs as usual against that view (skipping streamed chains not changed since)
 *   and writes the remaining edits and COMMIT into the same input. Nothing is committed before
 *   COMMIT, so an abandoned stream (ended without it) leaves the kernel as it was; its chains
 *   leave the view again, and the next apply compares every chain. On legacy the tool holds
 *   the xtables lock from its `*table` line on, so a stream holds it while the caller computes
 *   (abandoned after 30 s).
 * - Atomicity is per table. `iptables-restore` commits each `*table … COMMIT` block on its own (both
 *   backends; verified by the runner contract suite), so when a later table fails, earlier tables
 *   of the same input are in. That is why a failure drops the whole view: the next apply re-reads
 *   the kernel and completes or repairs the change. (One restore per table would make each apply
 *   all-or-nothing at the price of a process per table; a change rarely spans tables.)
 *
 * The parts (this class coordinates them: one queue per family, streams by family, the order of
 * load, plan, send and commit):
 * - `kernel-view.ts`: the cached view per family, ownership memory, counts and copies of it.
 * - `table-plan.ts`: which chains to compare and the lines for each table; `chain-diff.ts`: the
 *   edit script for one chain.
 * - `restore-render.ts`: table plans to restore input (`FamilyPlan`).
 * - `restore-stream.ts`: one restore opened ahead of its apply.
 * - `restore-writer.ts`: running a restore, lock contention retried, failures attributed.
 * - `shared-xtables-hold.ts`: the xtables lock held for the namespace's restores, counted.
 *
 * Invariants: foreign rules are never in a delete or insert; a rule we want appears once; a second
 * apply of the same state sends nothing; a failed table leaves that table as it was, and the next
 * apply starts from a fresh read.
 */
import { NamespaceGoneError, XtablesLockError } from "./errors.js";
import type { TableName, TableState } from "./iptables-table.js";
import { KernelView, type FamilyView } from "./kernel-view.js";
import { silentLogger, type CoreLogger } from "./logger.js";
import { validateNamespaceName } from "./netns.js";
import { renderFamilyPlan, type FamilyPlan } from "./restore-render.js";
import { StreamedRestore } from "./restore-stream.js";
import { RestoreWriter, type LockRetryPolicy } from "./restore-writer.js";
import type { IpFamily, IptablesRunner } from "./iptables-runner.js";
import { SharedXtablesHold } from "./shared-xtables-hold.js";
import { planTables, type FamilyDesire, type TablePlan } from "./table-plan.js";

/**
 * How long a stream may stay open before it is abandoned (its apply never came): on legacy, the
 * longest the host-wide xtables lock is held for an unfinished stream.
 */
const STREAM_MAX_OPEN_MS = 30_000;

/** Options of `IptablesApplier`. */
export interface IptablesApplierOptions {
  runner: IptablesRunner;
  /** The network namespace; the host's own when undefined. */
  namespace?: string | undefined;
  logger?: CoreLogger;
  /** Seconds iptables-restore itself waits for the xtables lock on each attempt. */
  lockWaitSeconds?: number;
  lockRetry?: Partial<LockRetryPolicy>;
  /** How long a restore stream may stay open before it is abandoned (default 30 s). */
  streamMaxOpenMs?: number;
}

/** One family's restore as applied: its plan, whether it was sent, lock retries and how long it took. */
export interface FamilyApplyResult extends FamilyPlan {
  sent: boolean;
  lockRetries: number;
  durationMs: number;
}

/** Writes managers' tables of one namespace to the kernel: keeps a view of what the kernel holds (read once with `iptables-save`, then updated from what it sends), diffs each apply against it and sends only the difference in one `iptables-restore` per family; foreign rules are never touched. Managers of one namespace share one applier so their views agree. */
export class IptablesApplier {
  readonly namespace: string | undefined;
  private readonly runner: IptablesRunner;
  private readonly logger: CoreLogger;
  private readonly streamMaxOpenMs: number;
  private readonly view: KernelView;
  private readonly hold: SharedXtablesHold;
  private readonly writer: RestoreWriter;
  /**
   * One queue per family: applies and plans of a family run one at a time (each reads and updates
   * that family's view), while the two families, whose views and restores are independent, may
   * run side by side.
   */
  private readonly queues = new Map<IpFamily, Promise<unknown>>();
  /** Restores opened ahead of their apply (`openStream`), by family. */
  private readonly streams = new Map<IpFamily, StreamedRestore>();

  constructor(options: IptablesApplierOptions) {
    if (options.namespace !== undefined) validateNamespaceName(options.namespace);
    this.runner = options.runner;
    this.namespace = options.namespace;
    this.logger = options.logger ?? silentLogger;
    this.streamMaxOpenMs = options.streamMaxOpenMs ?? STREAM_MAX_OPEN_MS;
    const parts = { runner: this.runner, namespace: this.namespace, logger: this.logger, lockWaitSeconds: options.lockWaitSeconds };
    this.view = new KernelView(parts);
    this.hold = new SharedXtablesHold(parts);
    this.writer = new RestoreWriter({ ...parts, lockRetry: options.lockRetry, hold: this.hold });
  }

  /** Forgets the kernel view so the next apply reads `iptables-save` again. */
  invalidate(family?: IpFamily): void {
    for (const f of family === undefined ? ([4, 6] as const) : [family]) this.abortStream(f);
    this.view.invalidate(family);
  }

  /**
   * The caller created this namespace a moment ago, so its kernel holds no rules: the first apply of
   * each family plans against an empty view instead of running `iptables-save` (two processes per
   * namespace less; an l3 agent adding hundreds of routers starts two fewer per router). A view
   * already loaded is of an earlier namespace of that name (deleted behind our back) and is dropped.
   * Should anything else have written rules in between, nothing is lost: ours are added with
   * `--noflush` beside them, and the next `verify()` (the agent's resync) reads the kernel.
   */
  assumeEmptyKernel(): void {
    for (const family of [4, 6] as const) {
      this.abortStream(family);
      this.view.assumeEmpty(family);
    }
  }

  /**
   * Whether a manager may apply its two families at once. On nf_tables the IPv4 and IPv6 restores
   * are independent transactions (a commit that finds the other family's commit before it retries
   * inside iptables-nft-restore); on legacy both take the host-wide xtables lock, so the second
   * would only wait for the first.
   */
  async familiesInParallel(): Promise<boolean> {
    return (await this.runner.backend()) === "nft";
  }

  /**
   * Takes the host's xtables lock for this namespace's restores (legacy; see
   * `IptablesRunner.holdXtablesLock`), or joins the hold already taken: while it lasts, every
   * restore this applier starts, for any manager sharing it, runs under it (a restore without it
   * would wait for our own lock), so the two families go side by side; one family's restores still
   * go one at a time (`serialize`). Let go once every taker has called `releaseHold` and no
   * restore that started under it still runs. False when there is nothing to gain (nf_tables), the
   * runner cannot, or the lock was not free in time: the restores then take turns at the lock as
   * usual, each waiting for it.
   */
  acquireHold(): Promise<boolean> {
    return this.hold.acquire();
  }

  /** One taker of `acquireHold` is done with the hold. */
  releaseHold(): void {
    this.hold.release();
  }

  /** True while the hold lasts. */
  get holding(): boolean {
    return this.hold.held;
  }

  /**
   * Rules in the family's kernel view, loading it (one `iptables-save`, which the apply would run
   * anyway) when it is not. 0 for a namespace assumed empty.
   */
  viewRuleCount(family: IpFamily): Promise<number> {
    this.abortStream(family);
    return this.serialize(family, () => this.view.ruleCount(family));
  }

  /**
   * One table of the family's kernel view, loading it when it is not (one `iptables-save`, which the
   * next apply would run anyway): kernel chain name → rules as iptables-save prints them. Empty for
   * a namespace that does not exist (yet) or was just created. A copy: changing it changes nothing.
   * For callers that must keep what the kernel has for something they cannot rebuild (a resource
   * whose input is invalid).
   */
  kernelTable(family: IpFamily, table: TableName): Promise<Map<string, string[]>> {
    this.abortStream(family);
    return this.serialize(family, () => this.view.table(family, table));
  }

  /** Rules in the family's kernel view if it is loaded; undefined otherwise (nothing is read). */
  loadedRuleCount(family: IpFamily): number | undefined {
    return this.view.loadedRuleCount(family);
  }

  /** True when the family's kernel view is loaded (the next apply compares dirty chains only). */
  hasView(family: IpFamily): boolean {
    return this.view.has(family);
  }

  /**
   * The restore input that `apply` would send now. Changes nothing in the kernel. When the namespace
   * does not exist (yet), the plan is made against an empty kernel and says so.
   */
  plan(desire: FamilyDesire): Promise<FamilyPlan> {
    this.abortStream(desire.family);
    return this.serialize(desire.family, async () => {
      try {
        const { plan } = await this.compute(desire);
        return plan;
      } catch (err) {
        if (!(err instanceof NamespaceGoneError) || this.view.has(desire.family)) throw err;
        const { plan } = await this.compute(desire, new Map());
        return { ...plan, namespaceMissing: true };
      }
    });
  }

  /**
   * Brings the family's kernel tables to `desire`: sends only the difference from the view in one
   * `iptables-restore --noflush` (into the open stream, if any; nothing when already there) and
   * updates the view. Applies of a family run one at a time. A jump to a chain that will not exist
   * throws `UnknownChainError` before anything is sent; a failed restore drops the view and throws
   * the attributed `RestoreError` / `ResourceProblemError`, `XtablesLockError` or `NamespaceGoneError`.
   */
  apply(desire: FamilyDesire): Promise<FamilyApplyResult> {
    return this.serialize(desire.family, async () => {
      const stream = this.streams.get(desire.family);
      if (stream) return this.finishStream(desire, stream);
      const started = performance.now();
      const { plan, tablePlans } = await this.compute(desire);
      let lockRetries = 0;
      if (plan.input !== "") {
        lockRetries = await this.send(desire, plan);
      }
      this.view.commit(desire.family, desire.wrapName, tablePlans);
      return { ...plan, sent: plan.input !== "", lockRetries, durationMs: performance.now() - started };
    });
  }

  /** True when the runner can take a restore's input while it runs (`IptablesRunner.restoreStream`). */
  get canStream(): boolean {
    return this.writer.canStream;
  }

  /** True while a stream opened by `openStream` waits for its apply. */
  isStreaming(family: IpFamily): boolean {
    return this.streams.has(family);
  }

  /**
   * Opens the family's next restore now, for one table, so that chains can be sent while the caller
   * is still computing the rest (`streamChains`); the family's next `apply` writes the remaining
   * edits and COMMIT into the same input. Loads the kernel view first if needed. The tool starts
   * at once, or once `after` settles (legacy: the other family's restore, since the two only take
   * turns at the xtables lock). Any other use of the family before its apply (`plan`, `invalidate`,
   * `viewRuleCount`) abandons the stream: its input ends without COMMIT, so the kernel is left as
   * it was and the apply sends everything. Returns false when the runner cannot stream or a stream
   * is already open.
   */
  async openStream(family: IpFamily, wrapName: string, table: TableName, after?: Promise<unknown>): Promise<boolean> {
    if (!this.writer.canStream || this.streams.has(family)) return false;
    const view = await this.serialize(family, async () => {
      let v = this.view.get(family);
      if (!v) {
        v = this.view.takeEmpty(family) ?? (await this.view.load(family));
        this.view.oweFullCompare(family);
      }
      return v;
    }).catch(() => undefined);
    if (!view || this.streams.has(family)) return false;
    const stream = new StreamedRestore({ table, wrapName, view, after, hold: this.hold, open: (lock) => this.writer.openStream(family, lock) });
    this.streams.set(family, stream);
    // A stream nobody finishes would keep its tool waiting (on legacy holding the host-wide xtables
    // lock): give up on it after a while; the apply, whenever it comes, then sends everything.
    stream.expireAfter(this.streamMaxOpenMs, () => {
      if (this.streams.get(family) !== stream) return;
      this.logger.warn({ namespace: this.namespace, family, afterMs: this.streamMaxOpenMs }, "restore stream not finished in time; abandoned");
      this.abortStream(family);
    });
    this.logger.debug({ namespace: this.namespace, family, table }, "restore stream opened");
    return true;
  }

  /** Ends every open stream without committing (a caller that gives up on its deferred apply). */
  abandonStreams(): void {
    for (const family of [4, 6] as const) this.abortStream(family);
  }

  /**
   * Sends these chains now through the family's open stream, each that the kernel does not have yet
   * (declaration and every rule, as the apply would), with the chains they jump to declared first.
   * Chains that exist, are not ours (named after `wrapName`) or jump somewhere that will not exist
   * are left to the apply, which diffs as usual against the view plus what was streamed; so a
   * chain changed again after it went is still corrected. A no-op without an open stream.
   */
  streamChains(family: IpFamily, table: TableState, chains: Iterable<string>): string[] {
    return this.streams.get(family)?.sendChains(table, chains) ?? [];
  }

  /**
   * Sends what these chains have grown by since the last call, for chains the kernel did not have
   * when the stream opened and that keep getting rules while the caller computes (the l2 driver's
   * `sg-chain` and the physdev jumps in its FORWARD and INPUT chains: one or two rules per port,
   * a large share of a cold add's input, which would otherwise all go at the end). Only the part
   * later rules cannot displace goes (`TableState.topRules`: a later `top` rule goes after them), and
   * only up to the first rule whose jump target is not declared yet. The chains stay on the caller's
   * dirty list: the apply diffs them against what was sent and writes the rest. Should a rule leave
   * a chain meanwhile, the chain is left to that diff from then on. (What was sent is only ever a
   * guess at the chain's start: that diff corrects whatever differs, a duplicate `top` rule that
   * renderChain drops, or a chain removed meanwhile, included.) Each call costs the rules added
   * since the last one, not the chain's rendering. A no-op without an open stream.
   */
  streamGrowth(family: IpFamily, table: TableState, chains: Iterable<string>): void {
    this.streams.get(family)?.sendGrowth(table, chains);
  }

  /** Drops an open stream: its chains leave the view, its input ends without COMMIT (nothing is committed). */
  private abortStream(family: IpFamily): void {
    const stream = this.streams.get(family);
    if (!stream) return;
    this.streams.delete(family);
    stream.abandon();
    // Not in the kernel after all. The caller took the streamed chains off its dirty list, so the
    // next apply compares every chain.
    if (this.view.get(family) === stream.view) this.view.oweFullCompare(family);
    this.logger.debug({ namespace: this.namespace, family, chains: stream.createdChains }, "restore stream abandoned");
  }

  /** The apply of a family with an open stream: the rest of the edits and COMMIT go into it. */
  private async finishStream(desire: FamilyDesire, stream: StreamedRestore): Promise<FamilyApplyResult> {
    const started = performance.now();
    let computed: { plan: FamilyPlan; tablePlans: TablePlan[] };
    // Streamed chains the caller has not changed since are in the view as wanted: a full
    // comparison (the first apply after a load) need not render them again (thousands of chains
    // in a cold add of the l2 driver's ports).
    const clean = stream.unchangedSince(desire.dirty.get(stream.table));
    try {
      computed = await this.compute(desire, undefined, { table: stream.table, chains: clean });
    } catch (err) {
      this.abortStream(desire.family);
      throw err;
    }
    this.streams.delete(desire.family);
    const { tablePlans } = computed;
    const full = stream.complete(computed.plan, tablePlans);
    let lockRetries = 0;
    try {
      await stream.end();
      this.logger.debug({ namespace: this.namespace, family: desire.family, lines: full.lines, tables: full.tables, streamed: stream.editLines }, "rules applied");
    } catch (err) {
      // Its tool has ended: its use of a hold too (idempotent).
      stream.releaseHold();
      // The lock was held throughout: send the whole input again the usual way, with its retries.
      if (!(err instanceof XtablesLockError)) return this.failed(err, desire);
      lockRetries = 1 + (await this.send(desire, full));
    }
    this.view.commit(desire.family, desire.wrapName, tablePlans);
    return { ...full, sent: true, lockRetries, durationMs: performance.now() - started };
  }

  /** Counters of a chain's rules, summed (reads `iptables-save -c`; not for the hot path). */
  trafficCounters(family: IpFamily, table: string, chain: string): Promise<{ packets: bigint; bytes: bigint }> {
    return this.view.trafficCounters(family, table, chain);
  }

  private serialize<T>(family: IpFamily, fn: () => Promise<T>): Promise<T> {
    const run = (this.queues.get(family) ?? Promise.resolve()).then(fn, fn);
    this.queues.set(family, run.catch(() => undefined));
    return run;
  }

  /**
   * The family's plan against its view (loaded here when it is not). `assumed`: plan against this
   * view instead (a namespace that does not exist yet). `skip`: chains of one table known to be in
   * the view as wanted (streamed and not changed since).
   */
  private async compute(desire: FamilyDesire, assumed?: FamilyView, skip?: { table: string; chains: ReadonlySet<string> }): Promise<{ plan: FamilyPlan; tablePlans: TablePlan[] }> {
    const family = desire.family;
    let view = assumed ?? this.view.get(family);
    const full = assumed !== undefined || view === undefined || this.view.owesFullCompare(family);
    if (!view) view = this.view.takeEmpty(family) ?? (await this.view.load(family));
    const tablePlans = planTables(desire, view, {
      full,
      skip,
      memory: (table) => this.view.memory(desire.wrapName, family, table),
      namespace: this.namespace,
    });
    return { plan: renderFamilyPlan(family, this.namespace, tablePlans, full), tablePlans };
  }

  /** Sends a plan's input (lock contention retried); a failure is raised as `failed` says. */
  private async send(desire: FamilyDesire, plan: FamilyPlan): Promise<number> {
    try {
      return await this.writer.write(plan);
    } catch (err) {
      return this.failed(err, desire);
    }
  }

  private failed(err: unknown, desire: FamilyDesire): never {
    // Whatever happened, our view may no longer match the kernel.
    this.invalidate(desire.family);
    throw this.writer.attribute(err, desire.family, desire.tables);
  }
}
