/**
 * Splitting one line of `iptables-restore` input the way the tool does (whitespace-separated,
 * `"…"` groups with `\"` escapes), keeping each token's raw text so the rule part can be handed
 * to the canonicalizer exactly as written.
 */
export interface LineToken {
  /** The token with quotes removed. */
  value: string;
  /** The token as written, quotes included. */
  raw: string;
}

export function tokenizeRestoreLine(line: string): LineToken[] {
  const tokens: LineToken[] = [];
  let i = 0;
  while (i < line.length) {
    while (i < line.length && /\s/.test(line[i]!)) i++;
    if (i >= line.length) break;
    const start = i;
    let value = "";
    let quoted = false;
    while (i < line.length && (quoted || !/\s/.test(line[i]!))) {
      const ch = line[i]!;
      if (ch === "\\" && quoted && i + 1 < line.length) {
        value += line[i + 1]!;
        i += 2;
        continue;
      }
      if (ch === '"') {
        quoted = !quoted;
        i++;
        continue;
      }
      value += ch;
      i++;
    }
    tokens.push({ value, raw: line.slice(start, i) });
  }
  return tokens;
}

/** Joins tokens back into rule text, quoting values that need it (for argv-style input). */
export function quoteArgs(args: readonly string[]): string {
  return args.map((a) => (a === "" || /[\s"\\]/.test(a) ? `"${a.replace(/(["\\])/g, "\\$1")}"` : a)).join(" ");
}
