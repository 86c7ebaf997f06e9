/**
 * The seed document (packages/testing/test-fixtures/seeds/002_e4aa6c92554ec131.txt) lists the
 * OVS-hybrid filter table an older Neutron wrote for one port in the default group. For the same
 * input (with the old server's DHCP rule attached to the port, and comments off, as that Neutron had
 * none) every rule it shows must be in ours; comment text and the INVALID/ESTABLISHED order follow Zed.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { normalizeSave } from "@chainwarden/core";
import { FakeHost } from "@chainwarden/testing";
import { describe, expect, it } from "vitest";
import { replayScenario } from "./test-support/replay.js";
import { FIXTURE_DIR, loadScenario } from "./test-support/scenario.js";

const SEED = join(import.meta.dirname, "../../testing/test-fixtures/seeds/002_e4aa6c92554ec131.txt");

/** The `*filter` listing of the security-group section, normalized like iptables-save 1.8.9 prints it. */
function seedFilterListing(): string[] {
  const text = readFileSync(SEED, "utf8");
  const start = text.indexOf("*filter\n:INPUT ACCEPT [1247508");
  if (start === -1) throw new Error(`the seed's security-group listing was not found in ${SEED}`);
  const end = text.indexOf("COMMIT", start);
  return normalizeSave(text.slice(start, end + "COMMIT".length))
    .split("\n")
    .filter((l) => l !== "" && l !== "*filter" && l !== "COMMIT")
    .map((l) => l.replace(/--mac-source ([0-9A-F:]+)/, (_m, mac: string) => `--mac-source ${mac.toLowerCase()}`));
}

describe("the seed's OVS-hybrid listing", () => {
  it("every rule and chain it shows is in ours for the same input", async () => {
    const { scenario } = loadScenario(FIXTURE_DIR, "hybrid_seed");
    const seedInput = { ...scenario, options: { ...scenario.options, comments: false }, steps: scenario.steps.slice(0, 1) };
    const host = new FakeHost({ namespaces: ["seed"] });
    const [out] = await replayScenario(seedInput, { runner: host, namespace: "seed" });
    const ours = new Set(out!.sections["iptables-save"]!.split("\n"));
    const seed = seedFilterListing();
    expect(seed.length).toBeGreaterThan(30);
    const missing = seed.filter((l) => !ours.has(l));
    expect(missing).toEqual([]);
  });
});
