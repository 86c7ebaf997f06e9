/**
 * Removing routers leaves the host as it was (issue 20). The built l3-agent, standalone (routers from
 * a file: `bridge_mode` auto → standalone), adds a realistic set of routers and removes them; the
 * host's devices, namespaces, ipsets, iptables rules, processes and files are compared before and
 * after. The "host" is a namespace of the test's (`bridge_namespace`): the real host's namespace is
 * never touched. Router namespaces carry a prefix of the test's own (unique per run) and the state
 * path is a directory of its own. Teardown (also on failure) kills the agents and every process that
 * names the test's directory, deletes the router namespaces with the test's prefix, then the host
 * namespace and the directory.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { AgentProcess, Cleanups, createNetns, deleteNetns, filesUnder, isRoot, listNetns, pidsMentioning, runCli, runCommand, type TestNetns, waitFor } from "@chainwarden/testing";
import { afterEach, describe, expect, it } from "vitest";

const APP_DIR = fileURLToPath(new URL("..", import.meta.url));
const BIN = join(APP_DIR, "bin", "l3-agent.js");

// Last in, first out: agents go before their namespaces and files.
const cleanups = new Cleanups();
afterEach(() => cleanups.run());


interface TestHost {
  host: TestNetns;
  prefix: string;
  dir: string;
  statePath: string;
  stateFile: string;
  config: string;
}

async function testHost(): Promise<TestHost> {
  const dir = mkdtempSync(join(tmpdir(), "cw-l3-hostcleanup-"));
  cleanups.defer(() => rmSync(dir, { recursive: true, force: true }));
  // Unique per run: router namespaces are <prefix><uuid> in the host's /run/netns.
  const prefix = `cwhc-${process.pid}-${randomBytes(2).toString("hex")}-`;
  cleanups.defer(async () => {
    for (const n of await listNetns()) if (n.startsWith(prefix)) await deleteNetns(n);
  });
  // Metadata proxies name the state path in their command line; kill any left (a failed test).
  cleanups.defer(() => {
    for (const pid of pidsMentioning(dir)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone already
      }
    }
  });
  const host = await createNetns("cw-l3hc");
  cleanups.defer(() => host.delete());
  await host.exec(["ip", "link", "set", "lo", "up"]);
  const statePath = join(dir, "state");
  const stateFile = join(dir, "routers.json");
  const config = join(dir, "l3-agent.yaml");
  writeFileSync(
    config,
    [
      "# written by host-cleanup.kernel.test.ts",
      `state_path: ${JSON.stringify(statePath)}`,
      `namespace_prefix: ${JSON.stringify(prefix)}`,
      "plugin_options:",
      "  l3-nat:",
      `    bridge_namespace: ${JSON.stringify(host.name)}`,
      // Nothing listens there: the proxies start anyway and answer 502.
      `    metadata_upstream: ${JSON.stringify(join(dir, "metadata.sock"))}`,
      "",
    ].join("\n"),
  );
  return { host, prefix, dir, statePath, stateFile, config };
}

/** What the test compares: the host's devices (name, alias, master), namespaces, ipsets, rules, processes, files. */
async function snapshot(t: TestHost) {
  const links = JSON.parse((await t.host.exec(["ip", "-j", "link", "show"])).stdout) as { ifname: string; ifalias?: string; master?: string }[];
  const save = async (tool: string) =>
    (await t.host.exec([tool]))
      .stdout.split("\n")
      .filter((l) => !l.startsWith("#"))
      .join("\n");
  return {
    devices: links.map((l) => [l.ifname, l.ifalias ?? "", l.master ?? ""].join(" ").trim()).sort(),
    namespaces: (await listNetns()).filter((n) => n.startsWith(t.prefix) || n === t.host.name).sort(),
    ipsets: (await t.host.exec(["ipset", "list", "-n"])).stdout.split("\n").filter(Boolean).sort(),
    iptables: await save("iptables-save"),
    ip6tables: await save("ip6tables-save"),
    processes: pidsMentioning(t.dir).filter((pid) => pid !== process.pid),
    files: filesUnder(t.dir).filter((f) => f !== "routers.json" && f !== "l3-agent.yaml"),
  };
}

const EXT = "e0e0e0e0-0000-4000-8000-00000000e001";
const net = (n: number) => `${String(n).padStart(2, "0")}000000-0000-4000-8000-0000000000${String(n).padStart(2, "0")}`;

/**
 * Router n: a gateway on the shared external network (unless `internalOnly`), `ports` interfaces on
 * networks of their own, a floating IP per interface.
 */
function router(n: number, ports: number, internalOnly = false) {
  const subnets = (id: string, cidr: string, gateway: string) => [{ id, cidr, gateway_ip: gateway }];
  const interfaces = Array.from({ length: ports }, (_, i) => {
    const k = n * 10 + i;
    return {
      id: `${String(k).padStart(2, "0")}0ffee0-1111-4222-8333-444455556666`,
      network_id: net(k),
      mac_address: `fa:16:3e:10:${String(k).padStart(2, "0")}:01`,
      mtu: 1450,
      fixed_ips: [{ ip_address: `10.${k}.0.1`, subnet_id: `s${k}`, prefixlen: 24 }],
      subnets: subnets(`s${k}`, `10.${k}.0.0/24`, `10.${k}.0.1`),
    };
  });
  return {
    id: `${n}e4c5a7b-2f0d-4c0e-9a47-3b1f6e2d8c90`,
    enable_snat: true,
    gw_port: internalOnly
      ? null
      : {
          id: `${n}1b2c3d4-0001-4e5f-8a9b-0c1d2e3f4a5b`,
          network_id: EXT,
          mac_address: `fa:16:3e:5a:00:0${n}`,
          fixed_ips: [{ ip_address: `203.0.113.1${n}`, subnet_id: "ext", prefixlen: 24 }],
          subnets: subnets("ext", "203.0.113.0/24", "203.0.113.1"),
        },
    _interfaces: interfaces,
    _floatingips: internalOnly ? [] : interfaces.map((p, i) => ({ id: `fip-${n}-${i}`, floating_ip_address: `203.0.113.${100 + n * 10 + i}`, fixed_ip_address: p.fixed_ips[0]!.ip_address.replace(/\.1$/, ".5") })),
  };
}
const ROUTERS = [router(1, 2), router(2, 1), router(3, 1, true)];

function writeRouters(t: TestHost, routers: unknown[]): void {
  writeFileSync(t.stateFile, JSON.stringify({ routers }));
}

const brq = (network: string) => `brq${network.slice(0, 11)}`;

describe.skipIf(!isRoot())("l3-agent: removing routers leaves the host as it was (standalone bridges)", () => {
  it("apply --once adds routers and removes them: devices, namespaces, ipsets, rules, processes and files before = after; plan lists the removals", async () => {
    const t = await testHost();
    const args = ["--config", t.config, "--state", t.stateFile];
    const before = await snapshot(t);

    writeRouters(t, ROUTERS);
    const add = await runCli(BIN, ["apply", "--once", ...args], 60_000);
    expect(add.code, add.stderr + add.stdout.slice(-3000)).toBe(0);
    const added = await snapshot(t);
    expect(added.namespaces).toHaveLength(4);
    // Bridges of its own, marked: the shared external one and one per internal network.
    const mark = `chainwarden:l3-nat:${t.prefix}`;
    for (const network of [EXT, net(10), net(11), net(20), net(30)]) expect(added.devices).toContain(`${brq(network)} ${mark}`);
    // A tap per port: router 1's two interfaces and gateway, router 2's interface and gateway, router 3's interface.
    expect(added.devices.filter((d) => d.startsWith("tap"))).toHaveLength(6);
    // A metadata proxy per router, with its pid file and log.
    expect(added.processes).toHaveLength(3);
    expect(added.files.filter((f) => f.endsWith(".pid"))).toHaveLength(3);

    // plan of the empty state: every router is stale; it lists the namespaces with their veths and the bridges.
    writeRouters(t, []);
    const plan = await runCli(BIN, ["plan", ...args], 60_000);
    expect(plan.code, plan.stderr).toBe(0);
    for (const r of ROUTERS) expect(plan.stdout).toMatch(new RegExp(`# would remove namespace ${t.prefix}${r.id} \\(router/${r.id}; with its devices qg-|# would remove namespace ${t.prefix}${r.id} \\(router/${r.id}; with its devices qr-`));
    for (const network of [EXT, net(10), net(11), net(20), net(30)]) expect(plan.stdout).toContain(`# would remove bridge ${brq(network)} (`);
    expect(await snapshot(t)).toEqual(added);

    const remove = await runCli(BIN, ["apply", "--once", ...args], 60_000);
    expect(remove.code, remove.stderr + remove.stdout.slice(-3000)).toBe(0);
    // The proxies exit with their namespaces (killed by the namespace's removal).
    await waitFor(() => pidsMentioning(t.dir).filter((p) => p !== process.pid).length === 0, "the metadata proxies to exit", 15_000);
    expect(await snapshot(t)).toEqual(before);
  }, 180_000);

  it("run: routers removed through the state file leave the host as it was", async () => {
    const t = await testHost();
    const before = await snapshot(t);
    writeRouters(t, ROUTERS);
    const agent = new AgentProcess(BIN, ["run", "--config", t.config, "--state", t.stateFile]);
    cleanups.defer(() => agent.kill());
    await waitFor(async () => (await snapshot(t)).processes.length >= 4 && (await listNetns()).filter((n) => n.startsWith(t.prefix)).length === 3, "routers and proxies up", 60_000);
    writeRouters(t, [ROUTERS[0]]);
    await waitFor(async () => (await listNetns()).filter((n) => n.startsWith(t.prefix)).length === 1, "two routers removed", 30_000);
    writeRouters(t, []);
    await waitFor(async () => (await listNetns()).filter((n) => n.startsWith(t.prefix)).length === 0, "all routers removed", 30_000);
    agent.signal("SIGTERM");
    expect((await agent.exited).code, agent.describe()).toBe(0);
    await waitFor(() => pidsMentioning(t.dir).filter((p) => p !== process.pid).length === 0, "every process to exit", 15_000);
    expect(await snapshot(t)).toEqual(before);
  }, 180_000);

  it("the start-up sweep removes a marked bridge an earlier run left and keeps an unmarked one of the same name pattern", async () => {
    const t = await testHost();
    const ours = `brq${randomBytes(5).toString("hex").slice(0, 8)}-00`;
    const foreign = `brq${randomBytes(5).toString("hex").slice(0, 8)}-01`;
    const otherAgent = `brq${randomBytes(5).toString("hex").slice(0, 8)}-02`;
    await runCommand(["ip", "-n", t.host.name, "link", "add", ours, "type", "bridge"]);
    await runCommand(["ip", "-n", t.host.name, "link", "set", "dev", ours, "alias", `chainwarden:l3-nat:${t.prefix}`]);
    await runCommand(["ip", "-n", t.host.name, "link", "add", foreign, "type", "bridge"]);
    await runCommand(["ip", "-n", t.host.name, "link", "add", otherAgent, "type", "bridge"]);
    await runCommand(["ip", "-n", t.host.name, "link", "set", "dev", otherAgent, "alias", "chainwarden:l3-nat:qrouter-"]);
    const before = await snapshot(t);
    writeRouters(t, []);
    const args = ["--config", t.config, "--state", t.stateFile];

    const plan = await runCli(BIN, ["plan", ...args], 60_000);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toContain(`# would remove bridge ${ours} (made by this agent (alias chainwarden:l3-nat:${t.prefix}), without ports)`);
    expect(plan.stdout).not.toContain(foreign);
    expect(plan.stdout).not.toContain(otherAgent);

    const r = await runCli(BIN, ["apply", "--once", ...args], 60_000);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const logs = r.stdout
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(logs).toContainEqual(expect.objectContaining({ msg: "stale resources from an earlier run removed", removed: [`bridge ${ours}`] }));
    expect(logs).toContainEqual(expect.objectContaining({ msg: "bridge left by an earlier run removed", bridge: ours }));
    const after = await snapshot(t);
    expect(after.devices).toEqual(before.devices.filter((d) => !d.startsWith(`${ours} `)));
    expect(after.devices).toContain(foreign);
    expect(after.devices).toContain(`${otherAgent} chainwarden:l3-nat:qrouter-`);
  }, 120_000);
});
