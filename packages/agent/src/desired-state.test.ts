import { describe, expect, it } from "vitest";
import { DesiredState } from "./desired-state.js";
import type { ResourceHandler } from "./extension-points.js";
import { doc, rs, ruleSetHandler } from "./rule-set-handler.test-support.js";

function state(defaultNamespace?: string) {
  const { handler } = ruleSetHandler();
  return new DesiredState([handler as ResourceHandler], defaultNamespace);
}

const ids = (s: DesiredState, ns: string | undefined) => [...(s.in(ns).get("rule_set")?.keys() ?? [])];

describe("DesiredState", () => {
  it("before any document: nothing read, no kind complete, nothing desired", () => {
    const s = state();
    expect(s.read).toBe(false);
    expect(s.complete("rule_set")).toBe(false);
    expect([...s.namespaces()]).toEqual([]);
  });

  it("groups resources by namespace (the default one for none) and says which namespaces changed", () => {
    const s = state("ns-default");
    const first = s.update(doc(rs("r1", "ns-a", "-j ACCEPT"), rs("r2", undefined, "-j DROP")), "t");
    expect(first.affected).toEqual(new Set(["ns-a", "ns-default"]));
    expect(ids(s, "ns-a")).toEqual(["r1"]);
    expect(ids(s, "ns-default")).toEqual(["r2"]);
    expect(s.complete("rule_set")).toBe(true);

    // Equal again: the same object is kept, no namespace is affected.
    const r1 = s.in("ns-a").get("rule_set")!.get("r1");
    expect(s.update(doc(rs("r1", "ns-a", "-j ACCEPT"), rs("r2", undefined, "-j DROP")), "t").affected.size).toBe(0);
    expect(s.in("ns-a").get("rule_set")!.get("r1")).toBe(r1);

    // Moved: both namespaces are affected.
    expect(s.update(doc(rs("r1", "ns-b", "-j ACCEPT"), rs("r2", undefined, "-j DROP")), "t").affected).toEqual(new Set(["ns-a", "ns-b"]));
    expect(s.has("ns-a")).toBe(false);
  });

  it("an invalid resource keeps its last good version; one never valid here is held through its stand-in", () => {
    const s = state();
    s.update(doc(rs("r1", "ns-a", "-j ACCEPT")), "t");
    const bad = s.update(doc({ id: "r1", namespace: "ns-a", rules: "oops" }, { id: "r2", namespace: "ns-a", rules: 7 }), "t");
    expect(bad.fresh.map((p) => [p.problem.resource, p.keptAs])).toEqual([
      ["r1", "last-good"],
      ["r2", "stand-in"],
    ]);
    expect(s.in("ns-a").get("rule_set")!.get("r1")).toEqual(rs("r1", "ns-a", "-j ACCEPT"));
    expect(s.isHeld("rule_set", "r1")).toBe(false);
    expect(s.isHeld("rule_set", "r2")).toBe(true);
    // Problems naming a resource leave the kind complete.
    expect(s.complete("rule_set")).toBe(true);
    // The same problems again are not fresh (logged once); they stay in `problems`.
    expect(s.update(doc({ id: "r1", namespace: "ns-a", rules: "oops" }, { id: "r2", namespace: "ns-a", rules: 7 }), "t").fresh).toEqual([]);
    expect(s.problems).toHaveLength(2);
  });

  it("a key the source says it does not deliver leaves its kinds incomplete: missing means unknown, nothing goes", () => {
    const s = state();
    s.update(doc(rs("r1", "ns-a", "-j ACCEPT")), "t");
    const update = s.update({}, "neutron-server", { notDelivered: ["rule_sets"] });
    expect(update.fresh).toEqual([]);
    expect(s.complete("rule_set")).toBe(false);
    expect(ids(s, "ns-a")).toEqual(["r1"]);
    // Delivered again: complete, and now its absence removes.
    s.update({ rule_sets: [] }, "t");
    expect(s.complete("rule_set")).toBe(true);
    expect(s.has("ns-a")).toBe(false);
  });

  it("a problem naming no resource, or an unknown key, makes the kind incomplete: nothing desired before goes", () => {
    const s = state();
    s.update(doc(rs("r1", "ns-a", "-j ACCEPT"), rs("r2", "ns-b", "-j ACCEPT")), "t");
    s.update({ rule_sets: "not a list" }, "t");
    expect(s.complete("rule_set")).toBe(false);
    expect(ids(s, "ns-a")).toEqual(["r1"]);
    expect(ids(s, "ns-b")).toEqual(["r2"]);

    const typo = s.update({ rule_set: [rs("r1", "ns-a", "-j ACCEPT")] }, "t");
    expect(typo.fresh.map((p) => p.problem.message).join()).toMatch(/unknown key "rule_set".*rule_sets/);
    expect(s.complete("rule_set")).toBe(false);
    expect(ids(s, "ns-b")).toEqual(["r2"]);

    // A complete document removes what it no longer has.
    const fixed = s.update(doc(rs("r1", "ns-a", "-j ACCEPT")), "t");
    expect(s.complete("rule_set")).toBe(true);
    expect(s.has("ns-b")).toBe(false);
    expect(fixed.affected.has("ns-b")).toBe(true);
  });

  it("a handler whose parse throws keeps its kind as it was, as incomplete input", () => {
    const { handler } = ruleSetHandler();
    const s = new DesiredState([handler as ResourceHandler], undefined);
    s.update(doc(rs("r1", "ns-a", "-j ACCEPT")), "t");
    handler.parse = () => {
      throw new Error("parser bug");
    };
    const u = s.update(doc(), "t");
    expect(u.fresh[0]!.problem.message).toMatch(/could not parse the document: parser bug/);
    expect(s.complete("rule_set")).toBe(false);
    expect(ids(s, "ns-a")).toEqual(["r1"]);
  });
});
