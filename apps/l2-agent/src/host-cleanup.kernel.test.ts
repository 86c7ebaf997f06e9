/**
 * Removing ports leaves the host as it was (issue 20). The built l2-agent (`apply --once --netns`)
 * filters a realistic set of ports on a bridge (stateful groups with conntrack zones, a remote group
 * as ipsets, port security off for one, a trusted device), then a state without them; the host's
 * devices, namespaces, ipsets, iptables rules, processes and files are compared before and after
 * ("before": the agent has run once without ports, which leaves Neutron's empty layout of chains and
 * nothing else; that layout is checked against a pristine namespace too).
 * The "host" is a namespace of the test's (`--netns`): the real host's namespace is never touched;
 * the bridge and taps (Nova's and the l2 agent's part) are the test's own, made before "before".
 * Teardown (also on failure) kills a leftover agent, deletes the namespace and the directory.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Cleanups, createNetns, filesUnder, isRoot, listNetns, pidsMentioning, runCli, type TestNetns } from "@chainwarden/testing";
import { afterEach, describe, expect, it } from "vitest";

const APP_DIR = fileURLToPath(new URL("..", import.meta.url));
const BIN = join(APP_DIR, "bin", "l2-agent.js");

// Last in, first out: agents go before their namespaces and files.
const cleanups = new Cleanups();
afterEach(() => cleanups.run());


const NETWORK = "hc0a0a0a-0000-4000-8000-000000000001";
const BRIDGE = `brq${NETWORK.slice(0, 11)}`;
const TARGET = "hc-target";
const CLIENTS = "hc-clients";
const PORTS = [
  { id: "hc000001-0000-4000-8000-000000000001", tap: "taphc000001-00", ip: "10.0.0.1", mac: "fa:16:3e:d1:00:01", group: TARGET, security: true },
  { id: "hc000002-0000-4000-8000-000000000002", tap: "taphc000002-00", ip: "10.0.0.2", mac: "fa:16:3e:d1:00:02", group: CLIENTS, security: true },
  { id: "hc000003-0000-4000-8000-000000000003", tap: "taphc000003-00", ip: "10.0.0.3", mac: "fa:16:3e:d1:00:03", group: CLIENTS, security: true },
  { id: "hc000004-0000-4000-8000-000000000004", tap: "taphc000004-00", ip: "10.0.0.4", mac: "fa:16:3e:d1:00:04", group: CLIENTS, security: false },
];
const TRUSTED = "taphcdhcp000-0";
const GROUPS = {
  [TARGET]: [
    { direction: "egress", ethertype: "IPv4" },
    { direction: "egress", ethertype: "IPv6" },
    { direction: "ingress", ethertype: "IPv4", protocol: "tcp", port_range_min: 22, port_range_max: 22 },
    { direction: "ingress", ethertype: "IPv4", protocol: "tcp", port_range_min: 5000, port_range_max: 5000, remote_group_id: CLIENTS },
    { direction: "ingress", ethertype: "IPv6", protocol: "tcp", port_range_min: 5000, port_range_max: 5000, remote_group_id: CLIENTS },
  ],
  [CLIENTS]: [
    { direction: "egress", ethertype: "IPv4" },
    { direction: "ingress", ethertype: "IPv4", protocol: "icmp", remote_group_id: TARGET },
  ],
};

function ports() {
  return {
    devices: Object.fromEntries(
      PORTS.map((p) => [
        p.id,
        {
          device: p.tap,
          mac_address: p.mac,
          fixed_ips: [p.ip],
          network_id: NETWORK,
          device_owner: "compute:nova",
          port_security_enabled: p.security,
          security_groups: p.security ? [p.group] : [],
          allowed_address_pairs: [],
        },
      ]),
    ),
    security_groups: GROUPS,
    sg_member_ips: {
      [CLIENTS]: { IPv4: PORTS.filter((p) => p.group === CLIENTS).map((p) => [p.ip, p.mac]), IPv6: [] },
      [TARGET]: { IPv4: [["10.0.0.1", "fa:16:3e:d1:00:01"]], IPv6: [] },
    },
    trusted_devices: [TRUSTED],
  };
}

describe.skipIf(!isRoot())("l2-agent: removing ports leaves the host as it was", () => {
  it("apply --once filters ports and removes them: devices, namespaces, ipsets, rules, processes and files before = after", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cw-l2-hostcleanup-"));
    cleanups.defer(() => rmSync(dir, { recursive: true, force: true }));
    const host: TestNetns = await createNetns("cw-l2hc");
    cleanups.defer(() => host.delete());
    // The compute host's part: a bridge with the VMs' taps and a DHCP port's tap in it.
    await host.exec(["ip", "link", "add", BRIDGE, "type", "bridge"]);
    await host.exec(["ip", "link", "set", BRIDGE, "up"]);
    for (const tap of [...PORTS.map((p) => p.tap), TRUSTED]) {
      await host.exec(["ip", "tuntap", "add", "dev", tap, "mode", "tap"]);
      await host.exec(["ip", "link", "set", tap, "master", BRIDGE, "up"]);
    }
    const config = join(dir, "l2-agent.yaml");
    writeFileSync(config, `# written by host-cleanup.kernel.test.ts\nstate_path: ${JSON.stringify(join(dir, "state"))}\n`);
    const stateFile = join(dir, "ports.json");
    const args = ["apply", "--once", "--config", config, "--state", stateFile, "--netns", host.name];

    const snapshot = async () => {
      const save = async (tool: string) =>
        (await host.exec([tool]))
          .stdout.split("\n")
          .filter((l) => !l.startsWith("#"))
          .join("\n");
      const links = JSON.parse((await host.exec(["ip", "-j", "link", "show"])).stdout) as { ifname: string; ifalias?: string; master?: string }[];
      return {
        devices: links.map((l) => [l.ifname, l.ifalias ?? "", l.master ?? ""].join(" ").trim()).sort(),
        namespaces: (await listNetns()).filter((n) => n === host.name),
        ipsets: (await host.exec(["ipset", "list", "-n"])).stdout.split("\n").filter(Boolean).sort(),
        iptables: await save("iptables-save"),
        ip6tables: await save("ip6tables-save"),
        processes: pidsMentioning(dir),
        files: filesUnder(dir).filter((f) => f !== "ports.json" && f !== "l2-agent.yaml"),
      };
    };
    const pristine = await snapshot();
    // An agent without ports leaves Neutron's layout (the wrapped chains, sg-chain, sg-fallback: as
    // neutron-linuxbridge-agent keeps them while it runs) and nothing else: that is "before".
    const empty = { devices: {}, security_groups: {}, sg_member_ips: {}, trusted_devices: [] };
    writeFileSync(stateFile, JSON.stringify(empty));
    const first = await runCli(BIN, args, 60_000);
    expect(first.code, first.stderr + first.stdout.slice(-3000)).toBe(0);
    const before = await snapshot();
    expect({ ...before, iptables: "", ip6tables: "" }).toEqual({ ...pristine, iptables: "", ip6tables: "" });
    for (const save of [before.iptables, before.ip6tables]) {
      expect(save.split("\n").filter((l) => l.startsWith("-A "))).toEqual([
        "-A PREROUTING -j neutron-linuxbri-PREROUTING",
        "-A OUTPUT -j neutron-linuxbri-OUTPUT",
        "-A INPUT -j neutron-linuxbri-INPUT",
        "-A FORWARD -j neutron-filter-top",
        "-A FORWARD -j neutron-linuxbri-FORWARD",
        "-A OUTPUT -j neutron-filter-top",
        "-A OUTPUT -j neutron-linuxbri-OUTPUT",
        "-A neutron-filter-top -j neutron-linuxbri-local",
        "-A neutron-linuxbri-sg-chain -j ACCEPT",
        '-A neutron-linuxbri-sg-fallback -m comment --comment "Default drop rule for unmatched traffic." -j DROP',
      ]);
    }

    writeFileSync(stateFile, JSON.stringify(ports()));
    const add = await runCli(BIN, args, 60_000);
    expect(add.code, add.stderr + add.stdout.slice(-3000)).toBe(0);
    const added = await snapshot();
    // Remote groups as ipsets, conntrack zones per network, the ports' chains.
    expect(added.ipsets.length).toBeGreaterThanOrEqual(2);
    expect(added.iptables).toMatch(/-j CT --zone \d+/);
    expect(added.iptables).toContain(`physdev-in ${PORTS[0]!.tap}`);

    writeFileSync(stateFile, JSON.stringify(empty));
    const remove = await runCli(BIN, args, 60_000);
    expect(remove.code, remove.stderr + remove.stdout.slice(-3000)).toBe(0);
    const after = await snapshot();
    expect(after.iptables).not.toMatch(/--zone|taphc/);
    expect(after.ip6tables).not.toMatch(/--zone|taphc/);
    expect(after).toEqual(before);
  }, 120_000);
});
