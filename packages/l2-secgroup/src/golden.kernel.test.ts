/**
 * Golden tests on the real kernel: the same scenarios as golden.test.ts, applied with real
 * iptables-restore (nf_tables and legacy), ipset and conntrack in a network namespace each test
 * creates and always deletes; the namespace's iptables-save, ip6tables-save and ipset save must equal
 * real Neutron's after every step. The legacy backend uses a private xtables lock file.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ExecaRunner, type Backend } from "@chainwarden/core";
import { createNetns, isRoot, listReferenceScenarios, referenceDir, type TestNetns } from "@chainwarden/testing";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { normalizeIpsetSave, replayScenario } from "./test-support/replay.js";
import { FIXTURE_DIR, loadScenario } from "./test-support/scenario.js";

const SOURCES = [
  { dir: referenceDir(), names: listReferenceScenarios(referenceDir(), "l2_") },
  { dir: FIXTURE_DIR, names: listReferenceScenarios(FIXTURE_DIR) },
];

describe.each(["nft", "legacy"] as Backend[])("golden scenarios on the real kernel (%s)", (backend) => {
  let lockDir: string;
  let runner: ExecaRunner;
  let netns: TestNetns | undefined;

  beforeAll(() => {
    if (!isRoot()) throw new Error("these tests program iptables in network namespaces: run them as root");
    lockDir = mkdtempSync(join(tmpdir(), "cw-l2sg-xtables-"));
    writeFileSync(join(lockDir, "xtables.lock"), "");
    runner = new ExecaRunner({ backend, env: { XTABLES_LOCKFILE: join(lockDir, "xtables.lock") } });
  });
  afterEach(async () => {
    await netns?.delete();
    netns = undefined;
  });
  afterAll(() => rmSync(lockDir, { recursive: true, force: true }));

  for (const { dir, names } of SOURCES) {
    describe.each(names)("%s", (name) => {
      it("equals real Neutron's output after every step", async () => {
        const { scenario, expected } = loadScenario(dir, name);
        netns = await createNetns("cw-l2sg");
        const ns = netns.name;
        const outputs = await replayScenario(scenario, {
          runner,
          namespace: ns,
          ipsetSave: async () => normalizeIpsetSave((await runner.exec("ipset", ["save"], { namespace: ns })).stdout),
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
