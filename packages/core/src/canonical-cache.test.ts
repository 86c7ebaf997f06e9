import { describe, expect, it } from "vitest";
import { CanonicalCache } from "./canonical-cache.js";
import { IptablesManager } from "./iptables-manager.js";
import type { IptablesRunner } from "./iptables-runner.js";

// The manager only needs a runner to apply; these tests never apply.
const runner = {} as IptablesRunner;

describe("CanonicalCache", () => {
  it("keeps texts apart by family, strictness and comment, and starts over past its limit", () => {
    const c = new CanonicalCache(3);
    c.set(4, false, "-p 6 -j ACCEPT", undefined, "-p tcp -j ACCEPT");
    c.set(6, false, "-p 6 -j ACCEPT", undefined, "-p tcp -j ACCEPT (6)");
    c.set(4, false, "-j DROP", "a comment", "-m comment --comment \"a comment\" -j DROP");
    expect(c.get(4, false, "-p 6 -j ACCEPT", undefined)).toBe("-p tcp -j ACCEPT");
    expect(c.get(6, false, "-p 6 -j ACCEPT", undefined)).toBe("-p tcp -j ACCEPT (6)");
    expect(c.get(4, true, "-p 6 -j ACCEPT", undefined)).toBeUndefined();
    expect(c.get(4, false, "-j DROP", undefined)).toBeUndefined();
    expect(c.size).toBe(3);
    // The limit is per map: the IPv4 one holds 3 now, the next one starts it over.
    c.set(4, false, "-j RETURN", undefined, "-j RETURN");
    c.set(4, false, "-j QUEUE", undefined, "-j QUEUE");
    expect(c.get(4, false, "-j QUEUE", undefined)).toBe("-j QUEUE");
    expect(c.get(4, false, "-p 6 -j ACCEPT", undefined)).toBeUndefined();
    expect(c.get(6, false, "-p 6 -j ACCEPT", undefined)).toBe("-p tcp -j ACCEPT (6)");
    c.clear();
    expect(c.size).toBe(0);
  });

  it("resolve computes once, stores what it computed, and stores nothing when the computation throws", () => {
    const c = new CanonicalCache();
    let calls = 0;
    const compute = () => {
      calls++;
      return "-p tcp -j ACCEPT";
    };
    expect(c.resolve(4, false, "-p 6 -j ACCEPT", "c", compute)).toBe("-p tcp -j ACCEPT");
    expect(c.resolve(4, false, "-p 6 -j ACCEPT", "c", compute)).toBe("-p tcp -j ACCEPT");
    expect(calls).toBe(1);
    // The same key as get/set use.
    expect(c.get(4, false, "-p 6 -j ACCEPT", "c")).toBe("-p tcp -j ACCEPT");
    expect(c.get(4, false, "-p 6 -j ACCEPT", undefined)).toBeUndefined();
    expect(() =>
      c.resolve(6, true, "-p nope", undefined, () => {
        throw new Error("bad rule");
      }),
    ).toThrow("bad rule");
    expect(c.get(6, true, "-p nope", undefined)).toBeUndefined();
    expect(c.size).toBe(1);
  });

  it("managers fill the cache they are given (the process's shared one by default)", () => {
    const own = new CanonicalCache();
    const m = new IptablesManager({ runner, namespace: "ns", canonicalCache: own });
    const before = own.size;
    m.table(4, "filter").addChain("c");
    m.table(4, "filter").addRule("c", "-s 10.9.8.7 -j ACCEPT");
    expect(own.size).toBe(before + 1);
    expect(own.get(4, false, "-s 10.9.8.7 -j ACCEPT", undefined)).toBe("-s 10.9.8.7/32 -j ACCEPT");
    const shared = CanonicalCache.shared.size;
    new IptablesManager({ runner, namespace: "ns2" }).table(4, "filter").addRule("INPUT", "-s 10.9.8.6 -j ACCEPT");
    expect(CanonicalCache.shared.size).toBeGreaterThan(shared);
  });
});
