import { describe, expect, it } from "vitest";
import { parseChainSets } from "./chain-set.js";

describe("parseChainSets", () => {
  it("reads valid chain sets by id", () => {
    const { resources, problems } = parseChainSets(
      { chain_sets: [{ id: "web", namespace: "ns-a", rules: ["-s 10.0.0.0/8 -j ACCEPT"] }, { id: "db", rules: [] }] },
      "state.json",
    );
    expect(problems).toEqual([]);
    expect([...resources.keys()]).toEqual(["web", "db"]);
    expect(resources.get("web")).toEqual({ id: "web", namespace: "ns-a", rules: ["-s 10.0.0.0/8 -j ACCEPT"] });
    expect(resources.get("db")!.namespace).toBeUndefined();
  });

  it("has nothing to say about documents without chain_sets", () => {
    expect(parseChainSets({ routers: [] }, "s.yaml")).toEqual({ resources: new Map(), problems: [] });
  });

  it("reports a chain_sets that is not a list", () => {
    const { resources, problems } = parseChainSets({ chain_sets: { web: {} } }, "s.yaml");
    expect(resources.size).toBe(0);
    expect(problems).toEqual([{ source: "s.yaml", path: "chain_sets", message: "expected an array of chain sets" }]);
  });

  it("reports each bad entry naming its resource and keeps the good ones", () => {
    const { resources, problems } = parseChainSets(
      {
        chain_sets: [
          { id: "good", namespace: "ns-a", rules: ["-p tcp --dport 22 -j ACCEPT"] },
          { id: "much-too-long", rules: [] },
          { id: "badns", namespace: "-oops", rules: [] },
          { id: "badrule", namespace: "ns-a", rules: ["-s 10.0.0.0/8 -j ACCEPT", "-s not-an-address -j DROP"] },
          { id: "jumper", rules: ["-j some-other-chain"] },
          { id: "extra", rules: [], colour: "red" },
          { id: "good", rules: [] },
          "not an object",
        ],
      },
      "state.json",
    );
    expect([...resources.keys()]).toEqual(["good"]);
    const byResource = (r: string) => problems.filter((p) => p.resource === r);
    expect(byResource("much-too-long")).toMatchObject([{ source: "state.json", path: "chain_sets.1.id" }]);
    expect(byResource("badns")).toMatchObject([{ path: "chain_sets.2.namespace", message: "not a valid network namespace name" }]);
    expect(byResource("badrule")).toMatchObject([{ path: "chain_sets.3.rules.1" }]);
    expect(byResource("badrule")[0]!.message).toMatch(/not-an-address/);
    expect(byResource("jumper")).toMatchObject([{ path: "chain_sets.4.rules.0" }]);
    expect(byResource("jumper")[0]!.message).toMatch(/target some-other-chain is not allowed/);
    expect(byResource("extra")).toMatchObject([{ path: "chain_sets.5" }]);
    expect(byResource("good")).toMatchObject([{ path: "chain_sets.6.id", message: 'duplicate chain set id "good"' }]);
    expect(problems.filter((p) => p.path === "chain_sets.7")).toEqual([{ source: "state.json", path: "chain_sets.7", message: expect.any(String) }]);
  });
});
