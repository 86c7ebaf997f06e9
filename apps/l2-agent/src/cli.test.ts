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
import { AgentProcess, freePort, runCli, waitFor } from "@chainwarden/testing";

const BIN = fileURLToPath(new URL("../bin/l2-agent.js", import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), "l2-agent-cli-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe.concurrent("l2-agent", () => {
  it("--help shows the l2 flags with Neutron's defaults and the built-in plugins", async () => {
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

  // iptables: the port handler declares its neutron-linuxbri manager stateless, which the plugin shares;
  // iptables_hybrid: the ports' manager is neutron-openvswi, and the plugin's is stateless by the app's default.
  for (const driver of ["iptables", "iptables_hybrid"]) {
    it.skipIf(!isRoot())(`${driver}: a plugin's chains beside the ports and in a namespace of their own get stateless managers, no nat or mangle chains (issue 19)`, async () => {
      const ns = await createNetns("cw-l2p");
      const away = await createNetns("cw-l2q");
      try {
        const port = "1b0c0d0e-0000-4000-8000-000000000019";
        const tap = `tap${port.slice(0, 11)}`;
        await ns.exec(["ip", "tuntap", "add", "dev", tap, "mode", "tap"]);
        const state = join(tmp, `shared-${driver}.json`);
        writeFileSync(
          state,
          JSON.stringify({
            chain_sets: [
              { id: "lab", rules: ["-s 192.168.10.0/24 -j ACCEPT"] },
              { id: "away", namespace: away.name, rules: ["-s 192.168.20.0/24 -j ACCEPT"] },
            ],
            devices: {
              [port]: { device: tap, mac_address: "fa:16:3e:00:00:19", fixed_ips: ["10.0.0.19"], network_id: "n19", device_owner: "compute:nova", security_groups: ["sg"] },
            },
            security_groups: { sg: [{ direction: "egress", ethertype: "IPv4" }] },
          }),
        );
        const config = join(tmp, `shared-${driver}.config.json`);
        writeFileSync(config, JSON.stringify({ plugins: [{ package: "@chainwarden/example-plugin-static-chains" }], use_ipv6: false, enable_ipset: false, firewall_driver: driver }));
        const r = await runCli(BIN, ["apply", "--once", "--config", config, "--state", state, "--netns", ns.name]);
        expect(r.code, r.stderr).toBe(0);
        const here = (await ns.exec(["iptables-save"])).stdout;
        expect(here).toContain("-A neutron-linuxbri-cs-lab -s 192.168.10.0/24 -j ACCEPT\n");
        expect(here).toContain(driver === "iptables" ? ":neutron-linuxbri-sg-chain" : ":neutron-openvswi-sg-chain");
        const there = (await away.exec(["iptables-save"])).stdout;
        expect(there).toContain("-A neutron-linuxbri-cs-away -s 192.168.20.0/24 -j ACCEPT\n");
        for (const saved of [here, there]) {
          expect(saved).not.toContain("*nat");
          expect(saved).not.toContain("*mangle");
          expect(saved).not.toContain("float-snat");
        }
      } finally {
        await ns.delete();
        await away.delete();
      }
    });
  }

  it.skipIf(!isRoot())("run serves /healthz, /readyz and the build info beside /metrics", async () => {
    const ns = await createNetns("cw-l2h");
    let daemon: AgentProcess | undefined;
    try {
      const state = join(tmp, "health.yaml");
      writeFileSync(state, ["chain_sets:", "  - id: web", "    rules:", '      - "-j ACCEPT"', ""].join("\n"));
      const config = join(tmp, "health.json");
      writeFileSync(config, JSON.stringify({ plugins: [{ package: "@chainwarden/example-plugin-static-chains" }], use_ipv6: false }));
      const port = await freePort();
      daemon = new AgentProcess(BIN, ["run", "--config", config, "--state", state, "--netns", ns.name, "--metrics-address", String(port)]);
      const base = `http://127.0.0.1:${port}`;
      const ready = await waitFor(
        async () => {
          const r = await fetch(`${base}/readyz`).catch(() => undefined);
          return r?.status === 200 ? ((await r.json()) as Record<string, unknown>) : undefined;
        },
        "ready",
        15_000,
        () => daemon!.running,
      );
      expect(ready).toEqual({ ok: true, reasons: [], phase: "running", synced: true, stateRead: true, sources: [{ name: "file", delivered: true }] });
      const live = await fetch(`${base}/healthz`);
      expect(live.status).toBe(200);
      expect(await live.json()).toMatchObject({ ok: true, reasons: [], loop: "running" });
      const metrics = await (await fetch(`${base}/metrics`)).text();
      expect(metrics).toMatch(/^chainwarden_build_info\{app="l2-agent",version="[^"]+",backend="(nft|legacy)",plugins="l2-secgroup@[^"]+,neutron-l2-rpc@[^"]+,static-chains@[^"]+"\} 1$/m);
      expect(metrics).toMatch(/^process_start_time_seconds \d+/m);
      daemon.signal("SIGTERM");
      expect((await daemon.exited).code, daemon.describe()).toBe(0);
    } finally {
      await daemon?.kill();
      await ns.delete();
    }
  });
});
