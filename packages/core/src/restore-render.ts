/**
 * Turns table plans into `iptables-restore --noflush` input: each table with edits as one
 * `*table … COMMIT` block, in the plans' order; a table without edits is left out, and a family
 * without any gets an empty input (nothing is run). The tool commits each block on its own, so the
 * input is as atomic as one table. The result (`FamilyPlan`) is what `plan` shows and `apply` sends,
 * byte for byte.
 */
import type { IpFamily } from "./iptables-runner.js";
import type { ChainChange, TablePlan } from "./table-plan.js";

/** One family's restore input for an apply, by table, with the counts it reports. */
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

/** One family's plan from its table plans. `full`: every chain was compared. */
export function renderFamilyPlan(family: IpFamily, namespace: string | undefined, tablePlans: readonly TablePlan[], full: boolean): FamilyPlan {
  const withEdits = tablePlans.filter((tp) => tp.lines.length > 0);
  const input = withEdits.map((tp) => `*${tp.table}\n${tp.lines.join("\n")}\nCOMMIT`).join("\n");
  return {
    family,
    namespace,
    input: input ? `${input}\n` : "",
    lines: withEdits.reduce((n, tp) => n + tp.lines.length, 0),
    tables: withEdits.map((tp) => tp.table),
    changes: tablePlans.flatMap((tp) => tp.changes),
    full,
  };
}

/**
 * Ends an input already open at `*open` (a stream's, `out` holding its lines so far): that table's
 * remaining edits and COMMIT, then every other table with edits as its own block.
 */
export function closeRestoreInput(out: string[], open: string, tablePlans: readonly TablePlan[]): void {
  const own = tablePlans.find((tp) => tp.table === open);
  for (const l of own?.lines ?? []) out.push(l);
  out.push("COMMIT");
  for (const tp of tablePlans) {
    if (tp === own || tp.lines.length === 0) continue;
    out.push(`*${tp.table}`);
    for (const l of tp.lines) out.push(l);
    out.push("COMMIT");
  }
}
