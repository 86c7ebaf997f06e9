import type { IpFamily, IptablesManager } from "@chainwarden/core";
import type { AgentMetrics } from "./agent-metrics.js";

/** Rules and chains per `family/table` (`ipv4/filter`). */
export type RuleCounts = Map<string, { rules: number; chains: number }>;

export function familyLabel(family: IpFamily): string {
  return family === 4 ? "ipv4" : "ipv6";
}

/** What the managers want in the kernel, counted per `family/table`. */
export function countRules(managers: Iterable<IptablesManager>): RuleCounts {
  const counts: RuleCounts = new Map();
  for (const m of managers) {
    for (const family of (m.useIpv6 ? [4, 6] : [4]) as IpFamily[]) {
      for (const table of Object.values(m.tables(family))) {
        const label = `${familyLabel(family)}/${table.name}`;
        const c = counts.get(label) ?? { rules: 0, chains: 0 };
        c.chains += [...table.declaredChains()].length;
        for (const chain of table.chainsWithRules()) c.rules += table.renderChain(chain).length;
        counts.set(label, c);
      }
    }
  }
  return counts;
}

/**
 * The `chainwarden_rules` and `chainwarden_chains` gauges: the sum over namespaces of each one's
 * last count. A namespace's count is replaced as a whole, so the totals never need a full recount.
 */
export class RuleTotals {
  private readonly totals: RuleCounts = new Map();
  private readonly byNamespace = new Map<string | undefined, RuleCounts>();

  constructor(private readonly metrics: Pick<AgentMetrics, "rules" | "chains">) {}

  set(namespace: string | undefined, counts: RuleCounts): void {
    const before = this.byNamespace.get(namespace) ?? new Map();
    for (const label of new Set([...before.keys(), ...counts.keys()])) {
      const was = before.get(label) ?? { rules: 0, chains: 0 };
      const now = counts.get(label) ?? { rules: 0, chains: 0 };
      const t = this.totals.get(label) ?? { rules: 0, chains: 0 };
      t.rules += now.rules - was.rules;
      t.chains += now.chains - was.chains;
      this.totals.set(label, t);
      const [family, table] = label.split("/") as [string, string];
      this.metrics.rules.set({ family, table }, t.rules);
      this.metrics.chains.set({ family, table }, t.chains);
    }
    if (counts.size === 0) this.byNamespace.delete(namespace);
    else this.byNamespace.set(namespace, counts);
  }

  /** Per `family/table`, over all namespaces. */
  get(label: string): { rules: number; chains: number } {
    return { ...(this.totals.get(label) ?? { rules: 0, chains: 0 }) };
  }
}
