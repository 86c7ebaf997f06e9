import { describe, expect, it } from "vitest";
import { diffChain } from "./chain-diff.js";

/** Plays an edit script the way iptables-restore would on one chain. */
function play(chain: string, start: readonly string[], lines: readonly string[]): string[] {
  const rules = [...start];
  for (const line of lines) {
    const [op, name, ...rest] = line.split(" ");
    expect(name).toBe(chain);
    if (op === "-F") rules.length = 0;
    else if (op === "-A") rules.push(rest.join(" "));
    else if (op === "-I") rules.splice(Number(rest[0]) - 1, 0, rest.slice(1).join(" "));
    else if (op === "-D" && /^\d+$/.test(rest[0]!) && rest.length === 1) rules.splice(Number(rest[0]) - 1, 1);
    else if (op === "-D") {
      const i = rules.indexOf(rest.join(" "));
      expect(i).toBeGreaterThanOrEqual(0);
      rules.splice(i, 1);
    } else throw new Error(`unexpected ${line}`);
  }
  return rules;
}

describe("diffChain", () => {
  const C = "neutron-l3-agent-x";

  it("sends nothing when the chain already holds the wanted rules", () => {
    const d = diffChain(C, ["-j A", "-j B"], null, ["-j A", "-j B"]);
    expect(d.lines).toEqual([]);
  });

  it("appends, inserts and deletes by index in a chain we own alone", () => {
    const cur = ["-j A", "-j B", "-j C", "-j D"];
    const want = ["-j Z", "-j A", "-j C", "-j E", "-j D", "-j F"];
    const d = diffChain(C, cur, null, want);
    expect(play(C, cur, d.lines)).toEqual(want);
    expect(d.final).toEqual(want);
    expect(d.lines.filter((l) => l.startsWith("-D"))).toEqual([`-D ${C} 2`]);
    expect(d.added).toBe(3);
    expect(d.removed).toBe(1);
  });

  it("rewrites with a flush when nothing can stay", () => {
    const d = diffChain(C, ["-j A", "-j B", "-j C"], null, ["-j X", "-j Y"]);
    expect(d.rewritten).toBe(true);
    expect(d.lines).toEqual([`-F ${C}`, `-A ${C} -j X`, `-A ${C} -j Y`]);
  });

  it("in a shared chain: deletes ours by text, inserts ours before foreign rules, never names a foreign rule", () => {
    const cur = ["-j ours-1", "-j foreign-1", "-j ours-stale", "-j foreign-2"];
    const mine = [true, false, true, false];
    const want = ["-j ours-0", "-j ours-1", "-j ours-2"];
    const d = diffChain("INPUT", cur, mine, want);
    const after = play("INPUT", cur, d.lines);
    expect(after.filter((r) => r.startsWith("-j ours"))).toEqual(want);
    expect(after.filter((r) => r.startsWith("-j foreign"))).toEqual(["-j foreign-1", "-j foreign-2"]);
    expect(after.slice(0, 3)).toEqual(want);
    for (const l of d.lines) expect(l).not.toContain("foreign");
    expect(d.lines).toContain("-D INPUT -j ours-stale");
    expect(d.final).toEqual(after);
  });

  it("never flushes a shared chain, even when nothing of ours can stay", () => {
    const cur = ["-j a", "-j b", "-j foreign"];
    const d = diffChain("FORWARD", cur, [true, true, false], ["-j c"]);
    expect(d.lines.some((l) => l.startsWith("-F"))).toBe(false);
    expect(play("FORWARD", cur, d.lines)).toEqual(["-j c", "-j foreign"]);
  });

  it("produces a correct script for random edits", () => {
    let seed = 11;
    const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n;
    for (let t = 0; t < 500; t++) {
      const cur = Array.from({ length: rnd(9) }, () => `-j r${rnd(6)}`);
      const shared = rnd(2) === 0;
      const want = [...new Set(Array.from({ length: rnd(7) }, () => `-j r${rnd(6)}`))];
      // Ownership is a function of the text, as in the applier.
      const foreignTexts = new Set([`-j r${rnd(6)}`].filter((t) => !want.includes(t)));
      const mine = cur.map((t) => !foreignTexts.has(t));
      const m = shared ? mine : null;
      const d = diffChain("X", cur, m, want);
      const after = play("X", cur, d.lines);
      expect(d.final).toEqual(after);
      if (shared) {
        expect(after.filter((r) => !foreignTexts.has(r))).toEqual(want);
        expect(after.filter((r) => foreignTexts.has(r))).toEqual(cur.filter((r) => foreignTexts.has(r)));
      } else {
        expect(after).toEqual(want);
      }
    }
  });
});
