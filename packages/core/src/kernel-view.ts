/**
 * The applier's cached copy of one namespace's kernel: per IP family, table → chain → rule texts as
 * `iptables-save` prints them, and what we remember having placed there.
 *
 * It is read once (`load`: one `iptables-save` per family) and from then on kept in step with the
 * kernel by `commit`, which takes exactly the edits a successful restore sent; so applies after the
 * first never read the kernel. Anything that may have left it out of step (a failed restore, a
 * caller's `invalidate`) drops it, and the next use reads again. A namespace the caller has just
 * created is taken as empty without reading (`assumeEmpty`).
 *
 * Invariants: a view read from the kernel, or left by an abandoned stream, owes a full comparison
 * (`owesFullCompare`) until a commit: the dirty lists the manager keeps say nothing about what was
 * there before. Ownership memory (the rules we placed in chains we share, the unwrapped chains we
 * declared) survives a dropped view: it is about what we wrote, which the kernel cannot tell us.
 * Not safe for two users of one family at a time; the applier runs them one after the other.
 */
import { NamespaceGoneError } from "./errors.js";
import type { CoreLogger } from "./logger.js";
import type { IpFamily, IptablesRunner } from "./iptables-runner.js";
import { parseSave } from "./save-format.js";

/** One table of the view: chain → rule texts. */
export type KernelTable = Map<string, string[]>;
/** One family's view: table → its chains. */
export type FamilyView = Map<string, KernelTable>;

/** What a restore changed in one table, for `commit`. */
export interface TableCommit {
  table: string;
  /** Chain → its rules now, or null for a chain deleted. */
  content: ReadonlyMap<string, string[] | null>;
  /** Rules we placed in chains we do not own alone, by chain. */
  owned: Map<string, Set<string>>;
  /** The unwrapped chains we declare. */
  declared: Set<string>;
}

/** What we placed in one table at the last commit (empty before any). */
export interface OwnershipMemory {
  owned: ReadonlyMap<string, Set<string>> | undefined;
  declared: ReadonlySet<string> | undefined;
}

export interface KernelViewOptions {
  runner: IptablesRunner;
  namespace: string | undefined;
  logger: CoreLogger;
}

export class KernelView {
  private readonly runner: IptablesRunner;
  private readonly namespace: string | undefined;
  private readonly logger: CoreLogger;
  private readonly views = new Map<IpFamily, FamilyView>();
  /** Families whose kernel is known to hold nothing until the first apply (`assumeEmpty`). */
  private readonly emptyKernel = new Set<IpFamily>();
  /** Families whose view was loaded outside an apply: their next apply still compares every chain. */
  private readonly compareAll = new Set<IpFamily>();
  /** Per wrap/family/table: rules we placed in chains we do not own alone, by chain. */
  private readonly owned = new Map<string, Map<string, Set<string>>>();
  /** Per wrap/family/table: the unwrapped chains we declared at the last apply. */
  private readonly declared = new Map<string, Set<string>>();

  constructor(options: KernelViewOptions) {
    this.runner = options.runner;
    this.namespace = options.namespace;
    this.logger = options.logger;
  }

  /** The family's view if it is loaded (or assumed empty and taken); nothing is read. */
  get(family: IpFamily): FamilyView | undefined {
    return this.views.get(family);
  }

  has(family: IpFamily): boolean {
    return this.views.has(family);
  }

  /**
   * For a family not loaded: its empty view when it is assumed empty (once; the assumption is then
   * used up), else undefined, and the caller `load`s.
   */
  takeEmpty(family: IpFamily): FamilyView | undefined {
    return this.emptyKernel.delete(family) ? this.emptyView(family) : undefined;
  }

  /** Reads the family's kernel (`iptables-save`) into a fresh view. */
  async load(family: IpFamily): Promise<FamilyView> {
    const text = await this.runner.save({ namespace: this.namespace, family });
    const view: FamilyView = new Map();
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

  private emptyView(family: IpFamily): FamilyView {
    const view: FamilyView = new Map();
    this.views.set(family, view);
    this.logger.debug({ namespace: this.namespace, family }, "kernel view assumed empty (namespace just created)");
    return view;
  }

  /**
   * The family's kernel holds nothing (a namespace created a moment ago): its next use takes an
   * empty view instead of reading. A view already loaded is of an earlier namespace and is dropped.
   */
  assumeEmpty(family: IpFamily): void {
    this.views.delete(family);
    this.emptyKernel.add(family);
  }

  /** Drops the view (of one family or both), so that its next use reads the kernel again. */
  invalidate(family?: IpFamily): void {
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

  /** True when the family's next plan must compare every chain, not only the dirty ones. */
  owesFullCompare(family: IpFamily): boolean {
    return this.compareAll.has(family);
  }

  /** The family's view no longer matches what the manager's dirty lists assume (see the header). */
  oweFullCompare(family: IpFamily): void {
    this.compareAll.add(family);
  }

  /** What we placed in this table at the last commit. */
  memory(wrapName: string, family: IpFamily, table: string): OwnershipMemory {
    const key = memoryKey(wrapName, family, table);
    return { owned: this.owned.get(key), declared: this.declared.get(key) };
  }

  /** After a successful restore: the view takes its edits, the ownership memory is kept. */
  commit(family: IpFamily, wrapName: string, tables: readonly TableCommit[]): void {
    const view = this.views.get(family)!;
    this.compareAll.delete(family);
    for (const tc of tables) {
      let t = view.get(tc.table);
      if (!t) view.set(tc.table, (t = new Map()));
      for (const [chain, content] of tc.content) {
        if (content === null) t.delete(chain);
        else t.set(chain, content);
      }
      const key = memoryKey(wrapName, family, tc.table);
      this.owned.set(key, tc.owned);
      this.declared.set(key, tc.declared);
    }
  }

  /** Rules in the family's view, reading the kernel when it is not loaded; 0 when assumed empty. */
  async ruleCount(family: IpFamily): Promise<number> {
    let view = this.views.get(family);
    if (!view) {
      if (this.emptyKernel.has(family)) return 0;
      view = await this.load(family);
    }
    return ruleCount(view);
  }

  /** Rules in the family's view if it is loaded; undefined otherwise (nothing is read). */
  loadedRuleCount(family: IpFamily): number | undefined {
    const view = this.views.get(family);
    return view ? ruleCount(view) : undefined;
  }

  /**
   * A copy of one table of the family's view, reading the kernel when it is not loaded: empty for a
   * namespace that does not exist (yet) or is assumed empty.
   */
  async table(family: IpFamily, table: string): Promise<Map<string, string[]>> {
    let view = this.views.get(family);
    if (!view) {
      if (this.emptyKernel.has(family)) return new Map();
      try {
        view = await this.load(family);
      } catch (err) {
        if (err instanceof NamespaceGoneError) return new Map();
        throw err;
      }
    }
    return new Map([...(view.get(table) ?? new Map<string, string[]>())].map(([chain, rules]) => [chain, [...rules]]));
  }

  /** Counters of a chain's rules, summed, read from the kernel (`iptables-save -c`; not the view). */
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
}

function memoryKey(wrap: string, family: IpFamily, table: string): string {
  return `${wrap}\u0000${family}\u0000${table}`;
}

function ruleCount(view: FamilyView): number {
  let n = 0;
  for (const table of view.values()) for (const rules of table.values()) n += rules.length;
  return n;
}
