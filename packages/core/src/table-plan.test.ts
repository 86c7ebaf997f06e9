import { describe, expect, it } from "vitest";
import { UnknownChainError } from "./errors.js";
import { IptablesTable, type TableName } from "./iptables-table.js";
import type { FamilyView, OwnershipMemory } from "./kernel-view.js";
import { planTables, type FamilyDesire, type PlanTablesOptions } from "./table-plan.js";

const WRAP = "cwtest";

/** A table whose rules are taken as already canonical; its dirty chains are collected. */
function table(name: TableName = "filter") {
  const dirty = new Set<string>();
  const t = new IptablesTable(name, { wrapName: WRAP, family: 4, comments: false, canonicalize: (rule) => rule, markDirty: (_t, chain) => dirty.add(chain) });
  return { t, dirty };
}

function desire(...tables: { t: IptablesTable; dirty: Set<string> }[]): FamilyDesire {
  return { family: 4, wrapName: WRAP, tables: tables.map((x) => x.t), dirty: new Map(tables.map((x) => [x.t.name, x.dirty])) };
}

function viewOf(tables: Record<string, Record<string, string[]>>): FamilyView {
  return new Map(Object.entries(tables).map(([name, chains]) => [name, new Map(Object.entries(chains))]));
}

const NO_MEMORY = (): OwnershipMemory => ({ owned: undefined, declared: undefined });

function options(over: Partial<PlanTablesOptions> = {}): PlanTablesOptions {
  return { full: false, memory: NO_MEMORY, namespace: "ns-1", ...over };
}

describe("planTables", () => {
  it("declares new chains first, then the edits, and says what the view and ownership become", () => {
    const f = table();
    f.t.addChain("in", { resource: "port-1" });
    f.t.addRule("in", "-s 10.0.0.1/32 -j ACCEPT");
    f.t.addRule("INPUT", `-j ${WRAP}-in`, { wrap: false });
    const [plan, ...rest] = planTables(desire(f), new Map(), options({ full: true }));
    expect(rest).toEqual([]);
    expect(plan!.table).toBe("filter");
    expect(plan!.lines).toEqual([`:${WRAP}-in - [0:0]`, `-A INPUT -j ${WRAP}-in`, `-A ${WRAP}-in -s 10.0.0.1/32 -j ACCEPT`]);
    expect(plan!.changes).toEqual([
      { table: "filter", chain: "INPUT", added: 1, removed: 0 },
      { table: "filter", chain: `${WRAP}-in`, added: 1, removed: 0, created: true },
    ]);
    expect(plan!.content).toEqual(new Map([["INPUT", [`-j ${WRAP}-in`]], [`${WRAP}-in`, ["-s 10.0.0.1/32 -j ACCEPT"]]]));
    // Ours in a shared chain is remembered; a chain named after the wrap is ours by its name.
    expect(plan!.owned).toEqual(new Map([["INPUT", new Set([`-j ${WRAP}-in`])]]));
    expect(plan!.declared).toEqual(new Set());
  });

  it("never deletes, moves or names a foreign rule in a shared chain", () => {
    const f = table();
    f.t.addChain("in");
    f.t.addRule("INPUT", `-j ${WRAP}-in`, { wrap: false });
    f.dirty.clear();
    f.dirty.add("INPUT");
    const kernel = viewOf({ filter: { INPUT: ["-s 192.0.2.1/32 -j DROP", `-j ${WRAP}-old`, "-j LOG"], [`${WRAP}-in`]: [] } });
    const [plan] = planTables(desire(f), kernel, options());
    expect(plan!.lines).toEqual([`-D INPUT -j ${WRAP}-old`, `-I INPUT 1 -j ${WRAP}-in`]);
    expect(plan!.content.get("INPUT")).toEqual([`-j ${WRAP}-in`, "-s 192.0.2.1/32 -j DROP", "-j LOG"]);
    // The view itself is not touched: that is the commit's job.
    expect(kernel.get("filter")!.get("INPUT")).toHaveLength(3);
  });

  it("compares only the dirty chains, unless told to compare everything", () => {
    const f = table();
    f.t.addChain("in");
    f.t.addRule("in", "-j ACCEPT");
    f.dirty.clear();
    const kernel = viewOf({ filter: { [`${WRAP}-in`]: ["-j ACCEPT"], [`${WRAP}-stale`]: ["-j DROP"], foreign: ["-j DROP"] } });
    expect(planTables(desire(f), kernel, options())).toEqual([]);
    const [plan] = planTables(desire(f), kernel, options({ full: true }));
    expect(plan!.lines).toEqual([`-F ${WRAP}-stale`, `-X ${WRAP}-stale`]);
    expect(plan!.changes).toEqual([{ table: "filter", chain: `${WRAP}-stale`, added: 0, removed: 1, deleted: true }]);
    expect(plan!.content).toEqual(new Map([[`${WRAP}-stale`, null]]));
  });

  it("plans the tables with something to compare, in name order", () => {
    const raw = table("raw");
    raw.t.addRule("PREROUTING", "-j CT --zone 1", { wrap: false });
    const f = table("filter");
    const nat = table("nat");
    nat.t.addRule("POSTROUTING", "-j MASQUERADE", { wrap: false });
    expect(planTables(desire(raw, f, nat), new Map(), options()).map((p) => p.table)).toEqual(["nat", "raw"]);
    expect(planTables(desire(raw, f, nat), new Map(), options({ full: true })).map((p) => p.table)).toEqual(["filter", "nat", "raw"]);
  });

  it("refuses a jump to a chain that will not exist, naming the rule's resource", () => {
    const f = table();
    f.t.addRule("FORWARD", `-j ${WRAP}-nowhere`, { wrap: false, resource: "port-9" });
    let error: unknown;
    try {
      planTables(desire(f), new Map(), options());
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(UnknownChainError);
    expect(error).toMatchObject({ resource: "port-9", namespace: "ns-1" });
  });

  it("refuses a jump to a chain deleted in the same plan", () => {
    const f = table();
    f.t.addChain("gone");
    f.t.addChain("in");
    f.t.addRule("in", `-j ${WRAP}-gone`, { resource: "port-2" });
    f.t.removeChain("gone");
    f.t.addRule("INPUT", `-j ${WRAP}-gone`, { wrap: false, resource: "port-3" });
    const kernel = viewOf({ filter: { [`${WRAP}-gone`]: [] } });
    expect(() => planTables(desire(f), kernel, options())).toThrow(UnknownChainError);
  });

  it("leaves the chains it is told to skip out of a full comparison", () => {
    const f = table();
    f.t.addChain("a");
    f.t.addRule("a", "-j ACCEPT");
    f.t.addChain("b");
    f.t.addRule("b", "-j DROP");
    const [plan] = planTables(desire(f), new Map(), options({ full: true, skip: { table: "filter", chains: new Set([`${WRAP}-a`]) } }));
    expect(plan!.lines).toEqual([`:${WRAP}-b - [0:0]`, `-A ${WRAP}-b -j DROP`]);
  });

  it("takes back rules it placed before and unwrapped chains it declared before", () => {
    const f = table();
    f.t.addRule("INPUT", "-j ACCEPT", { wrap: false });
    const kernel = viewOf({ filter: { INPUT: ["-p tcp -j ACCEPT", "-j ACCEPT", "-p udp -j ACCEPT"], "shared-top": ["-j RETURN"] } });
    const memory = (): OwnershipMemory => ({ owned: new Map([["INPUT", new Set(["-p udp -j ACCEPT"])]]), declared: new Set(["shared-top"]) });
    const [plan] = planTables(desire(f), kernel, options({ full: true, memory }));
    // -p tcp is foreign (never ours); -p udp was ours and is no longer wanted.
    expect(plan!.lines).toEqual(["-D INPUT -p udp -j ACCEPT", "-F shared-top", "-X shared-top"]);
    expect(plan!.owned).toEqual(new Map([["INPUT", new Set(["-j ACCEPT"])]]));
  });
});
