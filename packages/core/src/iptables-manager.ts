import { kernelChainName, wrapNameFor } from "./chain-names.js";
import { IptablesApplier, type FamilyApplyResult } from "./iptables-applier.js";
import type { FamilyPlan } from "./restore-render.js";
import type { LockRetryPolicy } from "./restore-writer.js";
import { IptablesTable, type TableName } from "./iptables-table.js";
import { silentLogger, type CoreLogger } from "./logger.js";
import type { IpFamily, IptablesRunner } from "./iptables-runner.js";
import { UnknownTableError } from "./errors.js";
import { canonicalizeRule } from "./canonical/canonicalize-rule.js";
import { commentRule } from "./canonical/comment.js";
import { CanonicalCache } from "./canonical-cache.js";

/** Changed chains per family from which an nf_tables apply may run both families at once... */
const PARALLEL_MIN_CHAINS = 256;
/** ...when the family's tables hold at most this many rules per changed chain (re-reading them is cheap). */
const PARALLEL_RULES_PER_CHAIN = 8;

/**
 * Rules each family's table must hold for a legacy apply to hold the xtables lock and restore both
 * families side by side: a legacy restore reads and rewrites its whole table (~2.5 µs a rule), and
 * the hold costs a `flock` started (a few ms).
 */
const HOLD_MIN_RULES = 4000;

/** Neutron's `ic.SNAT_OUT`, the comment on the jump to the snat chain. */
export const SNAT_OUT_COMMENT = "Perform source NAT on outgoing traffic.";

/** Options of `IptablesManager` (Neutron's `IptablesManager` arguments, plus the runner and applier). */
export interface IptablesManagerOptions {
  runner: IptablesRunner;
  /** The network namespace; the host's own when undefined. */
  namespace?: string | undefined;
  /** The agent's name; cut to 16 characters as Neutron's `get_binary_name` does. */
  wrapName?: string;
  /** Manage the IPv6 tables too (Neutron's `use_ipv6`). Default true. */
  useIpv6?: boolean;
  /** Filter and raw only (Neutron's `state_less`). */
  stateless?: boolean;
  /** Manage the IPv4 nat table (and IPv6 nat PREROUTING). Default true. */
  nat?: boolean;
  /** Neutron's `comment_iptables_rules`. Default true. */
  comments?: boolean;
  /** Reject rule text that is not already in iptables-save form (for tests). */
  strict?: boolean;
  /** Canonical text shared with other managers (default `CanonicalCache.shared`, the process's). */
  canonicalCache?: CanonicalCache;
  logger?: CoreLogger;
  /** Share one applier between managers of the same namespace. */
  applier?: IptablesApplier;
  lockWaitSeconds?: number;
  lockRetry?: Partial<LockRetryPolicy>;
  /** How long a restore stream (`openStream`) may stay open unfinished before it is abandoned; default 30 s. */
  streamMaxOpenMs?: number;
}

/** What `IptablesManager.apply` did. */
export interface ApplyResult {
  /** One entry per restore planned (a family sent early by `applyEarly` and again after has two), in family order. */
  families: FamilyApplyResult[];
  /** True when a restore was sent. */
  sent: boolean;
  /** Edit lines sent, all families. */
  lines: number;
  /** The apply was skipped because the manager is inside `deferApply`. */
  deferred: boolean;
}

/** What an apply would send now (`IptablesManager.plan`), per family; nothing is sent. */
export interface Plan {
  families: FamilyPlan[];
  lines: number;
}

/** What `IptablesManager.verify` found drifted in the kernel and whether it repaired it. */
export interface VerifyResult {
  /** The repairs that were needed (empty when the kernel matched). */
  drift: FamilyApplyResult[];
  repaired: boolean;
}

/** The manager's tables of one family, by name: only those it manages there (nat and mangle not in stateless mode, and so on). */
type Tables = Partial<Record<TableName, IptablesTable>>;

/**
 * Neutron's IptablesManager: the tables of one agent in one namespace, with the initial layout Neutron
 * writes (wrapped built-in chains, `neutron-filter-top`, `local`, `neutron-postrouting-bottom`,
 * `snat`, `float-snat`, mangle `mark`). Mutations are synchronous and validated at once; `apply()`
 * sends only what changed since the last apply (see `IptablesApplier`).
 */
export class IptablesManager {
  readonly wrapName: string;
  readonly namespace: string | undefined;
  readonly ipv4: Tables = {};
  readonly ipv6: Tables = {};
  readonly useIpv6: boolean;
  private readonly applier: IptablesApplier;
  private readonly logger: CoreLogger;
  private readonly dirty = new Map<IpFamily, Map<TableName, Set<string>>>([
    [4, new Map()],
    [6, new Map()],
  ]);
  private deferDepth = 0;
  /**
   * This manager has taken the applier's hold of the host's xtables lock for its two families'
   * restores to go side by side (legacy, see `holdForBothFamilies`); given back when the apply
   * ends or the streams are abandoned, and, when `applyEarly` took it, after `holdMaxMs` without
   * an apply.
   */
  private holding: { watchdog?: ReturnType<typeof setTimeout> } | undefined;
  private readonly holdMaxMs: number;
  private applying = false;
  /** Families `applyEarly` sent inside the current deferred apply. */
  private readonly early = new Map<IpFamily, Promise<{ result: FamilyApplyResult } | { error: unknown }>>();

  constructor(options: IptablesManagerOptions) {
    this.wrapName = wrapNameFor(options.wrapName ?? "neutron-l3-agent");
    this.namespace = options.namespace;
    this.useIpv6 = options.useIpv6 ?? true;
    this.logger = options.logger ?? silentLogger;
    this.holdMaxMs = options.streamMaxOpenMs ?? 30_000;
    this.applier =
      options.applier ??
      new IptablesApplier({
        runner: options.runner,
        namespace: options.namespace,
        logger: this.logger,
        ...(options.lockWaitSeconds !== undefined ? { lockWaitSeconds: options.lockWaitSeconds } : {}),
        ...(options.lockRetry ? { lockRetry: options.lockRetry } : {}),
        ...(options.streamMaxOpenMs !== undefined ? { streamMaxOpenMs: options.streamMaxOpenMs } : {}),
      });
    if (this.applier.namespace !== this.namespace) throw new Error("the shared applier serves another namespace");

    const comments = options.comments ?? true;
    const strict = options.strict ?? false;
    const cache = options.canonicalCache ?? CanonicalCache.shared;
    const canonicalize = (family: IpFamily) => (rule: string, comment: string | undefined, resource: string | undefined) =>
      cache.resolve(family, strict, rule, comment, () => canonicalizeRule(commentRule(rule, comment), { family, strict, ...(resource !== undefined ? { resource } : {}) }));
    const make = (family: IpFamily, name: TableName) =>
      new IptablesTable(name, {
        wrapName: this.wrapName,
        family,
        comments,
        canonicalize: canonicalize(family),
        markDirty: (table, chain) => this.markDirty(family, table, chain),
      });

    for (const [family, tables] of [[4, this.ipv4], [6, this.ipv6]] as const) {
      tables.filter = make(family, "filter");
      // neutron-filter-top is shared among agents and sits at the very top of FORWARD and OUTPUT.
      tables.filter.addChain("neutron-filter-top", { wrap: false });
      tables.filter.addRule("FORWARD", "-j neutron-filter-top", { wrap: false, top: true });
      tables.filter.addRule("OUTPUT", "-j neutron-filter-top", { wrap: false, top: true });
      tables.filter.addChain("local");
      tables.filter.addRule("neutron-filter-top", "-j $local", { wrap: false });
      tables.raw = make(family, "raw");
    }
    this.wrapBuiltins(4, "filter", ["INPUT", "OUTPUT", "FORWARD"]);
    this.wrapBuiltins(6, "filter", ["INPUT", "OUTPUT", "FORWARD"]);
    this.wrapBuiltins(4, "raw", ["PREROUTING", "OUTPUT"]);
    this.wrapBuiltins(6, "raw", ["PREROUTING", "OUTPUT"]);

    if (!options.stateless) {
      for (const [family, tables] of [[4, this.ipv4], [6, this.ipv6]] as const) {
        tables.mangle = make(family, "mangle");
        this.wrapBuiltins(family, "mangle", ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]);
      }
      // The mark chain identifies ingress packets by interface (address scopes, metadata).
      this.ipv4.mangle!.addChain("mark");
      this.ipv4.mangle!.addRule("PREROUTING", "-j $mark");

      if (options.nat ?? true) {
        this.ipv4.nat = make(4, "nat");
        this.wrapBuiltins(4, "nat", ["PREROUTING", "OUTPUT", "POSTROUTING"]);
        // Shared, and last in POSTROUTING; our snat chain hangs off it so it runs after everything.
        this.ipv4.nat.addChain("neutron-postrouting-bottom", { wrap: false });
        this.ipv4.nat.addRule("POSTROUTING", "-j neutron-postrouting-bottom", { wrap: false });
        this.ipv4.nat.addChain("snat");
        this.ipv4.nat.addRule("neutron-postrouting-bottom", "-j $snat", { wrap: false, comment: SNAT_OUT_COMMENT });
        this.ipv4.nat.addChain("float-snat");
        this.ipv4.nat.addRule("snat", "-j $float-snat");
        // Zed wraps IPv6 nat PREROUTING only (for the metadata redirect over IPv6).
        this.ipv6.nat = make(6, "nat");
        this.wrapBuiltins(6, "nat", ["PREROUTING"]);
      }
    }
  }

  /** The tables of a family. */
  tables(family: IpFamily): Tables {
    return family === 4 ? this.ipv4 : this.ipv6;
  }

  /** One table; throws when the manager does not manage it (e.g. nat in stateless mode). */
  table(family: IpFamily, name: TableName): IptablesTable {
    const t = this.tables(family)[name];
    if (!t) throw new UnknownTableError(name, family, this.namespace === undefined ? {} : { namespace: this.namespace });
    return t;
  }

  get deferred(): boolean {
    return this.deferDepth > 0;
  }

  /**
   * Runs `fn` with applies deferred, then applies once (Neutron's `defer_apply`). Nested calls apply
   * when the outermost one ends. If `fn` throws, nothing is applied and the error propagates; the
   * changes it made stay pending for the next apply (streams it opened are abandoned), except a
   * family already sent by `applyEarly`.
   */
  async deferApply<T>(fn: (manager: this) => T | Promise<T>): Promise<{ value: T; result: ApplyResult }> {
    this.deferDepth++;
    let value: T;
    try {
      value = await fn(this);
    } catch (err) {
      if (this.deferDepth === 1) this.abandonStreams();
      throw err;
    } finally {
      this.deferDepth--;
    }
    const result = this.deferDepth === 0 ? await this.apply() : deferredResult();
    return { value, result };
  }

  /** Starts deferring: `apply` calls are no-ops until the matching `deferApplyOff` (nestable). */
  deferApplyOn(): void {
    this.deferDepth++;
  }

  /** Ends one level of deferring; at the outermost level, applies what changed meanwhile. */
  async deferApplyOff(): Promise<ApplyResult> {
    if (this.deferDepth > 0) this.deferDepth--;
    return this.deferDepth === 0 ? this.apply() : deferredResult();
  }

  /** Sends what changed since the last successful apply. A no-op inside `deferApply`. */
  async apply(): Promise<ApplyResult> {
    if (this.deferDepth > 0) return deferredResult();
    this.applying = true;
    try {
      return await this.applyPending();
    } finally {
      this.applying = false;
      this.releaseHold();
    }
  }

  private async applyPending(): Promise<ApplyResult> {
    // An open stream is finished like a family sent early (on legacy it waits for the other family).
    for (const family of this.families()) if (this.applier.isStreaming(family) && !this.early.has(family)) this.startEarly(family);
    const early = [...this.early];
    this.early.clear();
    const sentEarly = new Set(early.map(([family]) => family));
    // A family sent early goes again only for what changed in it after it went.
    const rest = this.families().filter((f) => !sentEarly.has(f) || this.changedChains(f) > 0);
    const settled: PromiseSettledResult<FamilyApplyResult>[] = [];
    if (early.length > 0) {
      // On nf_tables the rest may run beside the early family's restore when it is large too; on
      // legacy only under our hold of the xtables lock (else they take turns at it anyway).
      const notEarly = rest.filter((f) => !sentEarly.has(f));
      const beside = this.holding ? notEarly : (await this.applier.familiesInParallel()) ? await this.largeChanges(notEarly) : [];
      const running = beside.map((f) => this.applyFamily(f));
      // A family whose early restore failed keeps its changes pending until the next apply.
      const failed = new Set<IpFamily>();
      for (const [family, outcome] of early) {
        const o = await outcome;
        if ("result" in o) settled.push({ status: "fulfilled", value: o.result });
        else {
          settled.push({ status: "rejected", reason: o.error });
          failed.add(family);
        }
      }
      settled.push(...(await Promise.allSettled(running)));
      for (const f of rest) {
        if (beside.includes(f) || failed.has(f)) continue;
        settled.push(...(await Promise.allSettled([this.applyFamily(f)])));
      }
    } else if (await this.familiesSideBySide()) {
      // If one fails, the other's changes are in; the failed one's stay pending.
      settled.push(...(await Promise.allSettled(rest.map((f) => this.applyFamily(f)))));
    } else if (rest.length === 2 && (await this.holdForBothFamilies())) {
      settled.push(...(await Promise.allSettled(rest.map((f) => this.applyFamily(f)))));
    } else {
      for (const family of rest) {
        const r = await Promise.allSettled([this.applyFamily(family)]);
        settled.push(...r);
        if (r[0]!.status === "rejected") break;
      }
    }
    for (const r of settled) if (r.status === "rejected") throw r.reason;
    const families = settled.map((r) => (r as PromiseFulfilledResult<FamilyApplyResult>).value).sort((a, b) => a.family - b.family);
    const lines = families.reduce((n, f) => n + f.lines, 0);
    if (lines > 0) this.logger.debug({ namespace: this.namespace, lines }, "iptables apply sent changes");
    return { families, sent: families.some((f) => f.sent), lines, deferred: false };
  }

  /**
   * Inside a deferred apply, starts sending one family's pending changes now, so that its restore
   * runs while the caller still computes the other family; the deferred apply's end waits for it,
   * reports its result with the others and sends whatever changed in that family since. The l2
   * driver writes one family for all ports, calls this, then writes the other: the first family's
   * restore runs while the second's rules are computed. A family with an open stream
   * (`openStream`) always goes: its tool runs already and only the end of its input is left.
   *
   * Otherwise it starts only for a large change (256+ changed chains; on nf_tables also into tables small
   * next to it, see `familiesSideBySide`): a small change gains nothing, and on nf_tables a restore
   * committing while another runs makes that one re-read its tables. Returns whether it started.
   * If it fails, the deferred apply's end throws its error (after sending the other family) and
   * its changes stay pending. Its changes are in even if the deferred section then throws.
   */
  async applyEarly(family: IpFamily): Promise<boolean> {
    if (this.deferDepth === 0 || this.early.has(family) || !this.families().includes(family)) return false;
    if (this.applier.isStreaming(family)) {
      // Its tool already runs: what is left is the rest of the input and COMMIT.
      this.startEarly(family);
      return true;
    }
    if (this.changedChains(family) < PARALLEL_MIN_CHAINS) return false;
    // The kernel view first (one iptables-save): read later, its output would wait for the event
    // loop the caller is about to keep busy, and the restore with it.
    await this.applier.viewRuleCount(family);
    if ((await this.applier.familiesInParallel()) && (await this.largeChanges([family])).length === 0) return false;
    if (this.early.has(family) || this.deferDepth === 0) return false;
    const took = await this.holdBeforeEarly(family);
    if (this.early.has(family) || this.deferDepth === 0) {
      if (took && !this.applying) this.releaseHold();
      return false;
    }
    this.startEarly(family);
    // Let the apply run up to the restore's start (no I/O is left before it) before the caller goes on.
    await new Promise<void>((resolve) => setImmediate(resolve));
    return true;
  }

  /**
   * Inside a deferred apply, opens the family's restore before its rules are all known, so the tool
   * parses while the caller computes: the caller then hands over chains it has finished with
   * `streamChains` (new chains go out in groups, anything else is left for the end), and the
   * deferred apply's end (or `applyEarly`) sends the remaining edits and COMMIT in the same input.
   * The result is the one a plain apply would reach; only the time differs. Legacy restores hold the
   * host-wide xtables lock from their `*table` line to COMMIT, so the first stream takes that lock
   * for both families (`holdXtablesLock`) and each family's tool starts at once; a runner that
   * cannot hold it makes the second family's tool start once the first family's restore is done. The pipe
   * is fed by the event loop: a caller computing for long yields now and then (the l2 driver
   * every ~20 ports), and is never made to wait for the tool (what the tool has not read yet stays
   * in memory; the whole input is kept anyway, for the result and for error context).
   *
   * Used for a cold add of many ports: the l2 driver streams each port's chains once written, so
   * the tool's parsing (~0.8 s for 66k IPv4 rules on legacy) runs beside our computing instead of
   * after it. Returns false (and nothing changes) when the runner cannot stream
   * (`restoreStream`), outside a deferred apply, or with a stream already open. Reading the family
   * in between (`plan`) abandons the stream without committing anything, as does `abandonStreams`
   * or a stream left open for 30 s; the apply then sends everything the usual way.
   */
  async openStream(family: IpFamily, table: TableName): Promise<boolean> {
    if (this.deferDepth === 0 || !this.families().includes(family) || !this.applier.canStream || this.applier.isStreaming(family)) return false;
    this.table(family, table);
    // On legacy a stream's tool holds the host's xtables lock from its first line to COMMIT, so the
    // other family's would only start once it is done: hold the lock for both from the first
    // stream on (streams are for large cold changes, which touch both families), and each tool
    // goes at once.
    if (this.useIpv6 && !this.applier.holding && !(await this.applier.familiesInParallel())) await this.holdUntilApply();
    const after = this.applier.holding || (await this.applier.familiesInParallel()) ? undefined : Promise.allSettled([...this.early.values()]);
    return this.applier.openStream(family, this.wrapName, table, after);
  }

  /**
   * Sends these chains of ours (named as for `addChain`, wrapped) through the family's open stream
   * when the kernel does not have them yet (see `openStream`); else a no-op.
   */
  streamChains(family: IpFamily, table: TableName, chains: Iterable<string>): void {
    if (!this.applier.isStreaming(family)) return;
    const names: string[] = [];
    for (const c of chains) names.push(kernelChainName(this.wrapName, c, true));
    // Sent as wanted now: no longer changed unless written again (markDirty). Should the stream be
    // abandoned, the applier's next apply compares every chain and sends them.
    const dirty = this.dirty.get(family)!.get(table);
    for (const c of this.applier.streamChains(family, this.table(family, table), names)) dirty?.delete(c);
  }

  /**
   * Sends what these chains of ours (named as for `addChain`, wrapped) have grown by through the
   * family's open stream, for chains the kernel does not have yet that get rules all along the
   * change (a shared chain with one jump per port): their `top` rules so far, as far as the chains
   * they jump to are declared. They stay pending: the apply writes the rest of them. A no-op
   * without an open stream.
   */
  streamGrowth(family: IpFamily, table: TableName, chains: Iterable<string>): void {
    if (!this.applier.isStreaming(family)) return;
    const names: string[] = [];
    for (const c of chains) names.push(kernelChainName(this.wrapName, c, true));
    this.applier.streamGrowth(family, this.table(family, table), names);
  }

  /**
   * Ends the open streams without committing anything (`openStream`): for a caller that gives up on
   * its deferred apply (a handler threw). Their chains stay pending and go with the next apply.
   * Streams nobody finishes are abandoned after 30 s anyway.
   */
  abandonStreams(): void {
    this.applier.abandonStreams();
    if (!this.applying) this.releaseHold();
  }

  private startEarly(family: IpFamily): void {
    this.early.set(
      family,
      this.applyFamily(family).then(
        (result) => ({ result }),
        (error: unknown) => ({ error }),
      ),
    );
  }

  /**
   * On nf_tables the two restores may run side by side (a cold add of 108k rules: 3.5 s instead of
   * 5.2), but the one that commits second finds the generation changed, re-reads its tables and
   * tries again. That pays only for a large change (256+ chains in each family) into tables that
   * are small next to it; otherwise one after the other is as fast or faster (adding one port at
   * 108k rules: ~330 instead of ~260 ms; removing 200 ports: ~560 instead of ~450 ms).
   */
  private async familiesSideBySide(): Promise<boolean> {
    if (!this.useIpv6 || this.changedChains(4) < PARALLEL_MIN_CHAINS || this.changedChains(6) < PARALLEL_MIN_CHAINS) return false;
    if (!(await this.applier.familiesInParallel())) return false;
    return (await this.largeChanges([4, 6])).length === 2;
  }

  /**
   * On legacy the two families' restores take turns at the host-wide xtables lock, though they
   * write separate kernel tables: each reads and rewrites its whole table, so at 108k rules one
   * port added costs ~270 ms per family, one after the other. With the lock held by us for both
   * they run side by side, and every other xtables user still waits for us as before. False (take
   * turns) when a family has nothing to send, the tables are small, on nf_tables, or when the lock
   * cannot be held.
   */
  private async holdForBothFamilies(): Promise<boolean> {
    if (this.holding) return true;
    if (this.changedChains(4) === 0 || this.changedChains(6) === 0 || (await this.applier.familiesInParallel())) return false;
    const counts = await Promise.all([this.applier.viewRuleCount(4), this.applier.viewRuleCount(6)]);
    return Math.min(...counts) >= HOLD_MIN_RULES && (await this.takeHold());
  }

  /**
   * `applyEarly`'s part of the above: the hold is taken before the early family goes, so that the
   * other can go beside it at the apply. Only when the other family's view is loaded and large
   * (it is not read now: a stream of it would be abandoned) and it does not stream.
   */
  private async holdBeforeEarly(family: IpFamily): Promise<boolean> {
    const other: IpFamily = family === 4 ? 6 : 4;
    if (this.holding || !this.families().includes(other) || this.applier.isStreaming(other) || (await this.applier.familiesInParallel())) return false;
    const known = this.applier.loadedRuleCount(other);
    if (known === undefined || Math.min(known, await this.applier.viewRuleCount(family)) < HOLD_MIN_RULES) return false;
    return this.holdUntilApply();
  }

  /** Takes the hold inside a deferred apply, for its end to give back (or the watchdog). */
  private async holdUntilApply(): Promise<boolean> {
    if (this.holding || !(await this.takeHold())) return false;
    // A deferred apply that never ends must not keep the host's lock.
    const watchdog = setTimeout(() => {
      if (this.applying || !this.holding) return;
      this.logger.warn({ namespace: this.namespace, afterMs: this.holdMaxMs }, "xtables lock held for an apply that did not come; let go");
      this.releaseHold();
    }, this.holdMaxMs);
    watchdog.unref();
    this.holding!.watchdog = watchdog;
    return true;
  }

  private async takeHold(): Promise<boolean> {
    if (!(await this.applier.acquireHold())) return false;
    if (this.holding) {
      // Taken meanwhile by another call of ours: one is enough.
      this.applier.releaseHold();
      return true;
    }
    this.holding = {};
    return true;
  }

  private releaseHold(): void {
    if (!this.holding) return;
    if (this.holding.watchdog) clearTimeout(this.holding.watchdog);
    this.holding = undefined;
    this.applier.releaseHold();
  }

  /** The families whose pending change is large (256+ chains) next to their tables (≤ 8 rules per changed chain). */
  private async largeChanges(families: readonly IpFamily[]): Promise<IpFamily[]> {
    const large = families.filter((f) => this.changedChains(f) >= PARALLEL_MIN_CHAINS);
    const counts = await Promise.all(large.map((f) => this.applier.viewRuleCount(f)));
    return large.filter((f, i) => counts[i]! <= PARALLEL_RULES_PER_CHAIN * this.changedChains(f));
  }

  private async applyFamily(family: IpFamily): Promise<FamilyApplyResult> {
    // Take the dirty set: changes made while the restore runs land in a fresh one and are sent next.
    const taken = this.dirty.get(family)!;
    this.dirty.set(family, new Map());
    try {
      return await this.applier.apply({ ...this.desire(family), dirty: taken });
    } catch (err) {
      for (const [table, chains] of taken) for (const c of chains) this.markDirty(family, table, c);
      throw err;
    }
  }

  private changedChains(family: IpFamily): number {
    let n = 0;
    for (const chains of this.dirty.get(family)!.values()) n += chains.size;
    return n;
  }

  /** The exact restore input `apply()` would send now, per family. Changes nothing. */
  async plan(): Promise<Plan> {
    const families: FamilyPlan[] = [];
    for (const family of this.families()) families.push(await this.applier.plan(this.desire(family)));
    return { families, lines: families.reduce((n, f) => n + f.lines, 0) };
  }

  /**
   * What the kernel holds in one table of this manager's namespace: kernel chain name → rules as
   * iptables-save prints them (the cached view; read once if not loaded). For keeping what the
   * kernel has for a resource whose input cannot be applied: add its chains and rules back as
   * they are, and the apply leaves them untouched.
   */
  kernelChains(family: IpFamily, table: TableName): Promise<ReadonlyMap<string, readonly string[]>> {
    return this.applier.kernelTable(family, table);
  }

  /**
   * Takes what the kernel holds of this manager's chains into the model as it is, for keeping what
   * the kernel has when which of it belongs to what cannot be told (a resource whose input is
   * invalid, input that is incomplete): the wrapped chains the model does not declare, with their
   * rules, and the rules of declared wrapped chains the model lacks (added after the model's own,
   * or before them with `top`). `chain` picks the kernel chains to look at (`declared`: the model
   * has the chain). Reads the kernel view if it is not loaded. Returns the chains declared and the
   * rules added (kernel names and texts).
   */
  async keepKernelState(
    options: { tag?: string; top?: boolean; chain?: (kernelName: string, declared: boolean) => boolean } = {},
  ): Promise<{ chains: { family: IpFamily; table: TableName; chain: string }[]; rules: string[] }> {
    const prefix = `${this.wrapName}-`;
    const chains: { family: IpFamily; table: TableName; chain: string }[] = [];
    const rules: string[] = [];
    for (const family of this.families()) {
      for (const table of Object.values(this.tables(family))) {
        const kernel = await this.kernelChains(family, table.name);
        const taken: [string, readonly string[], boolean][] = [];
        for (const [chain, list] of kernel) {
          if (!chain.startsWith(prefix)) continue;
          const declared = table.isDeclared(chain);
          if (options.chain && !options.chain(chain, declared)) continue;
          if (!declared) {
            table.addChain(chain.slice(prefix.length));
            chains.push({ family, table: table.name, chain });
          }
          taken.push([chain, list, declared]);
        }
        // Rules after every chain is declared: they may jump to one another.
        for (const [chain, list, declared] of taken) {
          const have = declared ? new Set(table.renderChain(chain)) : new Set<string>();
          for (const rule of list) {
            if (have.has(rule)) continue;
            table.addRule(chain.slice(prefix.length), rule, { ...(options.tag !== undefined ? { tag: options.tag } : {}), top: declared && (options.top ?? false) });
            rules.push(rule);
          }
        }
      }
    }
    return { chains, rules };
  }

  /** Re-reads the kernel and repairs any drift from what this manager last applied. */
  async verify(): Promise<VerifyResult> {
    this.applier.invalidate();
    const result = await this.apply();
    const drift = result.families.filter((f) => f.sent);
    if (drift.length) {
      this.logger.warn({ namespace: this.namespace, changes: drift.flatMap((f) => f.changes) }, "iptables drift repaired");
    }
    return { drift, repaired: drift.length > 0 };
  }

  /** Forget the cached kernel view; the next apply reads iptables-save and compares everything. */
  invalidate(): void {
    this.applier.invalidate();
  }

  /**
   * Tell the manager its namespace was created a moment ago by the caller: the first apply skips
   * the `iptables-save` that adopts what is there (there is nothing), see `IptablesApplier`.
   */
  assumeEmptyKernel(): void {
    this.applier.assumeEmptyKernel();
  }

  /**
   * Sum of the packet and byte counters of a chain's rules in every table (and family) that has
   * the chain (Neutron's `get_traffic_counters`).
   */
  async getTrafficCounters(chain: string, options: { wrap?: boolean } = {}): Promise<{ packets: bigint; bytes: bigint } | undefined> {
    let found = false;
    let packets = 0n;
    let bytes = 0n;
    for (const family of this.families()) {
      for (const table of Object.values(this.tables(family))) {
        if (!table.hasChain(chain, options)) continue;
        found = true;
        const kernelName = kernelChainName(this.wrapName, chain, options.wrap ?? true);
        const c = await this.applier.trafficCounters(family, table.name, kernelName);
        packets += c.packets;
        bytes += c.bytes;
      }
    }
    return found ? { packets, bytes } : undefined;
  }

  private families(): IpFamily[] {
    return this.useIpv6 ? [4, 6] : [4];
  }

  private desire(family: IpFamily) {
    return {
      family,
      wrapName: this.wrapName,
      tables: Object.values(this.tables(family)),
      dirty: this.dirty.get(family)!,
    };
  }

  private markDirty(family: IpFamily, table: TableName, chain: string): void {
    const byTable = this.dirty.get(family)!;
    let set = byTable.get(table);
    if (!set) byTable.set(table, (set = new Set()));
    set.add(chain);
  }

  private wrapBuiltins(family: IpFamily, name: TableName, chains: readonly string[]): void {
    const table = this.table(family, name);
    for (const chain of chains) {
      table.addChain(chain);
      table.addRule(chain, `-j $${chain}`, { wrap: false });
    }
  }
}

function deferredResult(): ApplyResult {
  return { families: [], sent: false, lines: 0, deferred: true };
}
