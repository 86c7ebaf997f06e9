import { describe, expect, it } from "vitest";
import { closeRestoreInput, renderFamilyPlan } from "./restore-render.js";
import type { ChainChange, TablePlan } from "./table-plan.js";

function tablePlan(table: string, lines: string[], changes: ChainChange[] = []): TablePlan {
  return { table, lines, changes, content: new Map(), owned: new Map(), declared: new Set() };
}

describe("renderFamilyPlan", () => {
  it("writes each table with edits as one block, in order, and counts only edit lines", () => {
    const change: ChainChange = { table: "nat", chain: "x", added: 1, removed: 0 };
    const plan = renderFamilyPlan(6, "ns-1", [tablePlan("filter", ["-A INPUT -j ACCEPT", "-A OUTPUT -j ACCEPT"]), tablePlan("mangle", []), tablePlan("nat", ["-A x -j RETURN"], [change])], false);
    expect(plan).toEqual({
      family: 6,
      namespace: "ns-1",
      input: "*filter\n-A INPUT -j ACCEPT\n-A OUTPUT -j ACCEPT\nCOMMIT\n*nat\n-A x -j RETURN\nCOMMIT\n",
      lines: 3,
      tables: ["filter", "nat"],
      changes: [change],
      full: false,
    });
  });

  it("gives an empty input when no table has edits", () => {
    const plan = renderFamilyPlan(4, undefined, [tablePlan("filter", [])], true);
    expect(plan.input).toBe("");
    expect(plan.lines).toBe(0);
    expect(plan.tables).toEqual([]);
    expect(plan.full).toBe(true);
  });
});

describe("closeRestoreInput", () => {
  it("continues the open table, commits it, then adds the other tables as blocks", () => {
    const out = ["*filter", ":a - [0:0]"];
    closeRestoreInput(out, "filter", [tablePlan("filter", ["-A a -j DROP"]), tablePlan("mangle", []), tablePlan("raw", ["-A PREROUTING -j CT --notrack"])]);
    expect(out).toEqual(["*filter", ":a - [0:0]", "-A a -j DROP", "COMMIT", "*raw", "-A PREROUTING -j CT --notrack", "COMMIT"]);
  });

  it("commits the open table even when the plan has nothing more for it", () => {
    const out = ["*filter"];
    closeRestoreInput(out, "filter", [tablePlan("nat", ["-A x -j RETURN"])]);
    expect(out).toEqual(["*filter", "COMMIT", "*nat", "-A x -j RETURN", "COMMIT"]);
  });
});
