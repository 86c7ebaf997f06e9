/**
 * The `iptables-save` text format: parsing it into tables, chains and rules, and printing it back.
 * Rule text is kept exactly as the tool printed it (after `-A <chain> `); that string is the identity
 * of a rule everywhere in Chainwarden.
 */

/** Packet and byte counters (`[packets:bytes]` in `iptables-save -c` output), exact as bigints. */
export interface Counters {
  packets: bigint;
  bytes: bigint;
}

/** One `-A` line of `iptables-save`, with its counters when saved with `-c`. */
export interface SavedRule {
  /** Rule text after `-A <chain> `, exactly as iptables-save prints it. */
  text: string;
  counters?: Counters;
}

/** One chain of a saved table: its policy (built-in chains) and its rules in order. */
export interface SavedChain {
  name: string;
  /** `ACCEPT`/`DROP` for built-in chains, `null` for user chains (`-`). */
  policy: string | null;
  counters?: Counters;
  rules: SavedRule[];
}

/** One table of `iptables-save` output: its chains in order. */
export interface SavedTable {
  name: string;
  /** In the order iptables-save printed them: built-ins first, then user chains sorted. */
  chains: Map<string, SavedChain>;
}

/** `iptables-save` output parsed: tables by name. */
export type SavedRuleset = Map<string, SavedTable>;

/** `iptables-save` output that could not be parsed, with the line. */
export class SaveParseError extends Error {
  constructor(
    readonly lineNumber: number,
    readonly line: string,
    reason: string,
  ) {
    super(`cannot parse iptables-save output at line ${lineNumber} (${reason}): ${line}`);
    this.name = "SaveParseError";
  }
}

const COUNTERS = /^\[(\d+):(\d+)\]$/;

function parseCounters(token: string | undefined): Counters | undefined {
  if (token === undefined) return undefined;
  const m = COUNTERS.exec(token);
  return m ? { packets: BigInt(m[1]!), bytes: BigInt(m[2]!) } : undefined;
}

/** Parses `iptables-save` output (with or without `-c`). */
export function parseSave(text: string): SavedRuleset {
  const tables: SavedRuleset = new Map();
  let table: SavedTable | undefined;
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    const line = raw.trimEnd();
    if (line === "" || line.startsWith("#")) continue;
    if (line.startsWith("*")) {
      const name = line.slice(1).trim();
      table = { name, chains: new Map() };
      tables.set(name, table);
      continue;
    }
    if (!table) throw new SaveParseError(i + 1, raw, "content outside a table");
    if (line === "COMMIT") {
      table = undefined;
      continue;
    }
    if (line.startsWith(":")) {
      const [name, policy, counters] = line.slice(1).split(" ");
      if (!name || !policy) throw new SaveParseError(i + 1, raw, "bad chain declaration");
      const chain: SavedChain = { name, policy: policy === "-" ? null : policy, rules: [] };
      const c = parseCounters(counters);
      if (c) chain.counters = c;
      table.chains.set(name, chain);
      continue;
    }
    let rest = line;
    let counters: Counters | undefined;
    if (rest.startsWith("[")) {
      const sp = rest.indexOf(" ");
      counters = parseCounters(rest.slice(0, sp));
      if (!counters) throw new SaveParseError(i + 1, raw, "bad counters");
      rest = rest.slice(sp + 1);
    }
    if (!rest.startsWith("-A ")) throw new SaveParseError(i + 1, raw, "expected -A");
    const sp = rest.indexOf(" ", 3);
    const chainName = sp === -1 ? rest.slice(3) : rest.slice(3, sp);
    const chain = table.chains.get(chainName);
    if (!chain) throw new SaveParseError(i + 1, raw, `rule in undeclared chain ${chainName}`);
    const rule: SavedRule = { text: sp === -1 ? "" : rest.slice(sp + 1) };
    if (counters) rule.counters = counters;
    chain.rules.push(rule);
  }
  return tables;
}

/** Options of `formatSave`. */
export interface FormatSaveOptions {
  counters?: boolean;
  /** Table order; defaults to the map's order. */
  tableOrder?: readonly string[];
}

/** Prints a ruleset in `iptables-save` form (without the `#` header lines). */
export function formatSave(ruleset: SavedRuleset, options: FormatSaveOptions = {}): string {
  const out: string[] = [];
  const names = options.tableOrder ? options.tableOrder.filter((t) => ruleset.has(t)) : [...ruleset.keys()];
  const fmt = (c: Counters | undefined) => (c ? `[${c.packets}:${c.bytes}]` : "[0:0]");
  for (const name of names) {
    const table = ruleset.get(name)!;
    out.push(`*${name}`);
    for (const chain of table.chains.values()) {
      out.push(`:${chain.name} ${chain.policy ?? "-"}${options.counters ? ` ${fmt(chain.counters)}` : ""}`);
    }
    for (const chain of table.chains.values()) {
      for (const rule of chain.rules) {
        const body = `-A ${chain.name}${rule.text ? ` ${rule.text}` : ""}`;
        out.push(options.counters ? `${fmt(rule.counters)} ${body}` : body);
      }
    }
    out.push("COMMIT");
  }
  return out.length ? `${out.join("\n")}\n` : "";
}

/** Built-in chains per table, in the order iptables-save lists them. */
export const BUILTIN_CHAINS: Readonly<Record<string, readonly string[]>> = {
  filter: ["INPUT", "FORWARD", "OUTPUT"],
  nat: ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
  mangle: ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
  raw: ["PREROUTING", "OUTPUT"],
  security: ["INPUT", "FORWARD", "OUTPUT"],
};

/** Whether a chain is one of the table's built-in chains (INPUT, PREROUTING, ...). */
export function isBuiltinChain(table: string, chain: string): boolean {
  return BUILTIN_CHAINS[table]?.includes(chain) ?? false;
}

/**
 * The comparison form of save output used by the reference files: `#` and blank lines dropped,
 * counters dropped, table blocks sorted by name; chains and rules stay in save order.
 */
export function normalizeSave(text: string): string {
  const blocks: { name: string; lines: string[] }[] = [];
  let current: { name: string; lines: string[] } | undefined;
  for (const raw of text.split("\n")) {
    let line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    if (line.startsWith("*")) {
      current = { name: line.slice(1), lines: [] };
      blocks.push(current);
      continue;
    } else if (line.startsWith(":")) {
      line = line.replace(/ \[\d+:\d+\]$/, "");
    } else if (line.startsWith("[")) {
      line = line.replace(/^\[\d+:\d+\] /, "");
    }
    current?.lines.push(line);
  }
  blocks.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return blocks.map((b) => `*${b.name}\n${b.lines.join("\n")}\n`).join("");
}
