/**
 * The built l2-agent binary: its own flags and defaults, and `--netns` as the namespace for
 * resources that name none (real kernel, a namespace of the test's own).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createNetns, isRoot } from "@chainwarden/testing";
import { afterAll, describe, expect, it } from "vitest";
import { runCli } from "@chainwarden/testing";

const BIN = fileURLToPath(new URL("../bin/l2-agent.js", import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), "l2-agent-cli-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe.concurrent("l2-agent", () => {
  it("--help shows the l2 flags with Neutron's defaults and that no plugin is built in yet", async () => {
    const r = await runCli(BIN, ["--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^l2-agent \d+\.\d+\.\d+: /);
    expect(r.stdout).toContain("--netns NETNS");
    expect(r.stdout).toContain("config key: netns; default: (none)");
    expect(r.stdout).toContain("config key: wrap_name; default: neutron-linuxbri");
    expect(r.stdout).toContain("--[no-]enable-ipset");
    expect(r.stdout).toContain("config key: enable_ipset; default: true");
    expect(r.stdout).toContain("config key: firewall_driver; default: iptables");
    expect(r.stdout).toContain("built in: l2-secgroup");
    expect(r.stdout).not.toContain("--namespace-prefix");
  });

  it("--version", async () => {
    const r = await runCli(BIN, ["--version"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^l2-agent \d+\.\d+\.\d+ \(@chainwarden\/agent /);
  });

  it("rejects an unknown firewall driver and a bad --netns, listing both", async () => {
    const r = await runCli(BIN, ["plan", "--firewall-driver", "openvswitch", "--netns", "../etc"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("invalid configuration (2 problems)");
    expect(r.stderr).toMatch(/--firewall-driver firewall_driver: /);
    expect(r.stderr).toMatch(/--netns netns: not a valid network namespace name/);
  });

  it.skipIf(!isRoot())("apply --once --netns NS programs resources without a namespace into NS", async () => {
    const ns = await createNetns("cw-l2");
    try {
      const state = join(tmp, "state.yaml");
      writeFileSync(state, ["chain_sets:", "  - id: lab", "    rules:", '      - "-s 192.168.10.0/24 -j ACCEPT"', ""].join("\n"));
      const config = join(tmp, "l2-agent.json");
      writeFileSync(config, JSON.stringify({ plugins: [{ package: "@chainwarden/example-plugin-static-chains" }], use_ipv6: false }));
      const r = await runCli(BIN, ["apply", "--once", "--config", config, "--state", state, "--netns", ns.name]);
      expect(r.code, r.stderr).toBe(0);
      const saved = (await ns.exec(["iptables-save"])).stdout;
      expect(saved).toContain("-A neutron-linuxbri-INPUT -j neutron-linuxbri-cs-lab\n");
      expect(saved).toContain("-A neutron-linuxbri-cs-lab -s 192.168.10.0/24 -j ACCEPT\n");
      expect((await ns.exec(["ip6tables-save"])).stdout).not.toContain("neutron-linuxbri");
    } finally {
      await ns.delete();
    }
  });
});
