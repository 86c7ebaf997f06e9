/**
 * The edit script for one chain: the `-D`/`-I`/`-A` lines (or a flush and rewrite) that turn the rules
 * the kernel has into the rules we want, touching as few as it can.
 *
 * Matched rules (longest common subsequence, `matchSequences`) are never touched, so their packet
 * counters survive. In a chain we share with others (`mine` given), only rules marked ours are
 * deleted or counted, foreign ones keep their places, and a flush is never used; deletes there go by
 * rule text (by index only for a text that occurs twice), which another writer moving rules cannot
 * make point at the wrong rule. Pure: it reads nothing but its arguments.
 */
import { matchSequences } from "./sequence-diff.js";

/** The edit script `diffChain` made for one chain: the restore lines, the rules they leave, and what they add and remove. */
export interface ChainDiff {
  /** The edit lines, in the order they must run; empty when the chain is as wanted. */
  lines: string[];
  /** The chain's rules once the lines have run (`current` itself when nothing changes). */
  final: string[];
  /** The wanted rules the script adds. */
  inserted: string[];
  /** Rules the script adds. */
  added: number;
  /** Rules of ours the script deletes (or the flush drops). */
  removed: number;
  /** The script flushes the chain and writes it anew (only when every rule in it is ours). */
  rewritten: boolean;
}

/**
 * The edit script for one chain. `mine` marks which kernel rules are ours (`null`: all of them).
 * Deletes run from the bottom up so indexes stay valid; inserts then run top-down at final positions.
 */
export function diffChain(chain: string, current: readonly string[], mine: readonly boolean[] | null, wanted: readonly string[]): ChainDiff {
  const oursIdx: number[] = [];
  const oursText: string[] = [];
  for (let i = 0; i < current.length; i++) {
    if (mine === null || mine[i]) {
      oursIdx.push(i);
      oursText.push(current[i]!);
    }
  }
  const match = matchSequences(oursText, wanted);
  let matched = 0;
  for (let i = 0; i < match.length; i++) if (match[i]! >= 0) matched++;
  const removed = oursText.length - matched;
  const added = wanted.length - matched;
  if (removed === 0 && added === 0) return { lines: [], final: current as string[], inserted: [], added: 0, removed: 0, rewritten: false };

  const exclusive = mine === null || oursIdx.length === current.length;
  if (exclusive && matched === 0 && removed > 1) {
    // Nothing can stay: a flush and the new rules is the shortest script.
    return { lines: [`-F ${chain}`, ...wanted.map((r) => `-A ${chain} ${r}`)], final: [...wanted], inserted: [...wanted], added, removed, rewritten: true };
  }

  const lines: string[] = [];
  const gone = new Uint8Array(current.length);
  // In a shared chain, delete by text (immune to another writer moving rules) unless the text occurs
  // more than once, where only the index says which copy goes.
  let counts: Map<string, number> | undefined;
  if (mine !== null && removed > 0) {
    counts = new Map();
    for (const t of current) counts.set(t, (counts.get(t) ?? 0) + 1);
  }
  for (let k = oursIdx.length - 1; k >= 0; k--) {
    if (match[k]! >= 0) continue;
    const i = oursIdx[k]!;
    gone[i] = 1;
    lines.push(counts?.get(current[i]!) === 1 ? `-D ${chain} ${current[i]}` : `-D ${chain} ${i + 1}`);
  }
  // After the deletes: the surviving rules, and where each wanted rule already sits.
  const after: string[] = [];
  const posOfWanted = new Int32Array(wanted.length).fill(-1);
  let k = 0;
  for (let i = 0; i < current.length; i++) {
    const isMine = mine === null || mine[i];
    if (isMine) {
      const j = match[k++]!;
      if (gone[i]) continue;
      if (j >= 0) posOfWanted[j] = after.length;
    }
    after.push(current[i]!);
  }
  const final: string[] = [];
  const inserted: string[] = [];
  let src = 0;
  let prevFinal = -1; // final index of the previous wanted rule
  for (let j = 0; j < wanted.length; j++) {
    const p = posOfWanted[j]!;
    if (p >= 0) {
      while (src <= p) final.push(after[src++]!);
      prevFinal = final.length - 1;
      continue;
    }
    // Insert right after the previous wanted rule (at the top for the first).
    while (src < after.length && final.length < prevFinal + 1) final.push(after[src++]!);
    const at = prevFinal + 1;
    const atEnd = at === final.length && src === after.length;
    lines.push(atEnd ? `-A ${chain} ${wanted[j]}` : `-I ${chain} ${at + 1} ${wanted[j]}`);
    inserted.push(wanted[j]!);
    final.push(wanted[j]!);
    prevFinal = at;
  }
  while (src < after.length) final.push(after[src++]!);
  return { lines, final, inserted, added, removed, rewritten: false };
}
