import { describe, expect, it } from "vitest";
import { diffChain } from "./chain-diff.js";

// The applier's own test plays random scripts; these pin the shapes of the lines.
describe("diffChain", () => {
  const C = "w-chain";

  it("returns the kernel's rules themselves when nothing changes", () => {
    const current = ["-j A", "-j B"];
    const d = diffChain(C, current, null, ["-j A", "-j B"]);
    expect(d).toEqual({ lines: [], final: current, inserted: [], added: 0, removed: 0, rewritten: false });
    expect(d.final).toBe(current);
  });

  it("inserts by 1-based position and appends at the end", () => {
    const d = diffChain(C, ["-j A", "-j C"], null, ["-j A", "-j B", "-j C", "-j D"]);
    expect(d.lines).toEqual([`-I ${C} 2 -j B`, `-A ${C} -j D`]);
    expect(d.inserted).toEqual(["-j B", "-j D"]);
    expect(d.final).toEqual(["-j A", "-j B", "-j C", "-j D"]);
  });

  it("deletes from the bottom up, so earlier indexes stay valid", () => {
    const d = diffChain(C, ["-j A", "-j B", "-j C", "-j D"], null, ["-j B", "-j D"]);
    expect(d.lines).toEqual([`-D ${C} 3`, `-D ${C} 1`]);
    expect(d.removed).toBe(2);
  });

  it("replaces a lone rule with a delete and an append, not a flush", () => {
    const d = diffChain(C, ["-j A"], null, ["-j B"]);
    expect(d.lines).toEqual([`-D ${C} 1`, `-A ${C} -j B`]);
    expect(d.rewritten).toBe(false);
  });

  it("in a shared chain deletes a text that occurs twice by index, naming the copy that is ours", () => {
    const current = ["-j X", "-j foreign", "-j X"];
    const d = diffChain("INPUT", current, [false, false, true], []);
    expect(d.lines).toEqual(["-D INPUT 3"]);
    expect(d.final).toEqual(["-j X", "-j foreign"]);
  });

  it("counts only our rules as removed in a shared chain", () => {
    const d = diffChain("FORWARD", ["-j foreign", "-j old"], [false, true], ["-j new"]);
    expect(d.removed).toBe(1);
    expect(d.added).toBe(1);
    expect(d.lines).toEqual(["-D FORWARD -j old", "-I FORWARD 1 -j new"]);
  });
});
