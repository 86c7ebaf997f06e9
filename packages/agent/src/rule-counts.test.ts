import { IptablesManager } from "@chainwarden/core";
import { FakeIptablesRunner } from "@chainwarden/testing";
import { describe, expect, it } from "vitest";
import { AgentMetrics } from "./agent-metrics.js";
import { countRules, RuleTotals } from "./rule-counts.js";
import { metricValue } from "./rule-set-handler.test-support.js";

function manager(useIpv6: boolean) {
  return new IptablesManager({ runner: new FakeIptablesRunner({ variant: "nft" }), wrapName: "cw-count", useIpv6 });
}

describe("countRules", () => {
  it("counts what the managers want per family and table: a chain and its rules, plus the jump to it", () => {
    const empty = countRules([manager(true)]);
    const m = manager(true);
    m.ipv4.filter!.addChain("one");
    m.ipv4.filter!.addRule("INPUT", "-j $one");
    m.ipv4.filter!.addRule("one", "-s 10.0.0.1/32 -j ACCEPT");
    m.ipv4.filter!.addRule("one", "-j DROP");
    const counts = countRules([m]);
    expect(counts.get("ipv4/filter")).toEqual({ rules: empty.get("ipv4/filter")!.rules + 3, chains: empty.get("ipv4/filter")!.chains + 1 });
    expect(counts.get("ipv6/filter")).toEqual(empty.get("ipv6/filter"));
    expect([...countRules([manager(false)]).keys()].every((k) => k.startsWith("ipv4/"))).toBe(true);
    // Two managers add up.
    expect(countRules([m, manager(true)]).get("ipv4/nat")!.chains).toBe(2 * empty.get("ipv4/nat")!.chains);
  });
});

describe("RuleTotals", () => {
  it("sums namespaces' counts into the gauges; a namespace's new count replaces its old one", async () => {
    const metrics = new AgentMetrics();
    const totals = new RuleTotals(metrics);
    totals.set("ns-a", new Map([["ipv4/filter", { rules: 5, chains: 2 }]]));
    totals.set("ns-b", new Map([["ipv4/filter", { rules: 3, chains: 1 }], ["ipv6/nat", { rules: 1, chains: 1 }]]));
    expect(totals.get("ipv4/filter")).toEqual({ rules: 8, chains: 3 });
    expect(await metricValue(metrics, "chainwarden_rules", { family: "ipv4", table: "filter" })).toBe(8);
    expect(await metricValue(metrics, "chainwarden_chains", { family: "ipv6", table: "nat" })).toBe(1);

    totals.set("ns-a", new Map([["ipv4/filter", { rules: 1, chains: 1 }]]));
    expect(totals.get("ipv4/filter")).toEqual({ rules: 4, chains: 2 });
    totals.set("ns-b", new Map());
    expect(totals.get("ipv4/filter")).toEqual({ rules: 1, chains: 1 });
    expect(await metricValue(metrics, "chainwarden_rules", { family: "ipv6", table: "nat" })).toBe(0);
  });
});
