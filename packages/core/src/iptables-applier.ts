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
 * Invariants: foreign rules are never in a delete or insert; a rule we want appears once; a second
 * apply of the same state sends nothing; a failed table leaves that table as it was, and the next
 * apply starts from a fresh read.
 */
import { isBuiltinChain, parseSave } from "./save-format.js";
import {
  NamespaceGoneError,
  ResourceProblemError,
  RestoreError,
  UnknownChainError,
  XtablesLockError,
} from "./errors.js";
import type { IpFamily, IptablesRunner, RestoreOptions, RestoreStream, XtablesLockHold } from "./runner.js";
import { silentLogger, type CoreLogger } from "./logger.js";
import { matchSequences } from "./sequence-diff.js";
import { validateNamespaceName } from "./netns.js";
import { isTargetExtension } from "./canonical/module-specs.js";
import { ruleJumpTarget } from "./canonical/rule-tokens.js";
import type { TableName, TableState } from "./iptables-table.js";

/**
 * How long a stream may stay open before it is abandoned (its apply never came): on legacy, the
 * longest the host-wide xtables lock is held for an unfinished stream.
 */
const STREAM_MAX_OPEN_MS = 30_000;

/** Chains per group a stream sends (see `flushBatch`). */
const STREAM_BATCH_CHAINS = 300;

/** A restore opened ahead of its apply (`openStream`). */
interface OpenStream {
  table: TableName;
  wrapName: string;
  /** The family's view, which takes each streamed chain at once (taken out again if abandoned). */
  view: KernelView;
  /** The input so far, from `*table` on; `sent` of them are written to the tool. */
  lines: string[];
  sent: number;
  /** Edit lines among them (for the result). */
  editLines: number;
  /** Chains streamed since the last group went out (`flushBatch`). */
  batch: { declarations: string[]; rules: string[] };
  /** Chains the stream declared (put in the view provisionally). */
  created: string[];
  /** Of those, the ones sent whole (not just declared as a jump target). */
  streamed: string[];
  /**
   * Chains sent as they grow (`streamGrowth`), with their change entry; `frozen` once what was sent
   * is no longer how the chain starts (the apply's diff corrects it).
   */
  growing: Map<string, { change: ChainChange; frozen: boolean; removals: number }>;
  changes: ChainChange[];
  /** The tool's input, once started. */
  sink: RestoreStream | undefined;
  /** Settles once the tool is started (or will not be). */
  ready: Promise<void>;
  abandoned: boolean;
  watchdog?: NodeJS.Timeout;
  /** Ends the stream's use of the xtables lock hold it started under (`useHold`). */
  holdUse?: () => void;
}

/** Our cached copy of what the kernel holds: table → chain → rule texts. */
type KernelTable = Map<string, string[]>;
type KernelView = Map<string, KernelTable>;

export interface LockRetryPolicy {
  /** Attempts in all, the first included. */
  attempts: number;
  initialDelayMs: number;
  maxDelayMs: number;
}

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

/** What one family of a manager wants, as the applier sees it. */
export interface FamilyDesire {
  family: IpFamily;
  wrapName: string;
  tables: readonly TableState[];
  /** Chains changed since the last successful apply, per table. */
  dirty: ReadonlyMap<TableName, ReadonlySet<string>>;
}

export interface ChainChange {
  table: string;
  chain: string;
  added: number;
  removed: number;
  created?: boolean;
  deleted?: boolean;
  rewritten?: boolean;
}

export interface FamilyPlan {
  family: IpFamily;
  namespace: string | undefined;
  /** The exact input for `iptables-restore -n`; empty when nothing changes. */
  input: string;
  /** Edit lines (not counting `*table`/`COMMIT`). */
  lines: number;
  tables: string[];
  changes: ChainChange[];
  /** True when every chain was compared (view just loaded). */
  full: boolean;
  /** `plan` only: the namespace does not exist, the input is what a fresh one would get. */
  namespaceMissing?: boolean;
}

export interface FamilyApplyResult extends FamilyPlan {
  sent: boolean;
  lockRetries: number;
  durationMs: number;
}

interface TablePlan {
  table: string;
  lines: string[];
  changes: ChainChange[];
  /** Applied to the view after a successful restore. */
  commit: (view: KernelView) => void;
  /** Ownership memory to keep after success. */
  owned: Map<string, Set<string>>;
  /** The unwrapped chains we declare (wrapped ones are ours by name). */
  declared: Set<string>;
}

const DEFAULT_LOCK_RETRY: LockRetryPolicy = { attempts: 8, initialDelayMs: 100, maxDelayMs: 2_000 };

export class IptablesApplier {
  readonly namespace: string | undefined;
  private readonly runner: IptablesRunner;
  private readonly logger: CoreLogger;
  private readonly lockWaitSeconds: number | undefined;
  private readonly lockRetry: LockRetryPolicy;
  private readonly streamMaxOpenMs: number;
  private readonly views = new Map<IpFamily, KernelView>();
  /** Families whose kernel is known to hold nothing until the first apply (`assumeEmptyKernel`). */
  private readonly emptyKernel = new Set<IpFamily>();
  /** Per wrap/family/table: rules we placed in chains we do not own alone, by chain. */
  private readonly owned = new Map<string, Map<string, Set<string>>>();
  /** Per wrap/family/table: the unwrapped chains we declared at the last apply. */
  private readonly declared = new Map<string, Set<string>>();
  /**
   * One queue per family: applies and plans of a family run one at a time (each reads and updates
   * that family's view), while the two families, whose views and restores are independent, may
   * run side by side.
   */
  private readonly queues = new Map<IpFamily, Promise<unknown>>();
  /** Families whose view was loaded outside an apply: their next apply still compares every chain. */
  private readonly compareAll = new Set<IpFamily>();
  private holdRefusalLogged = false;
  /** The host's xtables lock while held for this namespace (`acquireHold`). */
  private hold: { lock: XtablesLockHold; takers: number; running: number } | undefined;
  private holdTaking: Promise<void> | undefined;
  /** Restores opened ahead of their apply (`openStream`), by family. */
  private readonly streams = new Map<IpFamily, OpenStream>();

  constructor(options: IptablesApplierOptions) {
    if (options.namespace !== undefined) validateNamespaceName(options.namespace);
    this.runner = options.runner;
    this.namespace = options.namespace;
    this.logger = options.logger ?? silentLogger;
    this.lockWaitSeconds = options.lockWaitSeconds;
    this.lockRetry = { ...DEFAULT_LOCK_RETRY, ...options.lockRetry };
    this.streamMaxOpenMs = options.streamMaxOpenMs ?? STREAM_MAX_OPEN_MS;
  }

  /** Forgets the kernel view so the next apply reads `iptables-save` again. */
  invalidate(family?: IpFamily): void {
    for (const f of family === undefined ? ([4, 6] as const) : [family]) this.abortStream(f);
    if (family === undefined) {
      this.views.clear();
      this.emptyKernel.clear();
      this.compareAll.clear();
    } else {
      this.views.delete(family);
      this.emptyKernel.delete(family);
      this.compareAll.delete(family);
    }
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
      this.views.delete(family);
      this.emptyKernel.add(family);
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
  async acquireHold(): Promise<boolean> {
    if (!this.hold) {
      // Callers at the same time wait for one attempt (a second flock would wait for the first).
      this.holdTaking ??= this.takeHold().finally(() => (this.holdTaking = undefined));
      await this.holdTaking;
    }
    if (!this.hold) return false;
    this.hold.takers++;
    return true;
  }

  private async takeHold(): Promise<void> {
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
      if (refusal !== undefined && !this.holdRefusalLogged) {
        this.holdRefusalLogged = true;
        this.logger.info({ namespace: this.namespace, reason: refusal }, "xtables lock cannot be shared; the families' restores take turns");
      }
      return;
    }
    this.hold = { lock, takers: 0, running: 0 };
    this.logger.debug({ namespace: this.namespace, lock: lock.path }, "xtables lock held for both families");
  }

  /** One taker of `acquireHold` is done with the hold. */
  releaseHold(): void {
    if (!this.hold || this.hold.takers === 0) return;
    this.hold.takers--;
    this.letGoIfUnused();
  }

  /** True while the hold lasts. */
  get holding(): boolean {
    return this.hold !== undefined;
  }

  /** Marks a restore as running under the current hold (if any); the function returned ends that. */
  private useHold(): { lock: XtablesLockHold | undefined; done: () => void } {
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

  /**
   * Rules in the family's kernel view, loading it (one `iptables-save`, which the apply would run
   * anyway) when it is not. 0 for a namespace assumed empty.
   */
  viewRuleCount(family: IpFamily): Promise<number> {
    this.abortStream(family);
    return this.serialize(family, async () => {
      let view = this.views.get(family);
      if (!view) {
        if (this.emptyKernel.has(family)) return 0;
        view = await this.loadView(family);
      }
      return ruleCount(view);
    });
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
    return this.serialize(family, async () => {
      let view = this.views.get(family);
      if (!view) {
        if (this.emptyKernel.has(family)) return new Map();
        try {
          view = await this.loadView(family);
        } catch (err) {
          if (err instanceof NamespaceGoneError) return new Map();
          throw err;
        }
      }
      return new Map([...(view.get(table) ?? new Map<string, string[]>())].map(([chain, rules]) => [chain, [...rules]]));
    });
  }

  /** Rules in the family's kernel view if it is loaded; undefined otherwise (nothing is read). */
  loadedRuleCount(family: IpFamily): number | undefined {
    const view = this.views.get(family);
    return view ? ruleCount(view) : undefined;
  }

  /** True when the family's kernel view is loaded (the next apply compares dirty chains only). */
  hasView(family: IpFamily): boolean {
    return this.views.has(family);
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
        if (!(err instanceof NamespaceGoneError) || this.views.has(desire.family)) throw err;
        const { plan } = await this.compute(desire, new Map());
        return { ...plan, namespaceMissing: true };
      }
    });
  }

  apply(desire: FamilyDesire): Promise<FamilyApplyResult> {
    return this.serialize(desire.family, async () => {
      const stream = this.streams.get(desire.family);
      if (stream) return this.finishStream(desire, stream);
      const started = performance.now();
      const { plan, tablePlans } = await this.compute(desire);
      let lockRetries = 0;
      if (plan.input !== "") {
        lockRetries = await this.restore(desire, plan, tablePlans);
      }
      this.commit(desire, tablePlans);
      return { ...plan, sent: plan.input !== "", lockRetries, durationMs: performance.now() - started };
    });
  }

  /** True when the runner can take a restore's input while it runs (`IptablesRunner.restoreStream`). */
  get canStream(): boolean {
    return typeof this.runner.restoreStream === "function";
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
    const open = this.runner.restoreStream?.bind(this.runner);
    if (!open || this.streams.has(family)) return false;
    const view = await this.serialize(family, async () => {
      let v = this.views.get(family);
      if (!v) {
        v = this.emptyKernel.delete(family) ? this.emptyView(family) : await this.loadView(family);
        this.compareAll.add(family);
      }
      return v;
    }).catch(() => undefined);
    if (!view || this.streams.has(family)) return false;
    const target = { namespace: this.namespace, family };
    const options: RestoreOptions = this.lockWaitSeconds === undefined ? {} : { lockWaitSeconds: this.lockWaitSeconds };
    const stream: OpenStream = { table, wrapName, view, lines: [`*${table}`], sent: 0, editLines: 0, batch: { declarations: [], rules: [] }, created: [], streamed: [], growing: new Map(), changes: [], sink: undefined, ready: Promise.resolve(), abandoned: false };
    stream.ready = (async () => {
      if (after) await after.catch(() => undefined);
      if (stream.abandoned) return;
      // Under a hold from its start to its end (the tool holds its lock from `*table` to COMMIT).
      const use = this.useHold();
      stream.holdUse = use.done;
      stream.sink = open(target, use.lock ? { ...options, underHold: use.lock } : options);
      this.pump(stream);
    })();
    this.streams.set(family, stream);
    // A stream nobody finishes would keep its tool waiting (on legacy holding the host-wide xtables
    // lock): give up on it after a while; the apply, whenever it comes, then sends everything.
    stream.watchdog = setTimeout(() => {
      if (this.streams.get(family) !== stream) return;
      this.logger.warn({ namespace: this.namespace, family, afterMs: this.streamMaxOpenMs }, "restore stream not finished in time; abandoned");
      this.abortStream(family);
    }, this.streamMaxOpenMs);
    stream.watchdog.unref();
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
    const stream = this.streams.get(family);
    const sent: string[] = [];
    if (!stream || table.name !== stream.table) return sent;
    let kernel = stream.view.get(table.name);
    if (!kernel) stream.view.set(table.name, (kernel = new Map()));
    const prefix = `${stream.wrapName}-`;
    const { declarations, rules } = stream.batch;
    next: for (const chain of chains) {
      if (!chain.startsWith(prefix) || kernel.has(chain) || !table.isDeclared(chain)) continue;
      const declare: string[] = [];
      for (const target of table.jumpTargets(chain)) {
        if (target === chain || isTargetExtension(target) || isBuiltinChain(table.name, target) || kernel.has(target) || declare.includes(target)) continue;
        if (!target.startsWith(prefix) || !table.isDeclared(target)) continue next;
        declare.push(target);
      }
      for (const target of declare) {
        declarations.push(`:${target} - [0:0]`);
        kernel.set(target, []);
        stream.created.push(target);
        stream.changes.push({ table: table.name, chain: target, added: 0, removed: 0, created: true });
      }
      const wanted = table.renderChain(chain);
      declarations.push(`:${chain} - [0:0]`);
      for (const rule of wanted) rules.push(`-A ${chain} ${rule}`);
      kernel.set(chain, wanted);
      stream.created.push(chain);
      stream.streamed.push(chain);
      sent.push(chain);
      stream.changes.push({ table: table.name, chain, added: wanted.length, removed: 0, created: true });
    }
    if (declarations.length >= STREAM_BATCH_CHAINS) this.flushBatch(stream);
    return sent;
  }

  /**
   * Sends what these chains have grown by since the last call, for chains the kernel did not have
   * when the stream opened and that keep getting rules while the caller computes (the l2 driver's
   * `sg-chain` and the physdev jumps in its FORWARD and INPUT chains: one or two rules per port,
   * ~40% of a cold add's input, which would otherwise all go at the end). Only the part later rules
   * cannot displace goes (`TableState.topRules`: a later `top` rule goes after them), and only up
   * to the first rule whose jump target is not declared yet. The chains stay on the caller's dirty
   * list: the apply diffs them against what was sent and writes the rest. Should a rule leave a
   * chain meanwhile, the chain is left to that diff from then on. (What was sent is only ever a
   * guess at the chain's start: that diff corrects whatever differs, a duplicate `top` rule that
   * renderChain drops, or a chain removed meanwhile, included.) Each call costs the rules added
   * since the last one, not the chain's rendering. A no-op without an open stream.
   */
  streamGrowth(family: IpFamily, table: TableState, chains: Iterable<string>): void {
    const stream = this.streams.get(family);
    if (!stream || table.name !== stream.table) return;
    let kernel = stream.view.get(table.name);
    if (!kernel) stream.view.set(table.name, (kernel = new Map()));
    const prefix = `${stream.wrapName}-`;
    const { declarations, rules } = stream.batch;
    const candidates: string[] = [];
    for (const chain of chains) {
      if (stream.growing.has(chain)) {
        if (!stream.growing.get(chain)!.frozen) candidates.push(chain);
        continue;
      }
      if (!chain.startsWith(prefix) || kernel.has(chain) || !table.isDeclared(chain)) continue;
      declarations.push(`:${chain} - [0:0]`);
      kernel.set(chain, []);
      stream.created.push(chain);
      const change: ChainChange = { table: table.name, chain, added: 0, removed: 0, created: true };
      stream.changes.push(change);
      stream.growing.set(chain, { change, frozen: false, removals: table.removals(chain) });
      candidates.push(chain);
    }
    for (const chain of candidates) {
      const state = stream.growing.get(chain)!;
      if (table.removals(chain) !== state.removals) {
        state.frozen = true;
        continue;
      }
      const sent = kernel.get(chain)!;
      const more = table.topRules(chain, sent.length);
      let taken = 0;
      for (const { text, target } of more) {
        if (target !== undefined && !isTargetExtension(target) && !isBuiltinChain(table.name, target) && !kernel.has(target)) break;
        rules.push(`-A ${chain} ${text}`);
        sent.push(text);
        taken++;
      }
      state.change.added += taken;
    }
    // They go with the next group of chains (groups keep nf_tables fast, see flushBatch).
  }

  /**
   * Streamed chains go out in groups, declarations first: iptables-nft-restore takes twice as long
   * when declarations and rules alternate chain by chain (66k lines: 6.0 s instead of 2.7; groups of
   * ~300 chains: 2.5 s), legacy a little longer (0.79 s instead of 0.70).
   */
  private flushBatch(stream: OpenStream): void {
    const { declarations, rules } = stream.batch;
    if (declarations.length === 0 && rules.length === 0) return;
    for (const l of declarations) stream.lines.push(l);
    for (const l of rules) stream.lines.push(l);
    stream.editLines += declarations.length + rules.length;
    stream.batch = { declarations: [], rules: [] };
    this.pump(stream);
  }

  private pump(stream: OpenStream): void {
    if (!stream.sink || stream.sent === stream.lines.length) return;
    let text = "";
    for (let i = stream.sent; i < stream.lines.length; i++) text += `${stream.lines[i]}\n`;
    stream.sent = stream.lines.length;
    stream.sink.write(text);
  }

  /** Drops an open stream: its chains leave the view, its input ends without COMMIT (nothing is committed). */
  private abortStream(family: IpFamily): void {
    const stream = this.streams.get(family);
    if (!stream) return;
    this.streams.delete(family);
    clearTimeout(stream.watchdog);
    stream.abandoned = true;
    // Not in the kernel after all. The caller took the streamed chains off its dirty list, so the
    // next apply compares every chain.
    const kernel = stream.view.get(stream.table);
    for (const chain of stream.created) kernel?.delete(chain);
    if (this.views.get(family) === stream.view) this.compareAll.add(family);
    this.logger.debug({ namespace: this.namespace, family, chains: stream.created.length }, "restore stream abandoned");
    void stream.ready
      .then(() => stream.sink?.end())
      .catch(() => undefined)
      .finally(() => stream.holdUse?.());
  }

  /** The apply of a family with an open stream: the rest of the edits and COMMIT go into it. */
  private async finishStream(desire: FamilyDesire, stream: OpenStream): Promise<FamilyApplyResult> {
    const started = performance.now();
    let computed: { plan: FamilyPlan; tablePlans: TablePlan[] };
    // Streamed chains the caller has not changed since are in the view as wanted: a full
    // comparison (the first apply after a load) need not render them again (~6,000 chains at
    // 2,000 ports, 70 ms per family).
    const dirty = desire.dirty.get(stream.table);
    const clean = new Set<string>();
    for (const c of stream.streamed) if (!dirty?.has(c)) clean.add(c);
    try {
      computed = await this.compute(desire, undefined, { table: stream.table, chains: clean });
    } catch (err) {
      this.abortStream(desire.family);
      throw err;
    }
    this.streams.delete(desire.family);
    clearTimeout(stream.watchdog);
    this.flushBatch(stream);
    const { plan, tablePlans } = computed;
    const own = tablePlans.find((tp) => tp.table === stream.table);
    for (const l of own?.lines ?? []) stream.lines.push(l);
    stream.lines.push("COMMIT");
    for (const tp of tablePlans) {
      if (tp === own || tp.lines.length === 0) continue;
      stream.lines.push(`*${tp.table}`);
      for (const l of tp.lines) stream.lines.push(l);
      stream.lines.push("COMMIT");
    }
    const input = `${stream.lines.join("\n")}\n`;
    const full: FamilyPlan = {
      ...plan,
      input,
      lines: stream.editLines + plan.lines,
      tables: [stream.table, ...plan.tables.filter((t) => t !== stream.table)],
      changes: [...stream.changes, ...mergeGrowth(stream, plan.changes)],
    };
    let lockRetries = 0;
    try {
      await stream.ready;
      this.pump(stream);
      await stream.sink!.end();
      stream.holdUse?.();
      this.logger.debug({ namespace: this.namespace, family: desire.family, lines: full.lines, tables: full.tables, streamed: stream.editLines }, "rules applied");
    } catch (err) {
      // Its tool has ended: its use of a hold too (idempotent).
      stream.holdUse?.();
      // The lock was held throughout: send the whole input again the usual way, with its retries.
      if (!(err instanceof XtablesLockError)) return this.failed(err, desire, tablePlans);
      lockRetries = 1 + (await this.restore(desire, full, tablePlans));
    }
    this.commit(desire, tablePlans);
    return { ...full, sent: true, lockRetries, durationMs: performance.now() - started };
  }

  /** Counters of a chain's rules, summed (reads `iptables-save -c`; not for the hot path). */
  async trafficCounters(family: IpFamily, table: string, chain: string): Promise<{ packets: bigint; bytes: bigint }> {
    const text = await this.runner.save({ namespace: this.namespace, family }, { table, counters: true });
    const saved = parseSave(text).get(table)?.chains.get(chain);
    let packets = 0n;
    let bytes = 0n;
    for (const r of saved?.rules ?? []) {
      packets += r.counters?.packets ?? 0n;
      bytes += r.counters?.bytes ?? 0n;
    }
    return { packets, bytes };
  }

  private serialize<T>(family: IpFamily, fn: () => Promise<T>): Promise<T> {
    const run = (this.queues.get(family) ?? Promise.resolve()).then(fn, fn);
    this.queues.set(family, run.catch(() => undefined));
    return run;
  }

  private key(wrap: string, family: IpFamily, table: string): string {
    return `${wrap}\u0000${family}\u0000${table}`;
  }

  private async loadView(family: IpFamily): Promise<KernelView> {
    const text = await this.runner.save({ namespace: this.namespace, family });
    const view: KernelView = new Map();
    for (const [name, table] of parseSave(text)) {
      const chains: KernelTable = new Map();
      for (const [chain, saved] of table.chains) chains.set(chain, saved.rules.map((r) => r.text));
      view.set(name, chains);
    }
    this.views.set(family, view);
    // Until an apply has compared everything against it (adopting or removing what a previous run
    // left), a freshly read view owes that full comparison, whoever read it (plan, viewRuleCount).
    this.compareAll.add(family);
    this.logger.debug({ namespace: this.namespace, family, tables: view.size }, "kernel view loaded");
    return view;
  }

  private emptyView(family: IpFamily): KernelView {
    const view: KernelView = new Map();
    this.views.set(family, view);
    this.logger.debug({ namespace: this.namespace, family }, "kernel view assumed empty (namespace just created)");
    return view;
  }

  /** `assumed`: plan against this view instead of the kernel's (a namespace that does not exist yet). */
  /** `skip`: chains of one table known to be in the view as wanted (streamed and not changed since). */
  private async compute(desire: FamilyDesire, assumed?: KernelView, skip?: { table: string; chains: ReadonlySet<string> }): Promise<{ plan: FamilyPlan; tablePlans: TablePlan[] }> {
    let view = assumed ?? this.views.get(desire.family);
    const full = assumed !== undefined || view === undefined || this.compareAll.has(desire.family);
    if (!view) view = this.emptyKernel.delete(desire.family) ? this.emptyView(desire.family) : await this.loadView(desire.family);
    const tablePlans: TablePlan[] = [];
    for (const table of [...desire.tables].sort((a, b) => a.name.localeCompare(b.name))) {
      const dirty = desire.dirty.get(table.name);
      if (!full && (!dirty || dirty.size === 0)) continue;
      tablePlans.push(this.planTable(desire, table, view.get(table.name), full ? undefined : dirty!, skip?.table === table.name ? skip.chains : undefined));
    }
    const withEdits = tablePlans.filter((tp) => tp.lines.length > 0);
    const input = withEdits.map((tp) => `*${tp.table}\n${tp.lines.join("\n")}\nCOMMIT`).join("\n");
    const plan: FamilyPlan = {
      family: desire.family,
      namespace: this.namespace,
      input: input ? `${input}\n` : "",
      lines: withEdits.reduce((n, tp) => n + tp.lines.length, 0),
      tables: withEdits.map((tp) => tp.table),
      changes: tablePlans.flatMap((tp) => tp.changes),
      full,
    };
    return { plan, tablePlans };
  }

  /**
   * The edits for one table. `dirty` undefined means compare everything: every chain we declare or
   * put rules in, and every chain of the kernel (stale chains and rules of ours are removed).
   */
  private planTable(desire: FamilyDesire, table: TableState, kernel: KernelTable | undefined, dirty: ReadonlySet<string> | undefined, skip?: ReadonlySet<string>): TablePlan {
    const wrapPrefix = `${desire.wrapName}-`;
    const key = this.key(desire.wrapName, desire.family, table.name);
    const prevOwned = this.owned.get(key) ?? new Map<string, Set<string>>();
    const prevDeclared = this.declared.get(key) ?? new Set<string>();
    const owned = new Map(prevOwned);

    let chains: Iterable<string>;
    if (dirty) chains = dirty;
    else {
      const all = new Set<string>(table.declaredChains());
      for (const c of table.chainsWithRules()) all.add(c);
      for (const c of kernel?.keys() ?? []) all.add(c);
      for (const c of skip ?? []) all.delete(c);
      chains = all;
    }

    const exists = (c: string) => kernel?.has(c) === true || isBuiltinChain(table.name, c);
    const created: string[] = [];
    const deleted: string[] = [];
    const edits: string[] = [];
    const changes: ChainChange[] = [];
    const newContent = new Map<string, string[] | null>();
    const createdSet = new Set<string>();
    /** Chains created whole (all their jumps are new) and the rules inserted into existing chains. */
    const grown: string[] = [];
    const inserted: { chain: string; rules: readonly string[] }[] = [];
    const deletedSet = new Set<string>();

    for (const chain of [...chains].sort()) {
      const isOurs = chain.startsWith(wrapPrefix);
      const want = table.isDeclared(chain);
      const current = kernel?.get(chain);
      const wanted = table.renderChain(chain);

      if (!want && !isBuiltinChain(table.name, chain) && (isOurs || prevDeclared.has(chain))) {
        // A chain of ours nobody wants any more.
        if (current !== undefined) {
          deleted.push(chain);
          deletedSet.add(chain);
          newContent.set(chain, null);
          changes.push({ table: table.name, chain, added: 0, removed: current.length, deleted: true });
        }
        owned.delete(chain);
        continue;
      }
      if (!exists(chain)) {
        if (!want) {
          if (wanted.length === 0) continue;
          throw new UnknownChainError(table.name, chain, { ...resourceOpt(table.resourceOf(chain)), namespace: this.namespace });
        }
        created.push(chain);
        createdSet.add(chain);
        grown.push(chain);
        for (const r of wanted) edits.push(`-A ${chain} ${r}`);
        newContent.set(chain, wanted);
        if (!isOurs) owned.set(chain, new Set(wanted));
        changes.push({ table: table.name, chain, added: wanted.length, removed: 0, created: true });
        continue;
      }
      const rules = current ?? [];
      // Chains named after our wrap are ours whole; elsewhere, decide rule by rule.
      const wantedSet = isOurs ? undefined : new Set(wanted);
      const before = prevOwned.get(chain);
      const mine = wantedSet === undefined
        ? null
        : rules.map((t) => t.includes(desire.wrapName) || wantedSet.has(t) || before?.has(t) === true);
      const result = diffChain(chain, rules, mine, wanted);
      if (result.lines.length > 0) {
        if (result.added > 0) inserted.push({ chain, rules: result.inserted });
        for (const l of result.lines) edits.push(l);
        newContent.set(chain, result.final);
        changes.push({ table: table.name, chain, added: result.added, removed: result.removed, ...(result.rewritten ? { rewritten: true } : {}) });
      }
      if (wantedSet !== undefined) {
        if (wanted.length) owned.set(chain, wantedSet);
        else owned.delete(chain);
      }
    }

    this.checkJumpTargets(table, grown, inserted, (c) => (exists(c) || createdSet.has(c)) && !deletedSet.has(c));

    // Plain loops: spreading arrays that are sometimes empty (small-integer elements kind) and
    // sometimes strings kept deoptimizing this function, and recompiling it cost more than planning.
    const lines: string[] = [];
    for (const c of created.sort()) lines.push(`:${c} - [0:0]`);
    for (const l of edits) lines.push(l);
    for (const c of deleted) lines.push(`-F ${c}`);
    for (const c of deleted) lines.push(`-X ${c}`);
    return {
      table: table.name,
      lines,
      changes,
      owned,
      declared: new Set([...table.declaredChains(false)]),
      commit: (view) => {
        let t = view.get(table.name);
        if (!t) view.set(table.name, (t = new Map()));
        for (const [chain, content] of newContent) {
          if (content === null) t.delete(chain);
          else t.set(chain, content);
        }
      },
    };
  }

  /**
   * A jump to a chain that will not exist would fail the whole table's restore (and nf_tables names
   * only the COMMIT line); refuse it here, naming the rule's resource.
   */
  private checkJumpTargets(
    table: TableState,
    created: Iterable<string>,
    inserted: readonly { chain: string; rules: readonly string[] }[],
    chainExists: (c: string) => boolean,
  ): void {
    const check = (chain: string, target: string | undefined) => {
      if (target === undefined || isTargetExtension(target) || chainExists(target)) return;
      throw new UnknownChainError(table.name, target, {
        ...resourceOpt(table.resourceOf(chain, undefined, target)),
        namespace: this.namespace,
      });
    };
    // A new chain's rules all jump somewhere new (their targets are known from the table); in a chain
    // that was there only the inserted rules can: one port added to a 4,000-rule FORWARD checks two.
    for (const chain of created) for (const target of table.jumpTargets(chain)) check(chain, target);
    for (const { chain, rules } of inserted) for (const text of rules) check(chain, ruleJumpTarget(text));
  }



  /** Sends the input, waiting out xtables lock contention with capped exponential backoff. */
  private async restore(desire: FamilyDesire, plan: FamilyPlan, tablePlans: TablePlan[]): Promise<number> {
    const target = { namespace: this.namespace, family: desire.family };
    const options: RestoreOptions = this.lockWaitSeconds === undefined ? {} : { lockWaitSeconds: this.lockWaitSeconds };
    let delay = this.lockRetry.initialDelayMs;
    for (let attempt = 1; ; attempt++) {
      const use = this.useHold();
      try {
        try {
          await this.runner.restore(target, plan.input, use.lock ? { ...options, underHold: use.lock } : options);
        } finally {
          use.done();
        }
        this.logger.debug({ namespace: this.namespace, family: desire.family, lines: plan.lines, tables: plan.tables }, "rules applied");
        return attempt - 1;
      } catch (err) {
        if (err instanceof XtablesLockError && attempt < this.lockRetry.attempts) {
          this.logger.warn({ namespace: this.namespace, family: desire.family, attempt, delayMs: delay }, "xtables lock held, retrying");
          await sleep(delay);
          delay = Math.min(delay * 2, this.lockRetry.maxDelayMs);
          continue;
        }
        return this.failed(err, desire, tablePlans);
      }
    }
  }

  private failed(err: unknown, desire: FamilyDesire, tablePlans: TablePlan[]): never {
    // Whatever happened, our view may no longer match the kernel.
    this.invalidate(desire.family);
    if (err instanceof NamespaceGoneError) throw err;
    if (err instanceof RestoreError) throw this.attribute(err, desire, tablePlans);
    throw err;
  }

  /** After a successful restore: the view takes the edits, ownership memory is kept. */
  private commit(desire: FamilyDesire, tablePlans: readonly TablePlan[]): void {
    const view = this.views.get(desire.family)!;
    this.compareAll.delete(desire.family);
    for (const tp of tablePlans) {
      tp.commit(view);
      const key = this.key(desire.wrapName, desire.family, tp.table);
      this.owned.set(key, tp.owned);
      this.declared.set(key, tp.declared);
    }
  }

  /** Names the resource that owns the failing line's chain/rule. */
  private attribute(err: RestoreError, desire: FamilyDesire, _tablePlans: TablePlan[]): RestoreError {
    const table = desire.tables.find((t) => t.name === err.table);
    let resource: string | undefined;
    if (table && err.chain) {
      const text = err.lineText?.replace(/^-[AI] \S+ (?:\d+ )?/, "");
      resource = table.resourceOf(err.chain, text);
    }
    const failure = { exitCode: err.exitCode, stderr: err.stderr, input: err.input, ...(err.line !== undefined ? { line: err.line } : {}) };
    const opts = { namespace: this.namespace, family: desire.family, ...resourceOpt(resource), cause: err };
    const out = err instanceof ResourceProblemError ? new ResourceProblemError(failure, opts) : new RestoreError(failure, opts);
    this.logger.error(
      { namespace: this.namespace, family: desire.family, line: err.line, chain: err.chain, resource, stderr: err.stderr.trim(), context: out.context.map((c) => `${c.number}: ${c.text}`) },
      "iptables-restore failed",
    );
    return out;
  }
}

function resourceOpt(resource: string | undefined): { resource?: string } {
  return resource === undefined ? {} : { resource };
}

function ruleCount(view: ReadonlyMap<string, ReadonlyMap<string, readonly unknown[]>>): number {
  let n = 0;
  for (const table of view.values()) for (const rules of table.values()) n += rules.length;
  return n;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

interface ChainDiff {
  lines: string[];
  final: string[];
  /** The wanted rules the script adds. */
  inserted: string[];
  added: number;
  removed: number;
  rewritten: boolean;
}

/**
 * The edit script for one chain. `mine` marks which kernel rules are ours (`null`: all of them).
 * Deletes run from the bottom up so indexes stay valid; inserts then run top-down at final positions.
 */
export function diffChain(chain: string, current: readonly string[], mine: readonly boolean[] | null, wanted: readonly string[]): ChainDiff {
  const oursIdx: number[] = [];
  const oursText: string[] = [];
  for (let i = 0; i < current.length; i++) {
    if (mine === null || mine[i]) {
      oursIdx.push(i);
      oursText.push(current[i]!);
    }
  }
  const match = matchSequences(oursText, wanted);
  let matched = 0;
  for (let i = 0; i < match.length; i++) if (match[i]! >= 0) matched++;
  const removed = oursText.length - matched;
  const added = wanted.length - matched;
  if (removed === 0 && added === 0) return { lines: [], final: current as string[], inserted: [], added: 0, removed: 0, rewritten: false };

  const exclusive = mine === null || oursIdx.length === current.length;
  if (exclusive && matched === 0 && removed > 1) {
    // Nothing can stay: a flush and the new rules is the shortest script.
    return { lines: [`-F ${chain}`, ...wanted.map((r) => `-A ${chain} ${r}`)], final: [...wanted], inserted: [...wanted], added, removed, rewritten: true };
  }

  const lines: string[] = [];
  const gone = new Uint8Array(current.length);
  // In a shared chain, delete by text (immune to another writer moving rules) unless the text occurs
  // more than once, where only the index says which copy goes.
  let counts: Map<string, number> | undefined;
  if (mine !== null && removed > 0) {
    counts = new Map();
    for (const t of current) counts.set(t, (counts.get(t) ?? 0) + 1);
  }
  for (let k = oursIdx.length - 1; k >= 0; k--) {
    if (match[k]! >= 0) continue;
    const i = oursIdx[k]!;
    gone[i] = 1;
    lines.push(counts?.get(current[i]!) === 1 ? `-D ${chain} ${current[i]}` : `-D ${chain} ${i + 1}`);
  }
  // After the deletes: the surviving rules, and where each wanted rule already sits.
  const after: string[] = [];
  const posOfWanted = new Int32Array(wanted.length).fill(-1);
  let k = 0;
  for (let i = 0; i < current.length; i++) {
    const isMine = mine === null || mine[i];
    if (isMine) {
      const j = match[k++]!;
      if (gone[i]) continue;
      if (j >= 0) posOfWanted[j] = after.length;
    }
    after.push(current[i]!);
  }
  const final: string[] = [];
  const inserted: string[] = [];
  let src = 0;
  let prevFinal = -1; // final index of the previous wanted rule
  for (let j = 0; j < wanted.length; j++) {
    const p = posOfWanted[j]!;
    if (p >= 0) {
      while (src <= p) final.push(after[src++]!);
      prevFinal = final.length - 1;
      continue;
    }
    // Insert right after the previous wanted rule (at the top for the first).
    while (src < after.length && final.length < prevFinal + 1) final.push(after[src++]!);
    const at = prevFinal + 1;
    const atEnd = at === final.length && src === after.length;
    lines.push(atEnd ? `-A ${chain} ${wanted[j]}` : `-I ${chain} ${at + 1} ${wanted[j]}`);
    inserted.push(wanted[j]!);
    final.push(wanted[j]!);
    prevFinal = at;
  }
  while (src < after.length) final.push(after[src++]!);
  return { lines, final, inserted, added, removed, rewritten: false };
}

/** The apply's changes, with those of chains that grew through the stream added to the stream's entries. */
function mergeGrowth(stream: OpenStream, changes: readonly ChainChange[]): ChainChange[] {
  if (stream.growing.size === 0) return [...changes];
  const out: ChainChange[] = [];
  for (const c of changes) {
    const grew = c.table === stream.table ? stream.growing.get(c.chain) : undefined;
    if (!grew) {
      out.push(c);
      continue;
    }
    grew.change.added += c.added;
    grew.change.removed += c.removed;
  }
  return out;
}
