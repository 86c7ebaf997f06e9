/**
 * Golden tests on the fake host (the honest fakes of iptables, ipset and conntrack): every `l2_*`
 * scenario of the shared reference (real Neutron Zed output) and every scenario of our own fixtures
 * (outputs produced by Debian's python3-neutron 21.0.0), replayed step by step; after each step the
 * normalized iptables-save, ip6tables-save, ipset save and conntrack deletions must equal the
 * expected block.
 */
import { FakeHost, listReferenceScenarios, referenceDir } from "@chainwarden/testing";
import { describe, expect, it } from "vitest";
import { replayScenario } from "./test-support/replay.js";
import { FIXTURE_DIR, loadScenario } from "./test-support/scenario.js";

const SOURCES = [
  { dir: referenceDir(), names: listReferenceScenarios(referenceDir(), "l2_") },
  { dir: FIXTURE_DIR, names: listReferenceScenarios(FIXTURE_DIR) },
];

describe("the shared reference has l2 scenarios", () => {
  it("finds them", () => {
    expect(SOURCES[0]!.names.length).toBeGreaterThanOrEqual(2);
  });
});

describe.each(["nft", "legacy"] as const)("golden scenarios on the fake host (%s)", (variant) => {
  for (const { dir, names } of SOURCES) {
    describe.each(names)("%s", (name) => {
      it("matches real Neutron after every step, and a second apply sends nothing", async () => {
        const { scenario, expected } = loadScenario(dir, name);
        const namespace = "golden";
        const host = new FakeHost({ variant, namespaces: [namespace] });
        const outputs = await replayScenario(scenario, {
          runner: host,
          namespace,
          ipsetSave: async () => host.ipset.dump(namespace),
          conntrack: true,
        });
        outputs.forEach((out, i) => {
          const want = expected[i]!;
          expect(out.problems, `step ${i + 1}`).toEqual([]);
          expect(out.secondLines, `step ${i + 1}: a second apply of the same state`).toBe(0);
          for (const [section, text] of Object.entries(want.sections)) {
            expect(out.sections[section], `${name} step ${i + 1} (${want.label}) ${section}`).toBe(text);
          }
        });
      });
    });
  }
});
