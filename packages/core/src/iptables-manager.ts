import { kernelChainName, wrapNameFor } from "./chain-names.js";
import { IptablesApplier, type FamilyApplyResult, type FamilyPlan, type LockRetryPolicy } from "./iptables-applier.js";
import { IptablesTable, type TableName } from "./iptables-table.js";
import { silentLogger, type CoreLogger } from "./logger.js";
import type { IpFamily, IptablesRunner } from "./runner.js";
import { UnknownTableError } from "./errors.js";
import { canonicalizeRule } from "./canonical/canonicalize-rule.js";
import { commentRule } from "./canonical/comment.js";
import { CanonicalCache } from "./canonical-cache.js";

/** Changed chains per family from which an nf_tables apply may run both families at once... */
const PARALLEL_MIN_CHAINS = 256;
/** ...when the family's tables hold at most this many rules per changed chain (re-reading them is cheap). */
const PARALLEL_RULES_PER_CHAIN = 8;

/** Neutron's `ic.SNAT_OUT`, the comment on the jump to the snat chain. */
export const SNAT_OUT_COMMENT = "Perform source NAT on outgoing traffic.";

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
}

export interface ApplyResult {
  /** One entry per family that was considered. */
  families: FamilyApplyResult[];
  /** True when a restore was sent. */
  sent: boolean;
  /** Edit lines sent, all families. */
  lines: number;
  /** The apply was skipped because the manager is inside `deferApply`. */
  deferred: boolean;
}

export interface Plan {
  families: FamilyPlan[];
  lines: number;
}

export interface VerifyResult {
  /** The repairs that were needed (empty when the kernel matched). */
  drift: FamilyApplyResult[];
  repaired: boolean;
}

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

  constructor(options: IptablesManagerOptions) {
    this.wrapName = wrapNameFor(options.wrapName ?? "neutron-l3-agent");
    this.namespace = options.namespace;
    this.useIpv6 = options.useIpv6 ?? true;
    this.logger = options.logger ?? silentLogger;
    this.applier =
      options.applier ??
      new IptablesApplier({
        runner: options.runner,
        namespace: options.namespace,
        logger: this.logger,
        ...(options.lockWaitSeconds !== undefined ? { lockWaitSeconds: options.lockWaitSeconds } : {}),
        ...(options.lockRetry ? { lockRetry: options.lockRetry } : {}),
      });
    if (this.applier.namespace !== this.namespace) throw new Error("the shared applier serves another namespace");

    const comments = options.comments ?? true;
    const strict = options.strict ?? false;
    const cache = options.canonicalCache ?? CanonicalCache.shared;
    const canonicalize = (family: IpFamily) => (rule: string, comment: string | undefined, resource: string | undefined) => {
      const hit = cache.get(family, strict, rule, comment);
      if (hit !== undefined) return hit;
      const text = canonicalizeRule(commentRule(rule, comment), { family, strict, ...(resource !== undefined ? { resource } : {}) });
      cache.set(family, strict, rule, comment, text);
      return text;
    };
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
   * changes it made stay pending for the next apply.
   */
  async deferApply<T>(fn: (manager: this) => T | Promise<T>): Promise<{ value: T; result: ApplyResult }> {
    this.deferDepth++;
    let value: T;
    try {
      value = await fn(this);
    } finally {
      this.deferDepth--;
    }
    const result = this.deferDepth === 0 ? await this.apply() : deferredResult();
    return { value, result };
  }

  deferApplyOn(): void {
    this.deferDepth++;
  }

  async deferApplyOff(): Promise<ApplyResult> {
    if (this.deferDepth > 0) this.deferDepth--;
    return this.deferDepth === 0 ? this.apply() : deferredResult();
  }

  /** Sends what changed since the last successful apply. A no-op inside `deferApply`. */
  async apply(): Promise<ApplyResult> {
    if (this.deferDepth > 0) return deferredResult();
    const applyFamily = async (family: IpFamily): Promise<FamilyApplyResult> => {
      // Take the dirty set: changes made while the restore runs land in a fresh one and are sent next.
      const taken = this.dirty.get(family)!;
      this.dirty.set(family, new Map());
      try {
        return await this.applier.apply({ ...this.desire(family), dirty: taken });
      } catch (err) {
        for (const [table, chains] of taken) for (const c of chains) this.markDirty(family, table, c);
        throw err;
      }
    };
    const families: FamilyApplyResult[] = [];
    if (await this.familiesSideBySide()) {
      // If one fails, the other's changes are in; the failed one's stay pending.
      const settled = await Promise.allSettled(this.families().map(applyFamily));
      for (const r of settled) if (r.status === "rejected") throw r.reason;
      for (const r of settled) if (r.status === "fulfilled") families.push(r.value);
    } else {
      for (const family of this.families()) families.push(await applyFamily(family));
    }
    const lines = families.reduce((n, f) => n + f.lines, 0);
    if (lines > 0) this.logger.debug({ namespace: this.namespace, lines }, "iptables apply sent changes");
    return { families, sent: families.some((f) => f.sent), lines, deferred: false };
  }

  /**
   * On nf_tables the two restores may run side by side (a cold add of 108k rules: 3.5 s instead of
   * 5.2), but the one that commits second finds the generation changed, re-reads its tables and
   * tries again. That pays only for a large change (256+ chains in each family) into tables that
   * are small next to it; otherwise one after the other is as fast or faster (adding one port at
   * 108k rules: ~330 instead of ~260 ms; removing 200 ports: ~560 instead of ~450 ms).
   */
  private async familiesSideBySide(): Promise<boolean> {
    if (!this.useIpv6) return false;
    const changed = (family: IpFamily) => [...this.dirty.get(family)!.values()].reduce((n, chains) => n + chains.size, 0);
    const c4 = changed(4);
    const c6 = changed(6);
    if (c4 < PARALLEL_MIN_CHAINS || c6 < PARALLEL_MIN_CHAINS || !(await this.applier.familiesInParallel())) return false;
    const [r4, r6] = await Promise.all([this.applier.viewRuleCount(4), this.applier.viewRuleCount(6)]);
    return r4 <= PARALLEL_RULES_PER_CHAIN * c4 && r6 <= PARALLEL_RULES_PER_CHAIN * c6;
  }

  /** The exact restore input `apply()` would send now, per family. Changes nothing. */
  async plan(): Promise<Plan> {
    const families: FamilyPlan[] = [];
    for (const family of this.families()) families.push(await this.applier.plan(this.desire(family)));
    return { families, lines: families.reduce((n, f) => n + f.lines, 0) };
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
