/**
 * The real-Neutron-server golden tests (see neutron-server-payloads.golden.test.ts) on the real
 * kernel: real iptables-restore (nf_tables and legacy) and ipset in a network namespace each test
 * creates and always deletes; the namespace's iptables-save, ip6tables-save and ipset save must equal
 * real Neutron's for the same server answer. The legacy backend uses a private xtables lock file.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ExecaRunner, type Backend } from "@chainwarden/core";
import { createNetns, isRoot, type TestNetns } from "@chainwarden/testing";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { normalizeIpsetSave } from "./test-support/replay.js";
import { applyPayload, loadServerPayload, SERVER_PAYLOADS } from "./test-support/server-payload.js";

describe.each(["nft", "legacy"] as Backend[])("real Neutron server payloads on the real kernel (%s)", (backend) => {
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

  describe.each(SERVER_PAYLOADS)("%s", (name) => {
    it.each([false, true])("equals real Neutron's rules for the same answer (enable_ipset %s)", async (enableIpset) => {
      const { payload, expected } = loadServerPayload(name, enableIpset);
      netns = await createNetns("cw-l2srv");
      const namespace = netns.name;
      const out = await applyPayload(payload, {
        runner,
        namespace,
        enableIpset,
        ipsetSave: async () => normalizeIpsetSave((await runner.exec("ipset", ["save"], { namespace })).stdout),
      });
      expect(out.problems).toEqual([]);
      expect(out.secondLines, "a second apply of the same state").toBe(0);
      expect(Object.keys(out.sections).sort()).toEqual(Object.keys(expected.sections).sort());
      for (const [section, text] of Object.entries(expected.sections)) {
        expect(out.sections[section], `${name} ${section}`).toBe(text);
      }
    });
  });
});
