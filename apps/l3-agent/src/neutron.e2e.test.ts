/**
 * The l3 agent as a drop-in for `neutron-l3-agent`, end to end (issue 17, item 5): a real RabbitMQ and a
 * real neutron-server (`@chainwarden/openstack-lab`), routers made through Neutron's REST API, Debian's
 * own `neutron-l3-agent` (Zed) first and then the BUILT `l3-agent` binary, started with the same
 * Neutron config files and the same `host`, as an operator swaps them on a network node.
 *
 *   neutron-server ── RabbitMQ ──┬── neutron-l3-agent (phase 1: the reference; then stopped)
 *                                └── l3-agent         (phase 2: takes over, then every change)
 *
 *   node namespace (the lab's fabric): the agents' veth ends and the bridges brq<network>
 *     vm1 10.0.0.5 ─┐                                               ┌─ ext 203.0.113.100
 *     vm2 10.0.0.6 ─┴ brq<private> ── qr ─ qrouter-<r1> ─ qg ── brq<public>
 *
 * Isolation. Both agents use Neutron's real `qrouter-` prefix, and both remove the `qrouter-<uuid>`
 * namespaces of routers they do not have (Neutron's stale namespace cleanup): on the host's own
 * namespace list they would delete the host's routers, or those of another test or bench running
 * Neutron's agent at the same time, and those would delete ours. So both agents, and the test when it
 * looks at their namespaces, run in a mount namespace of the test's own whose `/run/netns` is a
 * directory of the test's (`startRegistry`): they see only the node namespace and the router
 * namespaces they make there, the host sees none of those, and they go with that mount namespace at
 * the end whatever happens (each is also deleted in teardown, with what runs inside: haproxy, our
 * metadata proxies). Veths and bridges stay in the node namespace: Neutron's agent runs inside it
 * (`nsenter --net`, see `startNeutronL3Agent`), ours has it as `plugin_options.l3-nat.bridge_namespace`.
 * The broker and the server listen on the host's loopback only; Neutron's agent reaches the broker
 * through a Unix socket (`test-fixtures/broker-relay.mjs`).
 *
 * Neutron's agent runs as root without sudo or rootwrap: `[AGENT] root_helper = env` (commands it
 * would run as root run as they are; oslo.privsep then starts its daemons as `env privsep-helper`),
 * `use_helper_for_ns_read = false`, `state_path` and `lock_path` in the test's directory. Our agent
 * ignores those options (it lists them at debug) and reads the rest of the same files.
 *
 * The cases share one server and one agent, in order; each says what it proves. 2–3 minutes on the
 * 2-core machine (RabbitMQ + neutron-server 17–40 s, Neutron's agent 18–35 s), more under load.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { createConnection, createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { normalizeSave } from "@chainwarden/core";
import { NeutronApi, NeutronServerLab, RabbitMqLab, type NeutronResource } from "@chainwarden/openstack-lab";
import { AgentProcess, createRouterLab, isRoot, waitFor, type LogLine, type RouterLab, type TestNetns } from "@chainwarden/testing";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

const APP_DIR = fileURLToPath(new URL("..", import.meta.url));
const BIN = join(APP_DIR, "bin", "l3-agent.js");
const BROKER_RELAY = join(APP_DIR, "test-fixtures", "broker-relay.mjs");
const NEUTRON_L3_AGENT = "/usr/bin/neutron-l3-agent";
const NSENTER = "/usr/bin/nsenter";
const UNSHARE = "/usr/bin/unshare";
const SLEEP = "/usr/bin/sleep";
const PYTHON = "/usr/bin/python3";
// The lab's guard: the program gets SIGKILL when the test runner dies before its teardown.
const EXEC_WITH_PARENT = join(dirname(createRequire(import.meta.url).resolve("@chainwarden/openstack-lab/package.json")), "src", "python", "exec_with_parent.py");
const HAPROXY = ["/usr/sbin/haproxy", "/usr/bin/haproxy"].find((p) => existsSync(p));

/** Seconds without a report before the server shows an agent dead; both agents report every 2 s. */
const AGENT_DOWN_TIME = 8;
const REPORT_INTERVAL = 2;
const HTTP_PORT = 7080;
const HOST = `cw-e2e-l3-${randomBytes(3).toString("hex")}`;
// The iptables Neutron runs is the host's `iptables` (Debian's alternatives); ours is told the same.
const BACKEND = isRoot() && /nf_tables/.test(execFileSync("iptables", ["-V"], { encoding: "utf8" })) ? "nft" : "legacy";

/** `/proc/<pid>/ns/mnt` of the mount namespace with the test's own `/run/netns` (see `startRegistry`). */
let registry: string | undefined;

/** ARGV in the test's mount namespace (`nsenter --mount`; argument array, no shell). */
function inRegistry(argv: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(NSENTER, [`--mount=${registry!}`, ...argv], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${argv.join(" ")}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const routerNamespace = (id: string) => `qrouter-${id}`;
const qr = (portId: string) => `qr-${portId.slice(0, 11)}`;
const qg = (portId: string) => `qg-${portId.slice(0, 11)}`;
const tap = (portId: string) => `tap${portId.slice(0, 11)}`;
const brq = (networkId: string) => `brq${networkId.slice(0, 11)}`;

/** `ip netns exec NS ARGV` among the agents' namespaces: `iptables-save` as Neutron runs it, whichever backend it is. */
function inNamespace(namespace: string, argv: string[]): Promise<string> {
  return inRegistry(["ip", "netns", "exec", namespace, ...argv]);
}

/** The namespaces the agents see. */
async function agentNamespaces(): Promise<string[]> {
  return (await inRegistry(["ip", "netns", "list"])).split("\n").map((l) => l.split(" ")[0]!).filter(Boolean);
}

/** The pids in one of the agents' namespaces. */
async function pidsIn(namespace: string): Promise<number[]> {
  return (await inRegistry(["ip", "netns", "pids", namespace]).catch(() => "")).split(/\s+/).filter(Boolean).map(Number);
}

/** Deletes one of the agents' namespaces and kills what runs inside first (haproxy, our metadata proxies). */
async function deleteAgentNamespace(namespace: string): Promise<void> {
  for (const pid of await pidsIn(namespace)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
  await inRegistry(["ip", "netns", "delete", namespace]).catch((err: Error) => {
    if (!/No such file/.test(err.message)) throw err;
  });
}

/** Both families of a namespace as `iptables-save`/`ip6tables-save` print them, normalized as core's reference files are. */
async function rules(namespace: string): Promise<string> {
  const [v4, v6] = await Promise.all([inNamespace(namespace, ["iptables-save"]), inNamespace(namespace, ["ip6tables-save"])]);
  return `# IPv4\n${normalizeSave(v4)}# IPv6\n${normalizeSave(v6)}`;
}

/** The rules once two reads a moment apart agree (an agent may still be applying). */
async function settledRules(namespace: string): Promise<string> {
  let last = await rules(namespace);
  for (;;) {
    await sleep(700);
    const now = await rules(namespace);
    if (now === last) return now;
    last = now;
  }
}

/** Devices with their addresses (`ip -br addr`, the veth peer's ifindex included: a re-plug shows) and the routes. */
async function plumbing(namespace: string): Promise<string> {
  const addresses = (await inNamespace(namespace, ["ip", "-br", "addr", "show"])).split("\n").filter(Boolean).map((l) => l.replace(/\s+/g, " ").trim()).sort();
  const routes = (await inNamespace(namespace, ["ip", "route", "show"])).trim();
  return `${addresses.join("\n")}\n${routes}\n`;
}

/** The lines of a save that name one of the strings. */
function linesWith(save: string, ...needles: string[]): string[] {
  return save.split("\n").filter((l) => needles.some((n) => l.includes(n)));
}

describe.skipIf(!isRoot())("l3-agent driven by a real neutron-server, in place of neutron-l3-agent", () => {
  let rabbit: RabbitMqLab | undefined;
  let neutron: NeutronServerLab | undefined;
  let api!: NeutronApi;
  let lab: RouterLab<"vm1" | "vm2" | "ext"> | undefined;
  let dir!: string;
  let relay: Server | undefined;
  let neutronAgent: ChildProcess | undefined;
  /** The process that holds the test's mount namespace open (see `startRegistry`). */
  let holder: ChildProcess | undefined;
  let ours: AgentProcess | undefined;
  const routerIds = new Set<string>();
  const files = { conf: "", ini: "", confDir: "", yaml: "", neutronLog: "" };

  // The resources of the test, by name.
  const ids: Record<string, string> = {};
  /** Neutron's own rules for r1: after its first processing of the router (a) and after one more (b). */
  let reference: { a: string; b: string; plumbing: string; agentId: string } | undefined;
  /** Why Neutron's agent did not run, when it did not. */
  let noReference: string | undefined;

  beforeAll(async () => {
    const t0 = Date.now();
    dir = mkdtempSync(join(tmpdir(), "cw-l3-e2e-"));
    rabbit = await RabbitMqLab.start();
    const rabbitMs = Date.now() - t0;
    neutron = await NeutronServerLab.start({ transportUrl: rabbit.transportUrl, agentDownTime: AGENT_DOWN_TIME, debug: false });
    api = new NeutronApi(neutron.url);
    console.log(`started: rabbitmq ${rabbitMs} ms, neutron-server ${JSON.stringify(neutron.timings)} ms, total ${Date.now() - t0} ms`);

    // The router r1, through the API, before any l3 agent exists: a gateway on the external network,
    // an interface on a tenant network, a port standing for a VM, a floating IP on it.
    const ext = await api.createExternalNetwork(neutron.physicalNetwork, { name: "public" });
    const extSubnet = await api.createSubnet({ network_id: ext.id, cidr: "203.0.113.0/24", gateway_ip: "203.0.113.1", enable_dhcp: false });
    const net = await api.createNetwork({ name: "private" });
    const subnet = await api.createSubnet({ network_id: net.id, cidr: "10.0.0.0/24", gateway_ip: "10.0.0.1" });
    const r1 = await api.createRouter({ name: "r1", external_gateway_info: { network_id: ext.id, external_fixed_ips: [{ subnet_id: extSubnet.id, ip_address: "203.0.113.10" }] } });
    routerIds.add(r1.id);
    const r1Interface = await api.addRouterInterface(r1.id, { subnet_id: subnet.id });
    const vm1 = await api.createPort({ network_id: net.id, name: "vm-1", fixed_ips: [{ subnet_id: subnet.id, ip_address: "10.0.0.5" }], device_owner: "compute:nova", device_id: "9d1f6a2e-0000-4000-8000-000000000001" });
    const fip1 = await api.createFloatingIp({ floating_network_id: ext.id, floating_ip_address: "203.0.113.20", port_id: vm1.id });
    Object.assign(ids, { ext: ext.id, extSubnet: extSubnet.id, net: net.id, subnet: subnet.id, r1: r1.id, r1Port: r1Interface.port_id as string, vm1: vm1.id, fip1: fip1.id });
    ids.r1Gateway = (await api.listPorts({ device_id: r1.id, device_owner: "network:router_gateway" }))[0]!.id;

    // The node: its namespace holds the bridges (what the Linux bridge agent would make) and the
    // agents' veth ends; the hosts hang off the bridges.
    lab = await createRouterLab({ prefix: "cwe2e", hosts: ["vm1", "vm2", "ext"] });
    await lab.fabric.exec(["ip", "link", "set", "lo", "up"]);
    await startRegistry(lab.fabric.name);
    await lab.attach(lab.hosts.vm1, brq(net.id), "10.0.0.5/24", "10.0.0.1");
    await lab.attach(lab.hosts.vm2, brq(net.id), "10.0.0.6/24", "10.0.0.1");
    await lab.attach(lab.hosts.ext, brq(ext.id), "203.0.113.100/24");
    for (const host of ["vm1", "vm2", "ext"] as const) await lab.netTool(lab.hosts[host], ["http-server", String(HTTP_PORT)]);

    // Neutron's config files, as on a network node: the same for both agents.
    const state = join(dir, "state");
    files.confDir = join(dir, "neutron.conf.d");
    for (const d of [state, join(dir, "lock"), files.confDir]) mkdirSync(d);
    files.conf = join(dir, "neutron.conf");
    files.ini = join(dir, "l3_agent.ini");
    files.yaml = join(dir, "l3-agent.yaml");
    files.neutronLog = join(dir, "neutron-l3-agent.log");
    writeFileSync(
      files.conf,
      [
        "[DEFAULT]",
        `host = ${HOST}`,
        `transport_url = ${rabbit.transportUrl}`,
        `state_path = ${state}`,
        `log_file = ${files.neutronLog}`,
        // Neutron's agent would wait up to 5 s at random before its first full sync.
        "periodic_fuzzy_delay = 0",
        "[AGENT]",
        `report_interval = ${REPORT_INTERVAL}`,
        "root_helper = env",
        "use_helper_for_ns_read = false",
        "[oslo_concurrency]",
        `lock_path = ${join(dir, "lock")}`,
        // Zed's privsep daemon runs commands with eventlet's green subprocess from its native thread
        // pool: two at once can wedge it ("greenlet.error: cannot switch to a different thread", then
        // no answer; see tools/bench/README.md). One thread cannot race; its arpings then take turns.
        // Our agent ignores these sections.
        ...["privsep", "privsep_namespace", "privsep_link", "privsep_conntrack", "privsep_dhcp_release", "privsep_ovs_vsctl"].flatMap((section) => [`[${section}]`, "thread_pool_size = 1"]),
        "",
      ].join("\n"),
    );
    // Without haproxy Neutron's metadata proxy cannot run: then both agents go without the metadata rules.
    writeFileSync(files.ini, ["[DEFAULT]", "interface_driver = linuxbridge", `enable_metadata_proxy = ${HAPROXY ? "true" : "false"}`, ""].join("\n"));
    // What Neutron has no option for: the backend Neutron's iptables is, the node namespace for the bridges.
    writeFileSync(files.yaml, [`backend: ${BACKEND}`, "plugin_options:", "  l3-nat:", `    bridge_namespace: ${lab.fabric.name}`, ""].join("\n"));
  }, 300_000);

  afterAll(async () => {
    const errors: unknown[] = [];
    const attempt = async (work: () => Promise<unknown> | undefined) => {
      try {
        await work();
      } catch (err) {
        errors.push(err);
      }
    };
    await attempt(() => ours?.kill());
    await attempt(() => stopNeutronL3Agent("SIGKILL"));
    await attempt(() => new Promise<void>((resolve) => (relay ? relay.close(() => resolve()) : resolve())));
    // The router namespaces with what runs inside (haproxy, our metadata proxies), then the node and
    // the hosts (Neutron's agent's privsep daemons and the relay run in the node namespace).
    if (registry) for (const id of routerIds) await attempt(() => deleteAgentNamespace(routerNamespace(id)));
    // Its last process gone, the mount namespace goes, with whatever it still had mounted.
    await attempt(async () => {
      if (!holder || holder.exitCode !== null || holder.signalCode !== null) return;
      const gone = new Promise<void>((resolve) => holder!.once("exit", () => resolve()));
      holder.kill("SIGKILL");
      await gone;
    });
    await attempt(() => lab?.delete());
    await attempt(() => neutron?.stop());
    await attempt(() => rabbit?.stop());
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (errors.length) throw errors[0];
  }, 120_000);

  afterEach(({ task }) => {
    if (task.result?.state !== "fail") return;
    if (ours) {
      // Its info lines and above (the debug ones are mostly heartbeats), with the stderr tail.
      const lines = ours.logs().filter((l) => (l.level ?? 0) >= 30).slice(-80).map((l) => JSON.stringify(l));
      console.log(`our l3-agent (info and above):\n${lines.join("\n")}\nstderr:\n${ours.stderr.slice(-2000)}`);
    }
    if (neutron) console.log(`neutron-server errors:\n${neutron.log().split("\n").filter((l) => / (ERROR|CRITICAL) /.test(l)).slice(-40).join("\n")}`);
    if (existsSync(files.neutronLog)) {
      const log = neutronL3AgentLog().split("\n");
      console.log(`neutron-l3-agent errors:\n${log.filter((l) => / (ERROR|CRITICAL) /.test(l)).slice(-40).join("\n")}\nits last lines:\n${log.slice(-30).join("\n")}`);
    }
  });

  /**
   * The agents' own list of network namespaces: a mount namespace held open by a process of the
   * test's (`unshare --mount --propagation private sleep infinity`, killed with the test runner too),
   * where a directory of the test's is mounted over `/run/netns`, with the node namespace in it (bind
   * mounted from the host's list). Namespaces the agents make there (`ip netns add`, pyroute2's
   * netns.create) are mounted in that directory, in that mount namespace only.
   */
  async function startRegistry(node: string): Promise<void> {
    const netnsDir = join(dir, "netns");
    mkdirSync(netnsDir);
    holder = spawn(PYTHON, [EXEC_WITH_PARENT, UNSHARE, "--mount", "--propagation", "private", SLEEP, "infinity"], { stdio: "ignore" });
    const host = statSync("/proc/self/ns/mnt").ino;
    const mnt = `/proc/${holder.pid}/ns/mnt`;
    const unshared = () => {
      try {
        return statSync(mnt).ino !== host;
      } catch {
        return false;
      }
    };
    await waitFor(unshared, "the test's mount namespace", 10_000, () => holder!.exitCode === null && holder!.signalCode === null);
    registry = mnt;
    writeFileSync(join(netnsDir, node), "");
    await inRegistry(["mount", "--bind", `/run/netns/${node}`, join(netnsDir, node)]);
    // Recursive: the node namespace's mount on its file comes along.
    await inRegistry(["mount", "--rbind", netnsDir, "/run/netns"]);
    await inRegistry(["ip", "netns", "exec", node, "true"]);
    expect(await agentNamespaces()).toEqual([node]);
  }

  function neutronL3AgentLog(): string {
    return existsSync(files.neutronLog) ? readFileSync(files.neutronLog, "utf8") : "";
  }

  /** How often Neutron's agent finished processing a router ("Finished a router update for <id>"). */
  function neutronProcessed(routerId: string): number {
    return neutronL3AgentLog().split("\n").filter((l) => l.includes(`Finished a router update for ${routerId},`)).length;
  }

  /**
   * Debian's neutron-l3-agent inside the node namespace, in the test's mount namespace. `nsenter`
   * and not `ip netns exec`: the latter gives the process a mount namespace of its own, and the
   * `qrouter-` namespaces Neutron's privsep daemon mounts there would be visible to nobody else
   * (entering one fails with "Invalid argument"). The broker is reached through the relay on the
   * namespace's loopback.
   */
  async function startNeutronL3Agent(): Promise<void> {
    const node = lab!.fabric;
    const brokerPort = new URL(rabbit!.transportUrl).port;
    const socketPath = join(dir, "amqp.sock");
    relay = createServer((client) => {
      const broker = createConnection({ host: "127.0.0.1", port: Number(brokerPort) });
      client.pipe(broker);
      broker.pipe(client);
      const end = () => {
        client.destroy();
        broker.destroy();
      };
      client.on("error", end).on("close", end);
      broker.on("error", end).on("close", end);
    });
    await new Promise<void>((resolve, reject) => relay!.once("error", reject).listen(socketPath, () => resolve()));
    // Killed with the node namespace in teardown (and it exits when its stdin, our pipe, closes).
    const relayProcess = spawn("ip", ["netns", "exec", node.name, process.execPath, BROKER_RELAY, brokerPort, socketPath], { stdio: ["pipe", "pipe", "inherit"] });
    await new Promise<void>((resolve, reject) => {
      relayProcess.stdout!.once("data", () => resolve());
      relayProcess.once("exit", (code) => reject(new Error(`the broker relay exited (${code})`)));
    });
    const env = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", HOME: dir, LC_ALL: "C.UTF-8" };
    neutronAgent = spawn(NSENTER, [`--mount=${registry!}`, `--net=/run/netns/${node.name}`, PYTHON, EXEC_WITH_PARENT, NEUTRON_L3_AGENT, "--config-file", files.conf, "--config-file", files.ini, "--config-dir", files.confDir], { stdio: ["ignore", "pipe", "pipe"], env });
    let output = "";
    const keep = (d: Buffer) => (output = (output + d.toString()).slice(-4000));
    neutronAgent.stdout!.on("data", keep);
    neutronAgent.stderr!.on("data", keep);
    neutronAgent.once("exit", (code, signal) => {
      if (code !== 0 && signal !== "SIGTERM") console.log(`neutron-l3-agent exited (${signal ?? code}):\n${output}`);
    });
  }

  /**
   * Neutron's agent starts its first full sync (`get_router_ids`, where the server schedules the
   * host's unscheduled routers to it) without waiting for its first state report to register it.
   * When the sync wins that race the server finds no l3 agent on the host, r1 (made before any agent
   * existed) stays unscheduled, and Zed's agent does not sync in full again until it restarts; seen
   * here under load. So the router is scheduled by hand where that happened, as an operator would
   * (`openstack network agent add router`). Ours reports before its first sync.
   */
  async function scheduledToNeutronsAgent(routerId: string): Promise<void> {
    const agent = (await l3Agent())!;
    const hosted = async () => (await api.listRouterL3Agents(routerId)).some((a) => a.id === agent.id);
    if (await hosted()) return;
    // The agent's own sync may schedule it meanwhile: then the server refuses this one (conflict).
    const refused = await api.addRouterToL3Agent(agent.id, routerId).then(() => undefined, (err: unknown) => err);
    if (!(await hosted())) throw refused ?? new Error(`${routerId} is not scheduled to neutron-l3-agent ${agent.id} after adding it`);
    console.log(`r1 was not scheduled to neutron-l3-agent by its first sync; scheduled by hand${refused ? " (raced its own)" : ""}`);
  }

  /** SIGTERM as systemd stops the service (SIGKILL after 15 s, its TimeoutStopSec), or SIGKILL in teardown. */
  async function stopNeutronL3Agent(signal: "SIGTERM" | "SIGKILL"): Promise<void> {
    const child = neutronAgent;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill(signal);
    if (await Promise.race([exited.then(() => true), sleep(15_000).then(() => false)])) return;
    child.kill("SIGKILL");
    await exited;
  }

  const neutronAgentRunning = () => neutronAgent !== undefined && neutronAgent.exitCode === null && neutronAgent.signalCode === null;

  function startOurs(): AgentProcess {
    ours = new AgentProcess(BIN, ["run", "--config-file", files.conf, "--config-file", files.ini, "--config-dir", files.confDir, "--config", files.yaml, "--log-level", "debug"], 30 * 60_000, {
      wrapper: [NSENTER, `--mount=${registry!}`],
    });
    return ours;
  }

  const oursRunning = () => ours?.running ?? false;

  /** Our log lines since `from` (epoch ms), e.g. to wait for one that follows an action. */
  const oursLogSince = (from: number, predicate: (line: LogLine) => boolean) => ours!.logs().find((l) => (l.time as number) >= from && predicate(l));

  /** Where the time of one change to a router went after the API call at `t0`, from our log's time stamps. */
  function breakdown(t0: number, routerId: string): string {
    const at = (line: LogLine | undefined) => (line ? `+${(line.time as number) - t0} ms` : "?");
    const heard = oursLogSince(t0, (l) => l.msg === "router change from neutron-server" && (l.routers as string[]).includes(routerId));
    const fetched = heard && oursLogSince(heard.time as number, (l) => l.msg === "routers from neutron-server");
    const applied = fetched && oursLogSince(fetched.time as number, (l) => l.msg === "namespace applied" && l.namespace === routerNamespace(routerId));
    return `cast received ${at(heard)}, router fetched (sync_routers) ${at(fetched)}, applied ${at(applied)}`;
  }

  async function l3Agent(): Promise<NeutronResource | undefined> {
    const agents = await api.listAgents({ agent_type: "L3 agent", host: HOST });
    expect(agents.length).toBeLessThanOrEqual(1);
    return agents[0];
  }

  async function fipStatus(id: string): Promise<string> {
    return (await api.getFloatingIp(id)).status as string;
  }

  /** The haproxy processes running in a namespace. */
  async function haproxyIn(namespace: string): Promise<number[]> {
    return (await pidsIn(namespace)).filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "haproxy";
      } catch {
        return false;
      }
    });
  }

  async function curl(host: TestNetns, url: string): Promise<string> {
    const r = await host.exec(["curl", "-s", "--max-time", "5", url], { reject: false });
    return r.stdout;
  }

  it("Neutron's own neutron-l3-agent processes r1: the reference (its rules after the first and after a second processing)", async (ctx) => {
    if (!existsSync(NEUTRON_L3_AGENT) || !existsSync(NSENTER)) {
      noReference = `${existsSync(NEUTRON_L3_AGENT) ? NSENTER : NEUTRON_L3_AGENT} is not installed`;
      ctx.skip(noReference);
    }
    const ns = routerNamespace(ids.r1!);
    const t0 = Date.now();
    let a: string, b: string, devices: string, agent: NeutronResource, processedMs: number;
    try {
      await startNeutronL3Agent();
      await waitFor(async () => (await l3Agent())?.alive === true, "neutron-l3-agent alive in /v2.0/agents", 90_000, neutronAgentRunning);
      await scheduledToNeutronsAgent(ids.r1!);
      await waitFor(() => neutronProcessed(ids.r1!) >= 1, "neutron-l3-agent to process r1", 240_000, neutronAgentRunning);
      await waitFor(async () => (await fipStatus(ids.fip1!)) === "ACTIVE", "floating IP ACTIVE (reported by neutron-l3-agent)", 60_000, neutronAgentRunning);
      processedMs = Date.now() - t0;
      a = await settledRules(ns);
      expect(linesWith(a, "203.0.113.20")).toEqual([
        "-A neutron-l3-agent-OUTPUT -d 203.0.113.20/32 -j DNAT --to-destination 10.0.0.5",
        "-A neutron-l3-agent-PREROUTING -d 203.0.113.20/32 -j DNAT --to-destination 10.0.0.5",
        "-A neutron-l3-agent-float-snat -s 10.0.0.5/32 -j SNAT --to-source 203.0.113.20 --random-fully",
      ]);
      agent = (await l3Agent())!;
      expect((await api.listL3AgentRouters(agent.id)).map((r) => r.id)).toEqual([ids.r1]);

      // One more processing of the same router (a rename casts routers_updated): Neutron clears and
      // re-adds the floating IP NAT rules on every process(), while its metadata driver added its
      // REDIRECT once, after the first: from the second processing on the REDIRECT comes first.
      await api.updateRouter(ids.r1!, { name: "r1-renamed" });
      await waitFor(() => neutronProcessed(ids.r1!) >= 2, "neutron-l3-agent to process r1 again", 120_000, neutronAgentRunning);
      b = await settledRules(ns);
      if (HAPROXY) {
        const dnat = "-A neutron-l3-agent-PREROUTING -d 203.0.113.20/32 -j DNAT --to-destination 10.0.0.5";
        const redirect = "-A neutron-l3-agent-PREROUTING -d 169.254.169.254/32 -i qr-+ -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 9697";
        expect(a).toContain(`${dnat}\n${redirect}\n`);
        expect(b).toBe(a.replace(`${dnat}\n${redirect}\n`, `${redirect}\n${dnat}\n`));
      } else {
        expect(b).toBe(a);
      }
      devices = await plumbing(ns);
    } finally {
      // The service stops, whatever happened: two agents for one host would fight over its routers.
      // The namespace and its rules stay, as on a real node. Its haproxy stays too, as with a unit
      // whose KillMode is `process` or an agent stopped by hand (Debian's unit would kill it with the
      // rest of its control group): the harder case for the agent that takes over.
      await stopNeutronL3Agent("SIGTERM");
      // What the Linux bridge agent does on a real node: the router's veth ends into their networks' bridges.
      for (const [port, network] of [[ids.r1Port!, ids.net!], [ids.r1Gateway!, ids.ext!]] as const) {
        await lab!.fabric.exec(["ip", "link", "set", tap(port), "master", brq(network), "up"], { reject: false });
      }
    }
    expect(neutronAgent!.exitCode ?? neutronAgent!.signalCode).not.toBeNull();
    expect(await rules(ns)).toBe(b);
    if (HAPROXY) expect(await haproxyIn(ns)).toHaveLength(1);
    reference = { a, b, plumbing: devices, agentId: agent.id };
    const elapsed = [...neutronL3AgentLog().matchAll(/Finished a router update for \S+, update_id \S+\. Time elapsed: ([\d.]+)/g)].map((m) => `${m[1]} s`);
    console.log(`neutron-l3-agent: started and processed r1 in ${processedMs} ms; its own "Time elapsed" per processing of r1: ${elapsed.join(", ")}`);
  }, 480_000);

  it("our l3-agent, started with the same Neutron files and host, is the alive L3 agent of that host in /v2.0/agents", async () => {
    const t0 = Date.now();
    const agent = startOurs();
    await agent.waitForLog((l) => l.msg === "agent started", "agent started", 150_000);
    const shown = await waitFor(async () => {
      const a = await l3Agent();
      return a?.alive === true && (a.configurations as Record<string, unknown>).routers === 1 ? a : undefined;
    }, "our agent alive, with its router, in /v2.0/agents", 60_000, oursRunning);
    console.log(`our l3-agent: started, synced and shown alive in ${Date.now() - t0} ms`);
    expect(shown).toMatchObject({ host: HOST, binary: "neutron-l3-agent", topic: "l3_agent", admin_state_up: true });
    expect(shown.configurations).toMatchObject({ agent_mode: "legacy", interface_driver: "linuxbridge", routers: 1, ex_gw_ports: 1, interfaces: 1, floating_ips: 1 });
    // The server sees the same agent (agent type and host): the swap needs nothing on the server.
    if (reference) expect(shown.id).toBe(reference.agentId);
    expect((await api.listL3AgentRouters(shown.id)).map((r) => r.id)).toEqual([ids.r1]);
    // One full sync at start (a second one would process r1 twice and move its REDIRECT).
    expect(ours!.logs().filter((l) => l.msg === "full sync of routers from neutron-server")).toHaveLength(1);
  }, 180_000);

  it("takes r1 over: the kernel's rules are exactly Neutron's (as Neutron's own agent leaves them after processing r1 once), the devices untouched", async (ctx) => {
    if (!reference) ctx.skip(`no reference: neutron-l3-agent did not run (${noReference ?? "its case failed"})`);
    const ns = routerNamespace(ids.r1!);
    await waitFor(async () => (await rules(ns)) === reference!.a, "r1's rules as Neutron's first processing wrote them", 60_000, oursRunning).catch(() => undefined);
    // Neutron's agent restarting on this node would do the same: its first processing writes layout a.
    expect(await settledRules(ns)).toBe(reference!.a);
    const applied = ours!.logs().filter((l) => l.msg === "namespace applied" && l.namespace === ns);
    console.log(`takeover of r1: ${applied.map((l) => l.lines).join(" + ") || 0} restore line(s) sent (Neutron had processed it twice: its REDIRECT above the DNAT)`);
    // Nothing re-plugged, no address changed. One difference: our default route has no `proto static`
    // (Neutron's pyroute2 routes carry it; our `ip route replace` makes it `proto boot`), no effect on traffic.
    expect(await plumbing(ns)).toBe(reference!.plumbing.replace(/^(default via \S+ dev \S+) proto static /m, "$1 "));
    // Neutron's haproxy held the metadata port in the namespace: ours stopped it and runs in its place.
    if (HAPROXY) {
      await ours!.waitForLog((l) => l.msg === "metadata proxy started; it runs on its own" && l.router === ids.r1, "our metadata proxy for r1", 30_000);
      expect(ours!.logs().filter((l) => l.msg === "neutron-l3-agent's haproxy metadata proxy stopped; this agent's proxy replaces it" && l.router === ids.r1)).toHaveLength(1);
      expect(await haproxyIn(ns)).toEqual([]);
      expect(ours!.logs().filter((l) => l.msg === "metadata proxy failed to start")).toEqual([]);
    }
  }, 120_000);

  it("the floating IP carries traffic both ways, and a VM without one leaves from the gateway address (SNAT)", async () => {
    const { vm1, vm2, ext } = lab!.hosts;
    expect(await curl(ext, `http://203.0.113.20:${HTTP_PORT}/`)).toBe("remote=203.0.113.100");
    expect(await curl(vm1, `http://203.0.113.100:${HTTP_PORT}/`)).toBe("remote=203.0.113.20");
    expect(await curl(vm2, `http://203.0.113.100:${HTTP_PORT}/`)).toBe("remote=203.0.113.10");
  }, 30_000);

  it("a floating IP associated goes ACTIVE once our agent applied it; disassociated, its rules go and it is DOWN; r1 is then Neutron's steady state", async () => {
    const ns = routerNamespace(ids.r1!);
    const vm2 = await api.createPort({ network_id: ids.net, name: "vm-2", fixed_ips: [{ subnet_id: ids.subnet, ip_address: "10.0.0.6" }], device_owner: "compute:nova", device_id: "9d1f6a2e-0000-4000-8000-000000000002" });
    ids.vm2 = vm2.id;
    const t0 = Date.now();
    const fip2 = await api.createFloatingIp({ floating_network_id: ids.ext, floating_ip_address: "203.0.113.22", port_id: vm2.id });
    ids.fip2 = fip2.id;
    expect(fip2.status).toBe("DOWN");
    await waitFor(async () => (await rules(ns)).includes("-A neutron-l3-agent-PREROUTING -d 203.0.113.22/32 -j DNAT --to-destination 10.0.0.6"), "floating IP 2 DNAT in the kernel", 60_000, oursRunning);
    const inKernel = Date.now() - t0;
    await waitFor(async () => (await fipStatus(fip2.id)) === "ACTIVE", "floating IP 2 ACTIVE", 60_000, oursRunning);
    console.log(`floating IP associated: rules in the kernel after ${inKernel} ms, ACTIVE in the API after ${Date.now() - t0} ms (${breakdown(t0, ids.r1!)})`);
    expect(linesWith(await rules(ns), "203.0.113.22")).toEqual([
      "-A neutron-l3-agent-OUTPUT -d 203.0.113.22/32 -j DNAT --to-destination 10.0.0.6",
      "-A neutron-l3-agent-PREROUTING -d 203.0.113.22/32 -j DNAT --to-destination 10.0.0.6",
      "-A neutron-l3-agent-float-snat -s 10.0.0.6/32 -j SNAT --to-source 203.0.113.22 --random-fully",
    ]);
    expect(await curl(lab!.hosts.ext, `http://203.0.113.22:${HTTP_PORT}/`)).toBe("remote=203.0.113.100");
    expect(await curl(lab!.hosts.vm2, `http://203.0.113.100:${HTTP_PORT}/`)).toBe("remote=203.0.113.22");

    const t1 = Date.now();
    await api.disassociateFloatingIp(fip2.id);
    await waitFor(async () => linesWith(await rules(ns), "203.0.113.22").length === 0, "floating IP 2 rules gone", 60_000, oursRunning);
    const gone = Date.now() - t1;
    await waitFor(async () => (await fipStatus(fip2.id)) === "DOWN", "floating IP 2 DOWN", 60_000, oursRunning);
    console.log(`floating IP disassociated: rules gone after ${gone} ms, DOWN in the API after ${Date.now() - t1} ms (${breakdown(t1, ids.r1!)})`);
    expect((await inNamespace(ns, ["ip", "-4", "-br", "addr", "show", "dev", qg(ids.r1Gateway!)])).includes("203.0.113.22")).toBe(false);
    // vm2 goes out through the gateway address again.
    expect(await curl(lab!.hosts.vm2, `http://203.0.113.100:${HTTP_PORT}/`)).toBe("remote=203.0.113.10");
    // r1 is back to what Neutron processed (one floating IP), after more than one processing: Neutron's b.
    if (reference) expect(await settledRules(ns)).toBe(reference.b);
  }, 240_000);

  it("a router made through the API while our agent runs is scheduled to it; its namespace gets the NAT rules, laid out as Neutron lays out r1's", async () => {
    const net2 = await api.createNetwork({ name: "private-2" });
    const subnet2 = await api.createSubnet({ network_id: net2.id, cidr: "10.1.0.0/24", gateway_ip: "10.1.0.1" });
    const t0 = Date.now();
    const r2 = await api.createRouter({ name: "r2", external_gateway_info: { network_id: ids.ext, external_fixed_ips: [{ subnet_id: ids.extSubnet, ip_address: "203.0.113.11" }] } });
    routerIds.add(r2.id);
    const r2Interface = await api.addRouterInterface(r2.id, { subnet_id: subnet2.id });
    const r2Gateway = (await api.listPorts({ device_id: r2.id, device_owner: "network:router_gateway" }))[0]!.id;
    const ns = routerNamespace(r2.id);
    await waitFor(async () => (await agentNamespaces()).includes(ns) && (await rules(ns)).includes(`-o ${qg(r2Gateway)} -j SNAT --to-source 203.0.113.11`), "r2's namespace with its gateway SNAT", 60_000, oursRunning);
    console.log(`r2: API calls to its namespace with the gateway SNAT: ${Date.now() - t0} ms`);
    const agent = (await l3Agent())!;
    expect((await api.listL3AgentRouters(agent.id)).map((r) => r.id).sort()).toEqual([ids.r1, r2.id].sort());
    expect((await api.listRouterL3Agents(r2.id)).map((a) => a.host)).toEqual([HOST]);

    // A VM port with a floating IP: its rules arrive with the router's next processing.
    const vm3 = await api.createPort({ network_id: net2.id, name: "vm-3", fixed_ips: [{ subnet_id: subnet2.id, ip_address: "10.1.0.5" }], device_owner: "compute:nova", device_id: "9d1f6a2e-0000-4000-8000-000000000003" });
    const fip3 = await api.createFloatingIp({ floating_network_id: ids.ext, floating_ip_address: "203.0.113.21", port_id: vm3.id });
    await waitFor(async () => (await fipStatus(fip3.id)) === "ACTIVE", "r2's floating IP ACTIVE", 60_000, oursRunning);
    Object.assign(ids, { net2: net2.id, subnet2: subnet2.id, r2: r2.id, r2Port: r2Interface.port_id as string, r2Gateway, fip3: fip3.id });
    const save = await settledRules(ns);
    // Floating IP DNAT and SNAT, gateway SNAT, the metadata redirect (nat table, IPv4 then IPv6).
    expect(linesWith(save, "203.0.113.21", "203.0.113.11", "REDIRECT")).toEqual([
      "-A neutron-l3-agent-OUTPUT -d 203.0.113.21/32 -j DNAT --to-destination 10.1.0.5",
      ...(HAPROXY ? ["-A neutron-l3-agent-PREROUTING -d 169.254.169.254/32 -i qr-+ -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 9697"] : []),
      "-A neutron-l3-agent-PREROUTING -d 203.0.113.21/32 -j DNAT --to-destination 10.1.0.5",
      "-A neutron-l3-agent-float-snat -s 10.1.0.5/32 -j SNAT --to-source 203.0.113.21 --random-fully",
      `-A neutron-l3-agent-snat -o ${qg(r2Gateway)} -j SNAT --to-source 203.0.113.11 --random-fully`,
      "-A neutron-l3-agent-snat -m mark ! --mark 0x2/0xffff -m conntrack --ctstate DNAT -j SNAT --to-source 203.0.113.11 --random-fully",
      ...(HAPROXY ? ["-A neutron-l3-agent-PREROUTING -d fe80::a9fe:a9fe/128 -i qr-+ -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 9697"] : []),
    ]);
    // The same layout as Neutron's own agent wrote for r1 after more than one processing, with r2's
    // devices and addresses: byte for byte.
    if (reference) {
      const expected = reference.b
        .replaceAll(qg(ids.r1Gateway!), qg(r2Gateway))
        .replaceAll(qr(ids.r1Port!), qr(r2Interface.port_id as string))
        .replaceAll("203.0.113.10", "203.0.113.11")
        .replaceAll("203.0.113.20", "203.0.113.21")
        .replaceAll("10.0.0.5", "10.1.0.5");
      expect(save).toBe(expected);
    }
  }, 240_000);

  // Each router has one interface and one floating IP here: the order of per-port rules (the address
  // scope marks) follows the order of `_interfaces` in the server's answer, as in Neutron's agent, and
  // neutron-server on PostgreSQL does not keep that order from one answer to the next.
  it("a broker restart loses nothing: our agent reconnects and resyncs, the kernel's rules stay as they were, a change made after it arrives", async () => {
    const before = { r1: await settledRules(routerNamespace(ids.r1!)), r2: await settledRules(routerNamespace(ids.r2!)) };
    const t0 = Date.now();
    await rabbit!.restart();
    const restartMs = Date.now() - t0;
    // The first get_router_ids may go out before neutron-server's own consumers are back (its queues
    // are not durable: the broker drops it); it is then asked again after rpc_response_timeout (60 s).
    await waitFor(() => oursLogSince(t0, (l) => l.msg === "full sync of routers from neutron-server" && l.reason === "reconnected"), "full sync after the reconnect", 150_000, oursRunning);
    expect(oursLogSince(t0, (l) => l.msg === "reconnected to the message broker: full sync (casts sent meanwhile are lost)")).toBeDefined();
    const resyncMs = Date.now() - t0;
    const reconnected = oursLogSince(t0, (l) => l.msg === "reconnected to the broker; consumers restored" && l.purpose === "listen");
    // Whatever the resync would apply is applied within milliseconds of it; nothing is.
    await sleep(1500);
    expect({ r1: await rules(routerNamespace(ids.r1!)), r2: await rules(routerNamespace(ids.r2!)) }).toEqual(before);
    const retried = oursLogSince(t0, (l) => l.msg === "syncing routers with neutron-server failed; what the host has stays, retrying");
    console.log(
      `broker restart: ${restartMs} ms; our agent reconnected ${reconnected ? (reconnected.time as number) - t0 : "?"} ms and finished its full sync ${resyncMs} ms after it began` +
        (retried ? ` (a first attempt failed: ${JSON.stringify((retried.err as { message?: string } | undefined)?.message)})` : ""),
    );

    // A change after the restart arrives (neutron-server reconnects on its own): floating IP 2 again.
    const ns = routerNamespace(ids.r1!);
    const t1 = Date.now();
    await api.associateFloatingIp(ids.fip2!, ids.vm2!);
    await waitFor(async () => (await rules(ns)).includes("-A neutron-l3-agent-PREROUTING -d 203.0.113.22/32 -j DNAT --to-destination 10.0.0.6"), "floating IP 2 DNAT after the restart", 60_000, oursRunning);
    await waitFor(async () => (await fipStatus(ids.fip2!)) === "ACTIVE", "floating IP 2 ACTIVE after the restart", 60_000, oursRunning);
    console.log(`after the broker restart: a floating IP association reached the kernel and came back ACTIVE in ${Date.now() - t1} ms (${breakdown(t1, ids.r1!)})`);
    expect(await curl(lab!.hosts.ext, `http://203.0.113.22:${HTTP_PORT}/`)).toBe("remote=203.0.113.100");
    await waitFor(async () => (await l3Agent())?.alive === true, "our agent alive after the restart", 60_000, oursRunning);
  }, 300_000);

  it("routers_updated round trip: a second interface added through the API reaches the kernel without a restart", async () => {
    const ns = routerNamespace(ids.r1!);
    const net3 = await api.createNetwork({ name: "private-3" });
    const subnet3 = await api.createSubnet({ network_id: net3.id, cidr: "10.2.0.0/24", gateway_ip: "10.2.0.1" });
    Object.assign(ids, { net3: net3.id, subnet3: subnet3.id });
    const t0 = performance.now();
    const wall = Date.now();
    const added = await api.addRouterInterface(ids.r1!, { subnet_id: subnet3.id });
    const apiMs = performance.now() - t0;
    const device = qr(added.port_id as string);
    ids.r1Port3 = added.port_id as string;
    await waitFor(async () => (await rules(ns)).includes(`-A neutron-l3-agent-scope -o ${device} -m mark ! --mark 0x4000000/0xffff0000 -j DROP`), "the new interface's rules in the kernel", 60_000, oursRunning);
    const totalMs = performance.now() - t0;
    console.log(`routers_updated: add_router_interface answered in ${apiMs.toFixed(0)} ms; its rules in the kernel ${totalMs.toFixed(0)} ms after the call (${breakdown(wall, ids.r1!)})`);
    expect(await inNamespace(ns, ["ip", "-4", "-br", "addr", "show", "dev", device])).toMatch(new RegExp(`^${device}@\\S+ +UP +10\\.2\\.0\\.1/24`));
    // Its address scope rules (filter, mangle), IPv4 only: the subnet is IPv4.
    expect(linesWith(await rules(ns), device)).toEqual([
      `-A neutron-l3-agent-scope -o ${device} -m mark ! --mark 0x4000000/0xffff0000 -j DROP`,
      `-A neutron-l3-agent-scope -i ${device} -j MARK --set-xmark 0x4000000/0xffff0000`,
    ]);
  }, 120_000);

  it("an HA router from the server is a problem of that router only: named in the log, never touched, the other routers as they were", async (ctx) => {
    const before = { r1: await rules(routerNamespace(ids.r1!)), r2: await rules(routerNamespace(ids.r2!)) };
    const t0 = Date.now();
    let ha: NeutronResource;
    try {
      ha = await api.createRouter({ name: "ha", ha: true, external_gateway_info: { network_id: ids.ext } });
    } catch (err) {
      ctx.skip(`the server does not make an HA router here: ${(err as Error).message}`);
      return;
    }
    routerIds.add(ha.id);
    const net4 = await api.createNetwork({ name: "private-4" });
    const subnet4 = await api.createSubnet({ network_id: net4.id, cidr: "10.3.0.0/24", gateway_ip: "10.3.0.1" });
    await api.addRouterInterface(ha.id, { subnet_id: subnet4.id });
    const problem = await waitFor(() => oursLogSince(t0, (l) => l.resource === ha.id && typeof l.path === "string" && l.path.endsWith(".ha")), "the HA router's problem in our log", 60_000, oursRunning);
    expect(problem.problem).toMatch(/HA routers .* not supported/);
    console.log(`HA router: held as a problem ${(problem.time as number) - t0} ms after its create call`);
    expect(await agentNamespaces()).not.toContain(routerNamespace(ha.id));
    await sleep(1000);
    expect({ r1: await rules(routerNamespace(ids.r1!)), r2: await rules(routerNamespace(ids.r2!)) }).toEqual(before);
  }, 120_000);

  it("stopped, our agent exits 0, its routers' rules stay, and the server shows it dead after agent_down_time", async () => {
    const before = await rules(routerNamespace(ids.r1!));
    const t0 = Date.now();
    ours!.signal("SIGTERM");
    const exit = await ours!.exited;
    expect(exit.code, ours!.describe()).toBe(0);
    const exitMs = Date.now() - t0;
    await waitFor(async () => (await l3Agent())?.alive === false, "the agent shown dead", (AGENT_DOWN_TIME + 20) * 1000);
    const deadMs = Date.now() - t0;
    console.log(`stop: exit after ${exitMs} ms, shown dead ${deadMs} ms after SIGTERM (agent_down_time ${AGENT_DOWN_TIME} s, report_interval ${REPORT_INTERVAL} s)`);
    expect(deadMs).toBeGreaterThan((AGENT_DOWN_TIME - REPORT_INTERVAL) * 1000);
    expect(await rules(routerNamespace(ids.r1!))).toBe(before);
  }, 60_000);
});
