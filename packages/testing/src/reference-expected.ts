/**
 * The `.expected.txt` files of the Neutron reference (`test-fixtures/reference/README.md`) and of
 * fixtures in the same format: one `=== after step N: <op> ===` block per step, holding
 * `--- <title> ---` sections (`iptables-save`, `ip6tables-save`, `ipset save`, `conntrack -D`, …);
 * l3 and FWaaS sections carry a router prefix (`--- router <id>: iptables-save ---`).
 */
import { readFileSync } from "node:fs";
import { basename } from "node:path";

/** One router's normalized save output in a step ("" when its section is absent or empty). */
export interface RouterSaves {
  iptables: string;
  ip6tables: string;
}

/** One `=== after step N: <op> ===` block. */
export interface ReferenceStep {
  /** `after step N: <op>` */
  title: string;
  /** `<op>`: what follows `after step N: ` */
  label: string;
  /** Every section by its full title (`iptables-save`, `ipset save`, `router <id>: iptables-save`, …) → its text. */
  sections: Record<string, string>;
  /** The router-prefixed `iptables-save` / `ip6tables-save` sections, by router id, in file order. */
  routers: Map<string, RouterSaves>;
}

const STEP = /^=== (after step \d+: (.*)) ===$/;
const SECTION = /^--- (.+) ---$/;
const ROUTER_SAVE = /^router (\S+): (iptables|ip6tables)-save$/;

/**
 * Parses an expected-output text. A section's text is its non-blank lines, each ending in `\n`
 * ("" for an empty section). Outside sections, blank lines and `#` comments are skipped; a section
 * before the first step, or other text outside a section, throws (naming `where`).
 */
export function parseReferenceExpected(text: string, where: string): ReferenceStep[] {
  const steps: ReferenceStep[] = [];
  let section: { step: ReferenceStep; title: string; lines: string[] } | undefined;
  const flush = () => {
    if (!section) return;
    const { step, title, lines } = section;
    const body = lines.length ? `${lines.join("\n")}\n` : "";
    step.sections[title] = body;
    const router = ROUTER_SAVE.exec(title);
    if (router) {
      const entry = step.routers.get(router[1]!) ?? { iptables: "", ip6tables: "" };
      entry[router[2] as keyof RouterSaves] = body;
      step.routers.set(router[1]!, entry);
    }
    section = undefined;
  };
  for (const line of text.split("\n")) {
    const step = STEP.exec(line);
    if (step) {
      flush();
      steps.push({ title: step[1]!, label: step[2]!, sections: {}, routers: new Map() });
      continue;
    }
    const head = SECTION.exec(line);
    if (head) {
      flush();
      const current = steps.at(-1);
      if (!current) throw new Error(`${where}: a section before the first step: ${line}`);
      section = { step: current, title: head[1]!, lines: [] };
      continue;
    }
    if (line.trim() === "") continue;
    if (!section) {
      if (line.startsWith("#")) continue; // a comment, like the fixtures' "# Produced by ..." header
      throw new Error(`${where}: text outside a section: ${line}`);
    }
    section.lines.push(line);
  }
  flush();
  return steps;
}

/** Reads and parses one `.expected.txt` file (errors name the file). */
export function readReferenceExpected(path: string): ReferenceStep[] {
  return parseReferenceExpected(readFileSync(path, "utf8"), basename(path));
}
