import { describe, expect, it } from "vitest";
import type { ByKind } from "./desired-state.js";
import { failureScope, resourcesNamedBy } from "./failure-scope.js";

const byKind = (entries: Record<string, string[]>): ByKind => new Map(Object.entries(entries).map(([k, ids]) => [k, new Map(ids.map((id) => [id, {}]))]));
const desired = byKind({ port: ["p1", "p2"], chain_set: ["c1", "c2"] });
const coded = (code: string, cause?: unknown) => Object.assign(new Error(code, cause === undefined ? {} : { cause }), { code });

describe("failureScope", () => {
  it("resources the error names are to blame first", () => {
    const error = Object.assign(new Error("line 3 failed"), { resource: "port/p2" });
    const culprits = resourcesNamedBy(error, desired, new Map());
    expect(failureScope({ error, failingKind: "chain_set", culprits, desired, held: new Map() })).toEqual({ scope: "resources", resources: [{ kind: "port", id: "p2" }], named: true });
  });

  it("a handler that threw naming none: its resources not held yet, else the handler itself", () => {
    const error = new Error("backend unreachable");
    expect(failureScope({ error, failingKind: "chain_set", culprits: [], desired, held: new Map([["chain_set", new Set(["c1"])]]) })).toEqual({
      scope: "resources",
      resources: [{ kind: "chain_set", id: "c2" }],
      named: false,
    });
    expect(failureScope({ error, failingKind: "chain_set", culprits: [], desired, held: new Map([["chain_set", new Set(["c1", "c2"])]]) })).toEqual({ scope: "handler", kind: "chain_set" });
    // Nothing of its kind here (a home namespace, removals only): the handler.
    expect(failureScope({ error, failingKind: "router", culprits: [], desired, held: new Map() })).toEqual({ scope: "handler", kind: "router" });
    // MANAGER_CONFLICT is the asking handler's.
    expect(failureScope({ error: coded("MANAGER_CONFLICT"), failingKind: "router", culprits: [], desired, held: new Map() })).toEqual({ scope: "handler", kind: "router" });
  });

  it("the namespace's or the kernel's troubles, and failures after the handlers, retry the namespace", () => {
    for (const code of ["NAMESPACE_GONE", "SAVE_FAILED", "XTABLES_LOCK", "RESTORE_FAILED"]) {
      expect(failureScope({ error: coded(code), failingKind: "chain_set", culprits: [], desired, held: new Map() })).toEqual({ scope: "namespace" });
    }
    expect(failureScope({ error: coded("HANDLER_WRAP", coded("SAVE_FAILED")), failingKind: "chain_set", culprits: [], desired, held: new Map() })).toEqual({ scope: "namespace" });
    expect(failureScope({ error: new Error("x"), failingKind: undefined, culprits: [], desired, held: new Map() })).toEqual({ scope: "namespace" });
  });
});
