/**
 * What one family must send: for each table with changes, the restore lines that take the kernel
 * view to what the manager wants, and what the view and ownership memory become once they are in.
 *
 * Only the manager's dirty chains are compared, unless the view owes a full comparison (just read):
 * then every chain we declare or put rules in, and every chain of the kernel, so that stale chains
 * and rules of ours are removed. A chain named after our wrap is ours whole; in any other chain a
 * rule is ours when it names our wrap, when we want it there, or when we placed it there before, and
 * every other rule is foreign: never in a delete or an insert (`diffChain` is told which are ours).
 *
 * Order within a table's lines: new chains declared first (declaring an existing chain under
 * `--noflush` would flush it), then the edits, then the chains to delete flushed and removed. A jump
 * to a chain that will not exist is refused here, naming the rule's resource, before anything is
 * sent. Pure: it reads the view and the tables, and changes neither.
 */
import { diffChain } from "./chain-diff.js";
import { isTargetExtension } from "./canonical/module-specs.js";
import { ruleJumpTarget } from "./canonical/rule-tokens.js";
import { UnknownChainError } from "./errors.js";
import type { TableName, TableState } from "./iptables-table.js";
import type { FamilyView, KernelTable, OwnershipMemory, TableCommit } from "./kernel-view.js";
import type { IpFamily } from "./iptables-runner.js";
import { isBuiltinChain } from "./save-format.js";

/** What one family of a manager wants, as the applier sees it. */
export interface FamilyDesire {
  family: IpFamily;
  wrapName: string;
  tables: readonly TableState[];
  /** Chains changed since the last successful apply, per table. */
  dirty: ReadonlyMap<TableName, ReadonlySet<string>>;
}

/** What an apply changes in one chain: how many rules it adds and removes, and whether the chain is created, deleted or rewritten. */
export interface ChainChange {
  table: string;
  chain: string;
  added: number;
  removed: number;
  created?: boolean;
  deleted?: boolean;
  rewritten?: boolean;
}

/** One table's part of a plan: its restore lines, and what the view takes once they are in. */
export interface TablePlan extends TableCommit {
  /** The edit lines, without `*table` and `COMMIT`; empty when the table is as wanted. */
  lines: string[];
  changes: ChainChange[];
}

export interface PlanTablesOptions {
  /** Compare every chain, not only the dirty ones. */
  full: boolean;
  /** Chains of one table known to be in the view as wanted (streamed and not changed since). */
  skip?: { table: string; chains: ReadonlySet<string> } | undefined;
  /** What we placed in a table at the last apply. */
  memory: (table: string) => OwnershipMemory;
  /** For errors. */
  namespace: string | undefined;
}

/** The plans of the family's tables that have something to compare, in table-name order. */
export function planTables(desire: FamilyDesire, view: FamilyView, options: PlanTablesOptions): TablePlan[] {
  const { full, skip } = options;
  const tablePlans: TablePlan[] = [];
  for (const table of [...desire.tables].sort((a, b) => a.name.localeCompare(b.name))) {
    const dirty = desire.dirty.get(table.name);
    if (!full && (!dirty || dirty.size === 0)) continue;
    tablePlans.push(planTable(desire, table, view.get(table.name), full ? undefined : dirty!, skip?.table === table.name ? skip.chains : undefined, options));
  }
  return tablePlans;
}

/**
 * The edits for one table. `dirty` undefined means compare everything: every chain we declare or
 * put rules in, and every chain of the kernel (stale chains and rules of ours are removed).
 */
function planTable(
  desire: FamilyDesire,
  table: TableState,
  kernel: KernelTable | undefined,
  dirty: ReadonlySet<string> | undefined,
  skip: ReadonlySet<string> | undefined,
  options: PlanTablesOptions,
): TablePlan {
  const wrapPrefix = `${desire.wrapName}-`;
  const memory = options.memory(table.name);
  const prevOwned = memory.owned ?? new Map<string, Set<string>>();
  const prevDeclared = memory.declared ?? new Set<string>();
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
        throw new UnknownChainError(table.name, chain, { ...resourceOpt(table.resourceOf(chain)), namespace: options.namespace });
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

  checkJumpTargets(table, grown, inserted, (c) => (exists(c) || createdSet.has(c)) && !deletedSet.has(c), options.namespace);

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
    content: newContent,
    owned,
    declared: new Set([...table.declaredChains(false)]),
  };
}

/**
 * A jump to a chain that will not exist would fail the whole table's restore (and nf_tables names
 * only the COMMIT line); refuse it here, naming the rule's resource.
 */
function checkJumpTargets(
  table: TableState,
  created: Iterable<string>,
  inserted: readonly { chain: string; rules: readonly string[] }[],
  chainExists: (c: string) => boolean,
  namespace: string | undefined,
): void {
  const check = (chain: string, target: string | undefined) => {
    if (target === undefined || isTargetExtension(target) || chainExists(target)) return;
    throw new UnknownChainError(table.name, target, {
      ...resourceOpt(table.resourceOf(chain, undefined, target)),
      namespace,
    });
  };
  // A new chain's rules all jump somewhere new (their targets are known from the table); in a chain
  // that was there only the inserted rules can: one port added to a long FORWARD checks its two.
  for (const chain of created) for (const target of table.jumpTargets(chain)) check(chain, target);
  for (const { chain, rules } of inserted) for (const text of rules) check(chain, ruleJumpTarget(text));
}

function resourceOpt(resource: string | undefined): { resource?: string } {
  return resource === undefined ? {} : { resource };
}
