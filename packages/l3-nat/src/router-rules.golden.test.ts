import { randomBytes } from "node:crypto";
import { addNamespace, deleteNamespace, ExecaRunner, listNamespaces, type Backend } from "@chainwarden/core";
import { FakeIptablesRunner, isRoot, referenceDir } from "@chainwarden/testing";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadL3Scenarios, type L3Scenario } from "./test-support/reference-scenario.js";
import { replayL3Scenario, type ScenarioHost } from "./test-support/scenario-driver.js";

/**
 * Golden tests: every `l3_*` scenario of the Neutron reference (`referenceDir()`, real Neutron Zed's
 * output) and of our own `test-fixtures/neutron` (produced the same way by Debian's python3-neutron
 * 21.0.0, see its README) replayed step by step must give the same normalized iptables-save /
 * ip6tables-save per router, on the honest fake and on the real kernel (both backends).
 */
const scenarios = loadL3Scenarios([referenceDir(), join(import.meta.dirname, "../test-fixtures/neutron")]);

/**
 * Neutron iterates a Python set for the address-scope MARK rules of mangle `float-snat`, so their
 * order in its output is arbitrary (hash seed); ours follows the ports. They are compared as a set.
 */
function unordered(save: string): string {
  const lines = save.split("\n");
  const arbitrary = (l: string) => /^-A neutron-l3-agent-float-snat -o \S+ -j MARK /.test(l);
  const sorted = lines.filter(arbitrary).sort();
  return lines.map((l) => (arbitrary(l) ? sorted.shift()! : l)).join("\n");
}

function compare(scenario: L3Scenario, actual: Awaited<ReturnType<typeof replayL3Scenario>>): void {
  scenario.expected.forEach((want, i) => {
    const got = actual[i]!;
    expect([...got.routers.keys()].sort(), `${want.title}: routers`).toEqual([...want.routers.keys()].sort());
    for (const [id, sections] of want.routers) {
      expect(unordered(got.routers.get(id)!.iptables), `${want.title}: router ${id} iptables-save`).toBe(unordered(sections.iptables));
      expect(got.routers.get(id)!.ip6tables, `${want.title}: router ${id} ip6tables-save`).toBe(sections.ip6tables);
    }
  });
}

describe.each(["nft", "legacy"] as const)("golden l3 scenarios against the fake (%s)", (variant) => {
  it.each(scenarios.map((s) => [s.name, s] as const))("%s", async (_name, scenario) => {
    const runner = new FakeIptablesRunner({ variant });
    const host: ScenarioHost = {
      runner,
      namespaceOf: (id) => `qrouter-${id}`,
      createNamespace: async (ns) => runner.addNamespace(ns),
      deleteNamespace: async (ns) => runner.deleteNamespace(ns),
    };
    compare(scenario, await replayL3Scenario(scenario, host));
  });
});

describe.runIf(isRoot()).each(["nft", "legacy"] as Backend[])("golden l3 scenarios on the kernel (%s)", (backend) => {
  it.each(scenarios.map((s) => [s.name, s] as const))("%s", async (_name, scenario) => {
    const runner = new ExecaRunner({ backend });
    // A prefix of our own: the namespaces are this test's alone, and all of them go at the end.
    const prefix = `cwg${randomBytes(3).toString("hex")}-`;
    const host: ScenarioHost = {
      runner,
      namespaceOf: (id) => `${prefix}${id}`,
      createNamespace: (ns) => addNamespace(runner, ns),
      deleteNamespace: (ns) => deleteNamespace(runner, ns),
    };
    try {
      compare(scenario, await replayL3Scenario(scenario, host));
    } finally {
      for (const ns of (await listNamespaces(runner)).filter((n) => n.startsWith(prefix))) await deleteNamespace(runner, ns);
    }
  });
});
