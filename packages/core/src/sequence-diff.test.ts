import { describe, expect, it } from "vitest";
import { matchSequences } from "./sequence-diff.js";

function lcsLength(a: string[], b: string[]): number {
  const dp = Array.from({ length: a.length + 1 }, () => new Array<number>(b.length + 1).fill(0));
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      dp[i]![j] = a[i - 1] === b[j - 1] ? dp[i - 1]![j - 1]! + 1 : Math.max(dp[i - 1]![j]!, dp[i]![j - 1]!);
  return dp[a.length]![b.length]!;
}

function check(a: string[], b: string[]) {
  const m = matchSequences(a, b);
  let last = -1;
  let count = 0;
  for (let i = 0; i < a.length; i++) {
    const j = m[i]!;
    if (j < 0) continue;
    expect(j).toBeGreaterThan(last);
    expect(b[j]).toBe(a[i]);
    last = j;
    count++;
  }
  expect(count).toBe(lcsLength(a, b));
}

describe("matchSequences", () => {
  it("matches identical, empty and disjoint sequences", () => {
    check([], []);
    check(["a"], []);
    check([], ["a"]);
    check(["a", "b", "c"], ["a", "b", "c"]);
    check(["a", "b"], ["c", "d"]);
  });
  it("finds a longest common subsequence for insertions, deletions and moves", () => {
    check(["a", "b", "c", "d"], ["a", "x", "c", "d"]);
    check(["a", "b", "c", "d"], ["d", "a", "b", "c"]);
    check(["x", "a", "b", "a", "c"], ["a", "b", "c", "a", "b"]);
  });
  it("is minimal on random sequences", () => {
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % 6).toString();
    for (let t = 0; t < 300; t++) {
      const a = Array.from({ length: t % 17 }, rnd);
      const b = Array.from({ length: (t * 7) % 19 }, rnd);
      check(a, b);
    }
  });
  it("matches pure deletions and pure insertions in one pass, duplicates included", () => {
    let seed = 11;
    const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n;
    for (let t = 0; t < 200; t++) {
      const long = Array.from({ length: 5 + (t % 40) }, () => String(rnd(4)));
      const short = long.filter(() => rnd(3) !== 0);
      check(long, short);
      check(short, long);
    }
    // Removing 400 ports' jumps from a 4,000-rule chain.
    const chain = Array.from({ length: 4000 }, (_, i) => `-j p${i >> 1}`);
    const kept = chain.filter((_, i) => (i >> 1) % 10 !== 3);
    const m = matchSequences(chain, kept);
    expect([...m].filter((j) => j >= 0)).toHaveLength(kept.length);
  });
  it("stays minimal on longer random sequences (many frontiers to backtrack through)", () => {
    let seed = 5;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % 5).toString();
    for (let t = 0; t < 20; t++) check(Array.from({ length: 120 + t }, rnd), Array.from({ length: 150 - t }, rnd));
  });
  it("handles a one-rule change in a 100k-element sequence quickly", () => {
    const a = Array.from({ length: 100_000 }, (_, i) => `-j r${i}`);
    const b = [...a];
    b.splice(50_000, 1, "-j changed");
    const m = matchSequences(a, b);
    expect(m[50_000]).toBe(-1);
    expect(m[50_001]).toBe(50_001);
  });
});
