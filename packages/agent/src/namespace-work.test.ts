import { describe, expect, it } from "vitest";
import type { ByKind } from "./desired-state.js";
import type { ResourceHandler } from "./extension-points.js";
import { appliedAfter, namespaceWork, type NamespaceWorkInput } from "./namespace-work.js";

function handler(kind: string, equals?: (a: unknown, b: unknown) => boolean): ResourceHandler {
  return {
    kind,
    documentKeys: [kind],
    parse: () => ({ resources: new Map(), problems: [] }),
    namespaceOf: () => undefined,
    reconcile: async () => {},
    ...(equals ? { equals } : {}),
  };
}

const byKind = (entries: Record<string, Record<string, unknown>>): ByKind => new Map(Object.entries(entries).map(([k, v]) => [k, new Map(Object.entries(v))]));

function input(over: Partial<NamespaceWorkInput> & Pick<NamespaceWorkInput, "handlers" | "desired">): NamespaceWorkInput {
  return { full: false, heldIn: () => new Set(), complete: () => true, ...over };
}

const summary = (w: ReturnType<typeof namespaceWork>) =>
  w.work.map((x) => ({ kind: x.handler.kind, changed: [...x.request.changed], removed: [...x.request.removed.keys()], held: [...x.request.held], full: x.request.full }));

describe("namespaceWork", () => {
  const a = handler("a");
  const b = handler("b");

  it("asks only the handlers with a change, in registration order, with what changed and what went", () => {
    const applied = byKind({ a: { x: { v: 1 }, y: { v: 1 } }, b: { z: { v: 1 } } });
    const desired = byKind({ a: { x: { v: 1 }, y: { v: 2 }, n: { v: 1 } }, b: { z: { v: 1 } } });
    const w = namespaceWork(input({ handlers: [b, a], desired, applied }));
    expect(summary(w)).toEqual([{ kind: "a", changed: ["y", "n"], removed: [], held: [], full: false }]);
    expect(w.resources).toEqual(["a/y", "a/n"]);
    expect(w.desired).toBe(desired);

    const gone = namespaceWork(input({ handlers: [a, b], desired: byKind({ a: { x: { v: 1 } } }), applied }));
    expect(summary(gone)).toEqual([
      { kind: "a", changed: [], removed: ["y"], held: [], full: false },
      { kind: "b", changed: [], removed: ["z"], held: [], full: false },
    ]);
  });

  it("compares with the handler's equals, else deep JSON equality", () => {
    const loose = handler("a", (p, q) => (p as { v: number }).v === (q as { v: number }).v);
    const applied = byKind({ a: { x: { v: 1, note: "old" } } });
    const desired = byKind({ a: { x: { v: 1, note: "new" } } });
    expect(namespaceWork(input({ handlers: [loose], desired, applied })).work).toEqual([]);
    expect(summary(namespaceWork(input({ handlers: [a], desired, applied })))[0]!.changed).toEqual(["x"]);
  });

  it("a resource going into or out of being held is a change, even when its value is the same", () => {
    const applied = byKind({ a: { x: { v: 1 } } });
    const desired = byKind({ a: { x: { v: 1 } } });
    const held = namespaceWork(input({ handlers: [a], desired, applied, heldIn: () => new Set(["x"]) }));
    expect(summary(held)).toEqual([{ kind: "a", changed: ["x"], removed: [], held: ["x"], full: false }]);
    expect(held.held).toEqual(["a/x"]);
    expect(held.heldByKind.get("a")).toEqual(new Set(["x"]));

    const released = namespaceWork(input({ handlers: [a], desired, applied, appliedHeld: new Map([["a", new Set(["x"])]]) }));
    expect(summary(released)[0]!.changed).toEqual(["x"]);
  });

  it("a full pass changes every desired resource and calls the namespace's home handlers with nothing desired", () => {
    const applied = byKind({ a: { x: { v: 1 } } });
    const desired = byKind({ a: { x: { v: 1 } } });
    const w = namespaceWork(input({ handlers: [a, b], desired, applied, full: true, home: new Set([b]) }));
    expect(summary(w)).toEqual([
      { kind: "a", changed: ["x"], removed: [], held: [], full: true },
      { kind: "b", changed: [], removed: [], held: [], full: true },
    ]);
    // Home handlers join full passes only.
    expect(namespaceWork(input({ handlers: [a, b], desired, applied, home: new Set([b]) })).work).toEqual([]);
  });

  it("calls kinds that asked to look again, or must be called (incomplete input), with nothing changed", () => {
    const desired = byKind({});
    expect(summary(namespaceWork(input({ handlers: [a, b], desired, recheck: new Set(["b"]) }))).map((s) => s.kind)).toEqual(["b"]);
    const w = namespaceWork(input({ handlers: [a, b], desired, always: new Set(["a"]), complete: (k) => k !== "a" }));
    expect(w.work.map((x) => [x.handler.kind, x.request.complete])).toEqual([["a", false]]);
  });

  it("a benched kind is not called; all its resources count as held, and what it last applied stays its last applied", () => {
    const applied = byKind({ a: { x: { v: 1 } }, b: { y: { v: 1 }, gone: { v: 1 } } });
    const desired = byKind({ a: { x: { v: 2 } }, b: { y: { v: 2 } } });
    const w = namespaceWork(input({ handlers: [a, b], desired, applied, full: true, benched: new Set(["b"]) }));
    expect(summary(w)).toEqual([{ kind: "a", changed: ["x"], removed: [], held: [], full: true }]);
    expect(w.held).toEqual(["b/y"]);
    expect(w.heldByKind.get("b")).toEqual(new Set(["y"]));

    const after = appliedAfter({ desired: w.desired, heldByKind: w.heldByKind }, { applied, appliedHeld: new Map() }, new Set(["b"]));
    expect(after.applied.get("a")).toBe(desired.get("a"));
    // b's "gone" is still b's to remove once it is called again.
    expect(after.applied.get("b")).toBe(applied.get("b"));
    expect(after.appliedHeld.has("b")).toBe(false);
  });
});
