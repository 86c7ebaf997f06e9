import { describe, expect, it, vi } from "vitest";
import { IptablesTable } from "./iptables-table.js";
import type { FamilyView } from "./kernel-view.js";
import { silentLogger } from "./logger.js";
import type { FamilyPlan } from "./restore-render.js";
import { StreamedRestore } from "./restore-stream.js";
import type { IptablesRunner, RestoreStream, XtablesLockHold } from "./iptables-runner.js";
import { SharedXtablesHold } from "./shared-xtables-hold.js";
import type { TablePlan } from "./table-plan.js";

const W = "cwtest";

function filter() {
  return new IptablesTable("filter", { wrapName: W, family: 4, comments: false, canonicalize: (rule) => rule, markDirty: () => undefined });
}

/** A tool that records what it is given. */
function tool() {
  const written: string[] = [];
  const sink: RestoreStream & { ended: boolean } = {
    ended: false,
    write: (text) => void written.push(text),
    end: async () => {
      sink.ended = true;
    },
  };
  return { sink, written, text: () => written.join("") };
}

function stream(options: { view?: FamilyView; after?: Promise<unknown>; lock?: XtablesLockHold } = {}) {
  const t = tool();
  const runner = { holdXtablesLock: async () => options.lock } as unknown as IptablesRunner;
  const hold = new SharedXtablesHold({ runner, namespace: "ns-1", logger: silentLogger });
  const view: FamilyView = options.view ?? new Map();
  const open = vi.fn((_lock: XtablesLockHold | undefined) => t.sink);
  const make = () => new StreamedRestore({ table: "filter", wrapName: W, view, after: options.after, hold, open });
  return { ...t, hold, view, open, make };
}

function rest(tablePlans: TablePlan[], changes = tablePlans.flatMap((tp) => tp.changes)): FamilyPlan {
  const withEdits = tablePlans.filter((tp) => tp.lines.length > 0);
  return { family: 4, namespace: "ns-1", input: "(not used)", lines: withEdits.reduce((n, tp) => n + tp.lines.length, 0), tables: withEdits.map((tp) => tp.table), changes, full: false };
}

function tablePlan(table: string, lines: string[], changes: TablePlan["changes"] = []): TablePlan {
  return { table, lines, changes, content: new Map(), owned: new Map(), declared: new Set() };
}

describe("StreamedRestore", () => {
  it("starts the tool at once with the table line, and sends a chain with the chains it jumps to declared first", async () => {
    const s = stream();
    const r = s.make();
    expect(s.open).toHaveBeenCalledWith(undefined);
    expect(s.text()).toBe("*filter\n");
    const t = filter();
    t.addChain("port-a");
    t.addChain("port-a-sg");
    t.addRule("port-a", `-j ${W}-port-a-sg`);
    t.addRule("port-a", "-j DROP");
    expect(r.sendChains(t, [`${W}-port-a`])).toEqual([`${W}-port-a`]);
    // In the view at once, on the wire with the next group.
    expect(s.view.get("filter")!.get(`${W}-port-a`)).toEqual([`-j ${W}-port-a-sg`, "-j DROP"]);
    expect(s.view.get("filter")!.get(`${W}-port-a-sg`)).toEqual([]);
    expect(s.text()).toBe("*filter\n");
    const full = r.complete(rest([]), []);
    await r.end();
    expect(s.text()).toBe(`*filter\n:${W}-port-a-sg - [0:0]\n:${W}-port-a - [0:0]\n-A ${W}-port-a -j ${W}-port-a-sg\n-A ${W}-port-a -j DROP\nCOMMIT\n`);
    expect(full.input).toBe(s.text());
    expect(full.lines).toBe(4);
    expect(full.changes).toEqual([
      { table: "filter", chain: `${W}-port-a-sg`, added: 0, removed: 0, created: true },
      { table: "filter", chain: `${W}-port-a`, added: 2, removed: 0, created: true },
    ]);
    expect(s.sink.ended).toBe(true);
  });

  it("leaves to the apply chains that exist, are not ours, are not declared, or jump where nothing will be", () => {
    const view: FamilyView = new Map([["filter", new Map([[`${W}-old`, []]])]]);
    const s = stream({ view });
    const r = s.make();
    const t = filter();
    t.addChain("old");
    t.addChain("shared", { wrap: false });
    t.addChain("lost");
    t.addRule("lost", "-j elsewhere");
    expect(r.sendChains(t, [`${W}-old`, "shared", `${W}-lost`, `${W}-undeclared`])).toEqual([]);
    expect(r.sendChains(filter(), [`${W}-old`])).toEqual([]);
    const nat = new IptablesTable("nat", { wrapName: W, family: 4, comments: false, canonicalize: (rule) => rule, markDirty: () => undefined });
    nat.addChain("x");
    expect(r.sendChains(nat, [`${W}-x`])).toEqual([]);
    expect(r.createdChains).toBe(0);
  });

  it("sends in groups of declarations then rules once enough chains are waiting", () => {
    const s = stream();
    const r = s.make();
    const t = filter();
    const names: string[] = [];
    for (let i = 0; i < 300; i++) {
      names.push(t.addChain(`p${i}`));
      t.addRule(`p${i}`, "-j ACCEPT");
    }
    r.sendChains(t, names.slice(0, 299));
    expect(s.written).toHaveLength(1);
    r.sendChains(t, names.slice(299));
    expect(s.written).toHaveLength(2);
    const group = s.written[1]!.trimEnd().split("\n");
    expect(group).toHaveLength(600);
    expect(group.slice(0, 300).every((l) => l.startsWith(":"))).toBe(true);
    expect(group.slice(300).every((l) => l.startsWith("-A "))).toBe(true);
    expect(r.editLines).toBe(600);
  });

  it("sends what a growing chain has gained, stopping at a jump to a chain not declared yet", async () => {
    const s = stream();
    const r = s.make();
    const t = filter();
    t.addChain("sg-chain");
    t.addChain("p1");
    t.addRule("sg-chain", `-j ${W}-p1`, { top: true });
    t.addRule("sg-chain", "-j ACCEPT");
    r.sendGrowth(t, [`${W}-sg-chain`]);
    expect(s.view.get("filter")!.get(`${W}-sg-chain`)).toEqual([]);
    r.sendChains(t, [`${W}-p1`]);
    r.sendGrowth(t, [`${W}-sg-chain`]);
    expect(s.view.get("filter")!.get(`${W}-sg-chain`)).toEqual([`-j ${W}-p1`]);
    t.addChain("p2");
    t.addRule("sg-chain", `-j ${W}-p2`, { top: true });
    r.sendChains(t, [`${W}-p2`]);
    r.sendGrowth(t, [`${W}-sg-chain`]);
    expect(s.view.get("filter")!.get(`${W}-sg-chain`)).toEqual([`-j ${W}-p1`, `-j ${W}-p2`]);
    // The apply's diff writes the rest; its change is added to the stream's entry for the chain.
    const full = r.complete(rest([tablePlan("filter", [`-A ${W}-sg-chain -j ACCEPT`], [{ table: "filter", chain: `${W}-sg-chain`, added: 1, removed: 0 }])]), [
      tablePlan("filter", [`-A ${W}-sg-chain -j ACCEPT`]),
    ]);
    await r.end();
    expect(full.changes.filter((c) => c.chain === `${W}-sg-chain`)).toEqual([{ table: "filter", chain: `${W}-sg-chain`, added: 3, removed: 0, created: true }]);
    expect(s.text().endsWith(`-A ${W}-sg-chain -j ${W}-p2\n-A ${W}-sg-chain -j ACCEPT\nCOMMIT\n`)).toBe(true);
  });

  it("stops growing a chain once a rule has left it", () => {
    const s = stream();
    const r = s.make();
    const t = filter();
    t.addChain("sg-chain");
    t.addRule("sg-chain", "-j RETURN", { top: true });
    r.sendGrowth(t, [`${W}-sg-chain`]);
    t.removeRule("sg-chain", "-j RETURN", { top: true });
    t.addRule("sg-chain", "-j DROP", { top: true });
    r.sendGrowth(t, [`${W}-sg-chain`]);
    t.addRule("sg-chain", "-j LOG", { top: true });
    r.sendGrowth(t, [`${W}-sg-chain`]);
    expect(s.view.get("filter")!.get(`${W}-sg-chain`)).toEqual(["-j RETURN"]);
  });

  it("when abandoned, takes its chains out of the view and ends the input without COMMIT", async () => {
    const view: FamilyView = new Map([["filter", new Map([["INPUT", []]])]]);
    const s = stream({ view });
    const r = s.make();
    const t = filter();
    t.addChain("p");
    r.sendChains(t, [`${W}-p`]);
    r.abandon();
    expect([...view.get("filter")!.keys()]).toEqual(["INPUT"]);
    await vi.waitFor(() => expect(s.sink.ended).toBe(true));
    expect(s.text()).not.toContain("COMMIT");
  });

  it("starts the tool only after `after`, and never when abandoned before", async () => {
    let go!: () => void;
    const after = new Promise<void>((resolve) => (go = resolve));
    const s = stream({ after });
    s.make();
    expect(s.open).not.toHaveBeenCalled();
    go();
    await vi.waitFor(() => expect(s.open).toHaveBeenCalled());
    expect(s.text()).toBe("*filter\n");

    let never!: () => void;
    const later = new Promise<void>((resolve) => (never = resolve));
    const gone = stream({ after: later });
    gone.make().abandon();
    never();
    await later;
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(gone.open).not.toHaveBeenCalled();
  });

  it("runs under the hold from its start to its end", async () => {
    const lock: XtablesLockHold = { path: "/run/xtables.lock", release: vi.fn() };
    const s = stream({ lock });
    await s.hold.acquire();
    const r = s.make();
    expect(s.open).toHaveBeenCalledWith(lock);
    s.hold.release();
    expect(s.hold.held).toBe(true);
    r.complete(rest([]), []);
    await r.end();
    expect(s.hold.held).toBe(false);
  });

  it("closes the open table and writes the plan's other tables as blocks", async () => {
    const s = stream();
    const r = s.make();
    const tablePlans = [tablePlan("filter", ["-A INPUT -j ACCEPT"]), tablePlan("raw", ["-A PREROUTING -j CT --notrack"])];
    const full = r.complete(rest(tablePlans), tablePlans);
    expect(full.tables).toEqual(["filter", "raw"]);
    expect(full.input).toBe("*filter\n-A INPUT -j ACCEPT\nCOMMIT\n*raw\n-A PREROUTING -j CT --notrack\nCOMMIT\n");
    await r.end();
    expect(s.text()).toBe(full.input);
  });

  it("names the chains sent whole that were not changed since", () => {
    const s = stream();
    const r = s.make();
    const t = filter();
    const a = t.addChain("a");
    const b = t.addChain("b");
    r.sendChains(t, [a, b]);
    expect(r.unchangedSince(new Set([b]))).toEqual(new Set([a]));
    expect(r.unchangedSince(undefined)).toEqual(new Set([a, b]));
  });

  it("calls back when it stays open too long, unless finished first", async () => {
    const expired = vi.fn();
    const open = stream().make();
    open.expireAfter(1, expired);
    await vi.waitFor(() => expect(expired).toHaveBeenCalledTimes(1));
    const finished = stream().make();
    const notExpired = vi.fn();
    finished.expireAfter(1, notExpired);
    finished.complete(rest([]), []);
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(notExpired).not.toHaveBeenCalled();
  });
});
