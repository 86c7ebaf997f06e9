import { BUILTIN_CHAINS } from "@chainwarden/core";

/** Where a rule sends packets to, as core's `ruleTarget` reports it. */
export interface RuleRef {
  kind: "jump" | "goto";
  target: string;
}

export interface FakeRule {
  /** Rule text after `-A <chain> `, as iptables-save prints it. */
  text: string;
  ref: RuleRef | undefined;
  packets: bigint;
  bytes: bigint;
}

export interface FakeChain {
  name: string;
  builtin: boolean;
  /** ACCEPT/DROP for built-in chains, null for user chains. */
  policy: string | null;
  packets: bigint;
  bytes: bigint;
  rules: FakeRule[];
}

/** Tables iptables 1.8.9 knows, for both families (ip6tables has nat and security too). */
export const KNOWN_TABLES: readonly string[] = ["filter", "nat", "mangle", "raw", "security"];

export interface RenderOptions {
  /** `[p:b]` after each chain declaration (real iptables-save always prints them). */
  chainCounters: boolean;
  /** `[p:b] ` before each rule (`iptables-save -c`). */
  ruleCounters: boolean;
}

/**
 * One table of the fake kernel: its built-in chains always exist (both backends list them all),
 * user chains come and go. Cloned before a restore block is applied so a failing block leaves the
 * live table untouched.
 */
export class FakeTable {
  readonly chains = new Map<string, FakeChain>();

  constructor(readonly name: string) {}

  static fresh(name: string): FakeTable {
    const table = new FakeTable(name);
    for (const chain of BUILTIN_CHAINS[name] ?? []) {
      table.chains.set(chain, { name: chain, builtin: true, policy: "ACCEPT", packets: 0n, bytes: 0n, rules: [] });
    }
    return table;
  }

  clone(): FakeTable {
    const copy = new FakeTable(this.name);
    for (const [name, c] of this.chains) copy.chains.set(name, { ...c, rules: c.rules.map((r) => ({ ...r })) });
    return copy;
  }

  addUserChain(name: string): FakeChain {
    const chain: FakeChain = { name, builtin: false, policy: null, packets: 0n, bytes: 0n, rules: [] };
    this.chains.set(name, chain);
    return chain;
  }

  /** Built-in chains in kernel order, then user chains sorted as strcmp sorts them. */
  orderedChains(): FakeChain[] {
    const builtins = (BUILTIN_CHAINS[this.name] ?? []).map((n) => this.chains.get(n)).filter((c): c is FakeChain => c !== undefined);
    const users = [...this.chains.values()].filter((c) => !c.builtin).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return [...builtins, ...users];
  }

  /** True when any rule of the table jumps or goes to `chain`. */
  isReferenced(chain: string): boolean {
    for (const c of this.chains.values()) for (const r of c.rules) if (r.ref?.target === chain) return true;
    return false;
  }

  render(options: RenderOptions): string {
    const out = [`*${this.name}`];
    const chains = this.orderedChains();
    for (const c of chains) out.push(`:${c.name} ${c.policy ?? "-"}${options.chainCounters ? ` [${c.packets}:${c.bytes}]` : ""}`);
    for (const c of chains) {
      for (const r of c.rules) {
        const body = `-A ${c.name}${r.text ? ` ${r.text}` : ""}`;
        out.push(options.ruleCounters ? `[${r.packets}:${r.bytes}] ${body}` : body);
      }
    }
    out.push("COMMIT");
    return `${out.join("\n")}\n`;
  }
}
