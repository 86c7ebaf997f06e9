import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseRouterStep } from "./reference-router-step.js";
import { listReferenceScenarios, loadReferenceScenario, loadReferenceScenarios, referenceDir } from "./reference-scenario.js";

const dir = mkdtempSync(join(tmpdir(), "cw-refscen-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const write = (name: string, input: unknown, expected: string) => {
  writeFileSync(join(dir, `${name}.json`), JSON.stringify(input));
  writeFileSync(join(dir, `${name}.expected.txt`), expected);
};
write("l3_b", { kind: "l3", steps: [{ op: "remove_router", router_id: "r1" }] }, "=== after step 1: remove_router ===\n");
write("l3_a", { kind: "l3", description: "one router", steps: [{ op: "add_router", router: { id: "r1" } }] }, "=== after step 1: add_router ===\n--- router r1: iptables-save ---\n*filter\nCOMMIT\n");
write("l2_x", { kind: "l2", steps: [{ op: "add_ports" }, { op: "remove_ports" }] }, "=== after step 1: add_ports ===\n");

describe("reference scenarios", () => {
  it("the shared reference is checked out beside the repository", () => {
    expect(listReferenceScenarios(referenceDir(), "l3_")).toContain("l3_seed_router_fip");
  });

  it("lists and loads scenarios by prefix, parsing their steps", () => {
    expect(listReferenceScenarios(dir, "l3_")).toEqual(["l3_a", "l3_b"]);
    const [a, b] = loadReferenceScenarios(dir, "l3_", { kind: "l3", parseStep: (raw, where) => parseRouterStep(raw, where)! });
    expect(a).toMatchObject({ name: "l3_a", description: "one router", steps: [{ op: "add_router", routers: [{ id: "r1" }] }] });
    expect(a!.expected[0]!.routers.get("r1")).toEqual({ iptables: "*filter\nCOMMIT\n", ip6tables: "" });
    expect(b).toMatchObject({ description: "", steps: [{ op: "remove_router", routerIds: ["r1"] }] });
  });

  it("says what is wrong: a missing directory, another kind, steps and blocks that disagree", () => {
    expect(() => listReferenceScenarios(join(dir, "nope"))).toThrow(/scenario directory .*nope does not exist/);
    expect(() => loadReferenceScenario(dir, "l2_x", { kind: "l3" })).toThrow('l2_x.json: kind "l2" is not l3');
    expect(() => loadReferenceScenario(dir, "l2_x")).toThrow("l2_x: 2 steps but 1 expected blocks");
  });

  it("parseRouterStep reads router steps and leaves other ops alone", () => {
    expect(parseRouterStep({ op: "update_router", routers: [{ id: "a" }] }, "w")).toEqual({ op: "update_router", routers: [{ id: "a" }] });
    expect(parseRouterStep({ op: "remove_router", router_ids: ["a", "b"] }, "w")).toEqual({ op: "remove_router", routerIds: ["a", "b"] });
    expect(parseRouterStep({ op: "fwg_create" }, "w")).toBeUndefined();
    expect(() => parseRouterStep({ op: "add_router" }, "s.json steps.0")).toThrow("s.json steps.0: add_router without router(s)");
  });
});
