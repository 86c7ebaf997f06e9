import { describe, expect, it, vi } from "vitest";
import { NamespaceGoneError } from "./errors.js";
import { KernelView } from "./kernel-view.js";
import { silentLogger } from "./logger.js";
import type { IptablesRunner, SaveOptions, Target } from "./iptables-runner.js";

const SAVE = `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:w-in - [0:0]
[3:180] -A INPUT -j w-in
[2:100] -A w-in -s 10.0.0.1/32 -j ACCEPT
[5:500] -A w-in -s 10.0.0.2/32 -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -j MASQUERADE
COMMIT
`;

/** A runner whose `save` prints `text` (or throws it); nothing else is called. */
function saving(text: string | Error) {
  const save = vi.fn(async (_target: Target, _options?: SaveOptions) => {
    if (text instanceof Error) throw text;
    return text;
  });
  return { runner: { save } as unknown as IptablesRunner, save };
}

function view(text: string | Error = SAVE) {
  const { runner, save } = saving(text);
  return { kv: new KernelView({ runner, namespace: "ns-1", logger: silentLogger }), save };
}

describe("KernelView", () => {
  it("loads a family with one iptables-save of its namespace and owes a full comparison until a commit", async () => {
    const { kv, save } = view();
    expect(kv.has(4)).toBe(false);
    const v = await kv.load(4);
    expect(save).toHaveBeenCalledWith({ namespace: "ns-1", family: 4 });
    expect(v.get("filter")?.get("w-in")).toEqual(["-s 10.0.0.1/32 -j ACCEPT", "-s 10.0.0.2/32 -j ACCEPT"]);
    expect(kv.get(4)).toBe(v);
    expect(kv.owesFullCompare(4)).toBe(true);
    kv.commit(4, "w", []);
    expect(kv.owesFullCompare(4)).toBe(false);
    expect(kv.has(6)).toBe(false);
  });

  it("counts rules, reading only when asked to", async () => {
    const { kv, save } = view();
    expect(kv.loadedRuleCount(4)).toBeUndefined();
    expect(save).not.toHaveBeenCalled();
    expect(await kv.ruleCount(4)).toBe(4);
    expect(kv.loadedRuleCount(4)).toBe(4);
    expect(await kv.ruleCount(4)).toBe(4);
    expect(save).toHaveBeenCalledTimes(1);
  });

  it("takes an assumed-empty family as empty without reading, once", async () => {
    const { kv, save } = view();
    await kv.load(4);
    kv.assumeEmpty(4);
    expect(kv.has(4)).toBe(false);
    expect(await kv.ruleCount(4)).toBe(0);
    expect(await kv.table(4, "filter")).toEqual(new Map());
    const empty = kv.takeEmpty(4);
    expect(empty).toEqual(new Map());
    expect(kv.get(4)).toBe(empty);
    expect(kv.takeEmpty(4)).toBeUndefined();
    expect(kv.takeEmpty(6)).toBeUndefined();
    expect(save).toHaveBeenCalledTimes(1);
  });

  it("commits edits into the view and keeps ownership memory per wrap, family and table", async () => {
    const { kv } = view();
    const v = await kv.load(4);
    const owned = new Map([["INPUT", new Set(["-j w-in"])]]);
    const declared = new Set(["shared-top"]);
    kv.commit(4, "w", [
      { table: "filter", content: new Map([["w-in", null], ["w-new", ["-j DROP"]]]), owned, declared },
      { table: "raw", content: new Map([["w-raw", []]]), owned: new Map(), declared: new Set() },
    ]);
    expect(v.get("filter")?.has("w-in")).toBe(false);
    expect(v.get("filter")?.get("w-new")).toEqual(["-j DROP"]);
    expect(v.get("raw")?.get("w-raw")).toEqual([]);
    expect(kv.memory("w", 4, "filter")).toEqual({ owned, declared });
    expect(kv.memory("w", 6, "filter")).toEqual({ owned: undefined, declared: undefined });
    expect(kv.memory("other", 4, "filter")).toEqual({ owned: undefined, declared: undefined });
  });

  it("drops one family's view or both on invalidate, and keeps ownership memory", async () => {
    const { kv, save } = view();
    await kv.load(4);
    await kv.load(6);
    kv.commit(4, "w", [{ table: "filter", content: new Map(), owned: new Map(), declared: new Set(["x"]) }]);
    kv.invalidate(4);
    expect(kv.has(4)).toBe(false);
    expect(kv.has(6)).toBe(true);
    kv.invalidate();
    expect(kv.has(6)).toBe(false);
    expect(kv.memory("w", 4, "filter").declared).toEqual(new Set(["x"]));
    await kv.ruleCount(4);
    expect(save).toHaveBeenCalledTimes(3);
  });

  it("hands out copies of a table that changing does not change the view", async () => {
    const { kv } = view();
    const copy = await kv.table(4, "filter");
    copy.get("w-in")!.push("-j DROP");
    copy.delete("INPUT");
    const again = await kv.table(4, "filter");
    expect(again.get("w-in")).toHaveLength(2);
    expect(again.has("INPUT")).toBe(true);
    expect(await kv.table(4, "mangle")).toEqual(new Map());
  });

  it("gives an empty table for a namespace that is gone, and other read errors as they are", async () => {
    expect(await view(new NamespaceGoneError("ns-1", "gone")).kv.table(4, "filter")).toEqual(new Map());
    await expect(view(new Error("boom")).kv.table(4, "filter")).rejects.toThrow("boom");
  });

  it("sums a chain's counters from iptables-save -c", async () => {
    const { kv, save } = view();
    expect(await kv.trafficCounters(4, "filter", "w-in")).toEqual({ packets: 7n, bytes: 600n });
    expect(save).toHaveBeenCalledWith({ namespace: "ns-1", family: 4 }, { table: "filter", counters: true });
    expect(await kv.trafficCounters(4, "filter", "missing")).toEqual({ packets: 0n, bytes: 0n });
    expect(kv.has(4)).toBe(false);
  });
});
