/**
 * The l2 agent as the security-group firewall of a Linux bridge host, driven by a real
 * neutron-server (Debian's 21.0.0, Zed) over a real RabbitMQ (`@chainwarden/openstack-lab`), on
 * the real kernel. One broker and one server for the file; the cases run in order on one scene.
 *
 * The compute host is a namespace of the test's own with a Linux bridge (`brq<network id[:11]>`,
 * bridge-nf-call-iptables on) and one tap per port, `tap<port id[:11]>`, as Nova plugs them: the
 * bridge end of a veth whose other end is `eth0` in a "VM" namespace with the port's MAC and IP,
 * so real packets cross the bridge (net-tool from @chainwarden/testing). The ports are created
 * through Neutron's REST API; the server resolves the tap names to them without any binding. The
 * agent is the built binary, started as an operator starts it beside neutron-linuxbridge-agent:
 * `l2-agent run --config-file neutron.conf --config-file linuxbridge_agent.ini --netns <host>`.
 *
 *   vm1  WEB      tcp 22 from anyone, tcp 5000 from members of CLIENTS (servers on 22, 80, 5000)
 *   vm2  CLIENTS  (a member of CLIENTS from the start)
 *   vm3  OTHER    (joins CLIENTS later, then is deleted)
 *   a DHCP port (device_owner network:dhcp, bound to the agent's host): trusted
 *
 * Everything the test makes has a unique name and goes in afterAll, also after a failure; the
 * broker and the server listen on loopback only; traffic flows only between the test's namespaces.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { normalizeSave } from "@chainwarden/core";
import { NeutronApi, NeutronServerLab, OsloPeer, RabbitMqLab, type NeutronResource } from "@chainwarden/openstack-lab";
import { AgentProcess, createNetns, isRoot, netToolPath, waitFor, type LogLine, type TestNetns } from "@chainwarden/testing";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

const BIN = fileURLToPath(new URL("../bin/l2-agent.js", import.meta.url));
const RENDER_PAYLOAD = fileURLToPath(new URL("../../../tools/neutron-reference/render_payload.py", import.meta.url));
const HOST = `cw-l2e2e-${process.pid}-${randomBytes(3).toString("hex")}`;
const WRAP = "neutron-linuxbri";
const SUBNET = "10.20.30";

const tapOf = (portId: string) => `tap${portId.slice(0, 11)}`;
/** Neutron's per-port chain: `i`/`o`/`s` and the device without `tap`, cut to fit the wrap name. */
const chainOf = (direction: "i" | "o" | "s", portId: string) => `${WRAP}-${direction}${tapOf(portId).slice(3, 13)}`;

interface Vm {
  port: NeutronResource;
  ip: string;
  netns: TestNetns;
}

/** Runs a step until `check` holds and returns how long it took from `since`. */
async function until(what: string, check: () => Promise<boolean>, since: number, timeoutMs = 30_000): Promise<number> {
  for (;;) {
    if (await check()) return Date.now() - since;
    if (Date.now() - since > timeoutMs) throw new Error(`${what}: not after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function normalizeIpsetSave(text: string): string {
  const sets = new Map<string, { create: string; adds: string[] }>();
  for (const line of text.split("\n")) {
    const w = line.trim().split(/\s+/);
    if (w[0] === "create") sets.set(w[1]!, { create: line.trim().replace(/ initval 0x[0-9a-f]+/, ""), adds: [] });
    else if (w[0] === "add") sets.get(w[1]!)?.adds.push(line.trim());
  }
  return [...sets.keys()]
    .sort()
    .flatMap((name) => [sets.get(name)!.create, ...sets.get(name)!.adds.sort()])
    .join("\n");
}

describe.skipIf(!isRoot())("l2-agent driven by a real neutron-server", () => {
  let rabbit: RabbitMqLab | undefined;
  let neutron: NeutronServerLab | undefined;
  let peer: OsloPeer | undefined;
  let agent: AgentProcess | undefined;
  let api: NeutronApi;
  let host: TestNetns | undefined;
  const namespaces: TestNetns[] = [];
  const servers: ChildProcess[] = [];
  let dir = "";
  const groups: Record<"web" | "clients" | "other", string> = { web: "", clients: "", other: "" };
  let vm1: Vm;
  let vm2: Vm;
  let vm3: Vm;
  let dhcp: NeutronResource;
  let subnetId: string;
  let agentStarted = 0;

  const save = async (family: 4 | 6 = 4) => (await host!.exec([family === 4 ? "iptables-save" : "ip6tables-save"])).stdout;
  const ipsetSave = async () => (await host!.exec(["ipset", "save"])).stdout;
  const ipsetMembers = async (group: string) => {
    // Neutron's IpsetManager.get_name: NIPv4 + the group id, cut to 29 (room for the swap set's "-n").
    const name = `NIPv4${group}`.slice(0, 29);
    return ipsetSave().then((text) => text.split("\n").filter((l) => l.startsWith(`add ${name} `)).map((l) => l.split(" ")[2]!));
  };
  const probe = async (from: Vm, to: Vm, port: number) => {
    const r = await from.netns.exec([process.execPath, netToolPath(), "probe", to.ip, String(port)], { reject: false });
    return r.stdout.trim() === "ok";
  };

  /**
   * Where the time of a change went, from the agent's debug log: when the server's cast arrived, how
   * long the server took to answer, when the rules were in (all from `since`, the API call's start).
   */
  const breakdown = (since: number): string => {
    const after = agent!.logs().filter((l) => Number(l.time) >= since);
    const cast = after.find((l) => l.msg === "security groups changed on neutron-server" || l.msg === "port updated on neutron-server");
    const answered = after.find((l) => l.msg === "security group information from neutron-server");
    const applied = after.find((l) => l.msg === "namespace applied" && Number(l.time) >= Number(answered?.time ?? Infinity));
    const at = (l: LogLine | undefined) => (l ? `${Number(l.time) - since} ms` : "?");
    return `cast in at ${at(cast)}, server answered in ${String(answered?.askedMs ?? "?")} ms (at ${at(answered)})${applied ? `, rules applied at ${at(applied)}` : ""}`;
  };

  /** A VM: its port through the API, its namespace, the veth whose host end is the port's tap on the bridge. */
  async function createVm(name: string, ip: string, group: string, bridge: string): Promise<Vm> {
    const port = await api.createPort({ name, network_id: dhcp.network_id, fixed_ips: [{ subnet_id: subnetId, ip_address: ip }], security_groups: [group], device_owner: "compute:nova", device_id: randomUUID() });
    const netns = await createNetns("cw-l2e2e-vm");
    namespaces.push(netns);
    const tap = tapOf(port.id);
    await host!.exec(["ip", "link", "add", tap, "type", "veth", "peer", "name", "eth0", "netns", netns.name]);
    await host!.exec(["ip", "link", "set", tap, "master", bridge, "up"]);
    for (const argv of [
      ["ip", "link", "set", "lo", "up"],
      ["ip", "link", "set", "eth0", "address", port.mac_address as string],
      ["ip", "addr", "add", `${ip}/24`, "dev", "eth0"],
      ["ip", "link", "set", "eth0", "up"],
    ]) {
      await netns.exec(argv);
    }
    return { port, ip, netns };
  }

  /** A server in a VM (net-tool echo-server), ended by closing its stdin. */
  async function serve(vm: Vm, port: number): Promise<void> {
    const child = spawn("ip", ["netns", "exec", vm.netns.name, process.execPath, netToolPath(), "echo-server", String(port)], { stdio: ["pipe", "pipe", "inherit"] });
    servers.push(child);
    await new Promise<void>((resolve, reject) => {
      child.stdout!.setEncoding("utf8").on("data", (d: string) => d.includes("ready") && resolve());
      child.on("exit", (code) => reject(new Error(`echo-server ${port} in ${vm.netns.name} exited (${code})`)));
    });
  }

  beforeAll(async () => {
    const t0 = Date.now();
    dir = mkdtempSync(join(tmpdir(), "cw-l2e2e-"));
    rabbit = await RabbitMqLab.start();
    const rabbitMs = Date.now() - t0;
    const peerStarting = OsloPeer.start(rabbit.transportUrl).then((p) => (peer = p));
    peerStarting.catch(() => undefined);
    const hostMaking = createNetns("cw-l2e2e-host").then((ns) => (host = ns));
    hostMaking.catch(() => undefined);
    neutron = await NeutronServerLab.start({ transportUrl: rabbit.transportUrl });
    await Promise.all([peerStarting, hostMaking]);
    api = new NeutronApi(neutron.url);

    const network = await api.createNetwork({ name: "l2e2e" });
    subnetId = (await api.createSubnet({ network_id: network.id, cidr: `${SUBNET}.0/24`, gateway_ip: `${SUBNET}.1`, enable_dhcp: false })).id;
    groups.web = (await api.createSecurityGroup({ name: "web" })).id;
    groups.clients = (await api.createSecurityGroup({ name: "clients" })).id;
    groups.other = (await api.createSecurityGroup({ name: "other" })).id;
    await api.createSecurityGroupRule({ security_group_id: groups.web, direction: "ingress", protocol: "tcp", port_range_min: 22, port_range_max: 22, remote_ip_prefix: "0.0.0.0/0" });
    await api.createSecurityGroupRule({ security_group_id: groups.web, direction: "ingress", protocol: "tcp", port_range_min: 5000, port_range_max: 5000, remote_group_id: groups.clients });
    // The network's DHCP port, bound to the agent's host as a DHCP agent there would bind it.
    dhcp = await api.createPort({ name: "dhcp", network_id: network.id, fixed_ips: [{ subnet_id: subnetId, ip_address: `${SUBNET}.2` }], device_owner: "network:dhcp", device_id: `dhcp-${HOST}`, "binding:host_id": HOST });

    const bridge = `brq${network.id.slice(0, 11)}`;
    for (const argv of [
      ["sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1"],
      ["sysctl", "-q", "-w", "net.bridge.bridge-nf-call-ip6tables=1"],
      ["ip", "link", "set", "lo", "up"],
      ["ip", "link", "add", bridge, "type", "bridge"],
      ["ip", "link", "set", bridge, "up"],
      // The DHCP port's tap (its namespace end is of no interest here).
      ["ip", "link", "add", tapOf(dhcp.id), "type", "veth", "peer", "name", "dhcp-peer"],
      ["ip", "link", "set", tapOf(dhcp.id), "master", bridge, "up"],
    ]) {
      await host!.exec(argv);
    }
    vm1 = await createVm("vm1", `${SUBNET}.11`, groups.web, bridge);
    vm2 = await createVm("vm2", `${SUBNET}.12`, groups.clients, bridge);
    vm3 = await createVm("vm3", `${SUBNET}.13`, groups.other, bridge);
    for (const port of [22, 80, 5000]) await serve(vm1, port);

    // Neutron's own files, as a compute node has them (plus what the lab needs: its broker, a unique host).
    writeFileSync(
      join(dir, "neutron.conf"),
      [
        "[DEFAULT]",
        `host = ${HOST}`,
        `transport_url = ${rabbit.transportUrl}`,
        // A call in flight when the broker restarts waits this long before the resync can go.
        "rpc_response_timeout = 10",
        "core_plugin = ml2",
        "auth_strategy = keystone",
        "",
        "[agent]",
        "root_helper = sudo /usr/bin/neutron-rootwrap /etc/neutron/rootwrap.conf",
        "",
        "[oslo_concurrency]",
        "lock_path = /var/lock/neutron",
        "",
      ].join("\n"),
    );
    writeFileSync(
      join(dir, "linuxbridge_agent.ini"),
      [
        "[linux_bridge]",
        "physical_interface_mappings = provider:eth1",
        "",
        "[vxlan]",
        "enable_vxlan = true",
        "local_ip = 192.0.2.21",
        "",
        "[securitygroup]",
        "firewall_driver = iptables",
        "enable_ipset = true",
        "",
      ].join("\n"),
    );
    console.log(`started: rabbitmq ${rabbitMs} ms, neutron-server ${JSON.stringify(neutron.timings)} ms, scene ready after ${Date.now() - t0} ms`);
    agentStarted = Date.now();
    agent = new AgentProcess(BIN, ["run", "--config-file", join(dir, "neutron.conf"), "--config-file", join(dir, "linuxbridge_agent.ini"), "--netns", host!.name, "--log-level", "debug"], 20 * 60_000);
  }, 240_000);

  afterAll(async () => {
    await agent?.kill();
    for (const s of servers) s.stdin?.end();
    await peer?.close();
    await neutron?.stop();
    await rabbit?.stop();
    for (const ns of [...namespaces].reverse()) await ns.delete();
    await host?.delete();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  afterEach(({ task }) => {
    if (task.result?.state !== "fail") return;
    if (agent) console.log(`agent:\n${agent.describe()}`);
    const errors = neutron?.log().split("\n").filter((l) => / (ERROR|CRITICAL) /.test(l)) ?? [];
    if (errors.length) console.log(`neutron-server errors:\n${errors.slice(-40).join("\n")}`);
  });

  it("filters the host's taps as the server describes them: the same rules as Neutron's IptablesFirewallDriver for the same answer", async () => {
    const ports = [vm1, vm2, vm3].map((vm) => vm.port.id);
    const firstSync = await until(
      "the ports' chains",
      async () => {
        // The two families are applied one after the other: wait for both.
        const [v4, v6] = [await save(4), await save(6)];
        return ports.every((id) => v4.includes(`:${chainOf("i", id)} `) && v6.includes(`:${chainOf("i", id)} `)) && v4.includes(`--physdev-out ${tapOf(dhcp.id)} `) && v6.includes(`--physdev-out ${tapOf(dhcp.id)} `);
      },
      agentStarted,
      60_000,
    );
    // The log line of the apply may trail the rules it applied.
    await waitFor(() => agent!.logs().some((l) => l.msg === "namespace applied"), "the apply's log line", 10_000);
    const logs = agent!.logs();
    const first = (msg: string) => logs.find((l) => l.msg === msg);
    const at = (msg: string) => `${Number(first(msg)?.time) - agentStarted} ms`;
    console.log(
      `agent start → every port's chains and the DHCP port trusted: ${firstSync} ms (first log at ${Number(logs[0]?.time) - agentStarted} ms, ` +
        `consuming the casts at ${Number(logs.filter((l) => l.msg === "RPC server consuming").at(-1)?.time) - agentStarted} ms, ` +
        `the server's answer at ${at("security group information from neutron-server")} (asked for ${String(first("security group information from neutron-server")?.askedMs)} ms), applied at ${at("namespace applied")})`,
    );
    const ours = { v4: normalizeSave(await save(4)), v6: normalizeSave(await save(6)), ipset: normalizeIpsetSave(await ipsetSave()) };
    expect(ours.v4).toContain(`-A ${WRAP}-FORWARD -m physdev --physdev-out ${tapOf(dhcp.id)} --physdev-is-bridged -m comment --comment "Accept all packets when port is trusted." -j ACCEPT`);

    // The answer the server gives for these taps (asked by the real Python oslo.messaging), rendered by
    // Neutron's own agent code in a fresh namespace (tools/neutron-reference/render_payload.py).
    const devices = [...ports, dhcp.id].map(tapOf).sort();
    const answer = await peer!.call({ topic: "q-plugin", method: "security_group_info_for_devices", version: "1.3", args: { devices, call_version: "1.3" } });
    writeFileSync(join(dir, "payload.json"), JSON.stringify(answer));
    writeFileSync(join(dir, "devices.json"), JSON.stringify(devices));
    const ref = await createNetns("cw-l2e2e-ref");
    namespaces.push(ref);
    const rendered = await ref.exec(["/usr/bin/python3", RENDER_PAYLOAD, join(dir, "payload.json"), join(dir, "devices.json"), "--enable-ipset"], { reject: false });
    expect(rendered.exitCode, rendered.stderr).toBe(0);
    const neutronSaves = {
      v4: normalizeSave((await ref.exec(["iptables-save"])).stdout),
      v6: normalizeSave((await ref.exec(["ip6tables-save"])).stdout),
      ipset: normalizeIpsetSave((await ref.exec(["ipset", "save"])).stdout),
    };
    await ref.delete();
    expect(ours.v4).toBe(neutronSaves.v4);
    expect(ours.v6).toBe(neutronSaves.v6);
    expect(ours.ipset).toBe(neutronSaves.ipset);
  });

  it("traffic the groups allow passes, everything else is dropped", async () => {
    expect(await probe(vm2, vm1, 22)).toBe(true);
    expect(await probe(vm3, vm1, 22)).toBe(true);
    expect(await probe(vm2, vm1, 80)).toBe(false);
    // tcp 5000 only from members of CLIENTS: vm2 is one, vm3 is not.
    expect(await probe(vm2, vm1, 5000)).toBe(true);
    expect(await probe(vm3, vm1, 5000)).toBe(false);
    // vm2's group has no ingress rule at all.
    expect(await probe(vm1, vm2, 22)).toBe(false);
  });

  it("a rule created through the API reaches the port's chain and opens the traffic; deleted, it closes it", async () => {
    const line = `-A ${chainOf("i", vm1.port.id)} -p tcp -m tcp --dport 80 -j RETURN`;
    let t = Date.now();
    const rule = await api.createSecurityGroupRule({ security_group_id: groups.web, direction: "ingress", protocol: "tcp", port_range_min: 80, port_range_max: 80 });
    const apiMs = Date.now() - t;
    const created = await until("the new rule in the kernel", async () => (await save()).includes(`${line}\n`), t);
    console.log(`security group rule created: API ${apiMs} ms, in the kernel ${created} ms after the call began (${breakdown(t)}): ${line}`);
    expect(await probe(vm2, vm1, 80)).toBe(true);

    t = Date.now();
    await api.deleteSecurityGroupRule(rule.id);
    const deleted = await until("the rule gone from the kernel", async () => !(await save()).includes(`${line}\n`), t);
    console.log(`security group rule deleted: gone from the kernel ${deleted} ms after the call began (${breakdown(t)})`);
    expect(await probe(vm2, vm1, 80)).toBe(false);
    expect(await probe(vm2, vm1, 22)).toBe(true);
  });

  it("a port joining a remote group updates the group's ipset, and its member gets in", async () => {
    expect(await ipsetMembers(groups.clients)).toEqual([vm2.ip]);
    const t = Date.now();
    await api.updatePort(vm3.port.id, { security_groups: [groups.clients] });
    const joined = await until("vm3 in the CLIENTS ipset", async () => (await ipsetMembers(groups.clients)).includes(vm3.ip), t);
    console.log(`port joined a remote group: its address in the ipset ${joined} ms after the API call began (${breakdown(t)})`);
    expect((await ipsetMembers(groups.clients)).sort()).toEqual([vm2.ip, vm3.ip].sort());
    expect(await probe(vm3, vm1, 5000)).toBe(true);
  });

  it("a port deleted through the API keeps its rules while its tap exists (as in Neutron) and loses its chains with the tap", async () => {
    let t = Date.now();
    await api.deletePort(vm3.port.id);
    const left = await until("vm3 out of the CLIENTS ipset", async () => !(await ipsetMembers(groups.clients)).includes(vm3.ip), t);
    console.log(`port deleted: its address out of the remote group's ipset ${left} ms after the API call began (${breakdown(t)})`);
    expect(await probe(vm3, vm1, 5000)).toBe(false);
    expect(await save()).toContain(`:${chainOf("i", vm3.port.id)} `);

    // Nova unplugs the VM: its namespace goes, and the tap with it.
    t = Date.now();
    await vm3.netns.delete();
    const gone = await until(
      "vm3's chains gone",
      async () => {
        const text = await save();
        return !text.includes(chainOf("i", vm3.port.id)) && !text.includes(chainOf("o", vm3.port.id)) && !text.includes(tapOf(vm3.port.id));
      },
      t,
    );
    console.log(`tap removed: its chains and rules gone ${gone} ms later`);
    for (const vm of [vm1, vm2]) expect(await save()).toContain(`:${chainOf("i", vm.port.id)} `);
    expect(await probe(vm2, vm1, 22)).toBe(true);
  });

  it("a broker restart loses nothing: the kernel is unchanged, and a change after it arrives", async () => {
    const before = { v4: normalizeSave(await save(4)), v6: normalizeSave(await save(6)), ipset: normalizeIpsetSave(await ipsetSave()) };
    const logsBefore = agent!.logs().length;
    const since = () => agent!.logs().slice(logsBefore);
    let t = Date.now();
    await rabbit!.restart();
    const restartMs = Date.now() - t;
    await waitFor(() => since().some((l) => String(l.msg).startsWith("reconnected to the message broker")), "the agent reconnected", 60_000, () => agent!.running);
    const reconnectMs = Date.now() - t;
    // The fresh answer for every tap that follows a reconnect (casts sent meanwhile are lost), and its apply.
    await waitFor(
      () => {
        const after = since();
        const at = after.findIndex((l) => String(l.msg).startsWith("reconnected to the message broker"));
        return after.slice(at).some((l) => l.msg === "security group information from neutron-server" && l.why === "full");
      },
      "the full answer after the reconnect",
      60_000,
      () => agent!.running,
    );
    const resyncMs = Date.now() - t;
    await new Promise((r) => setTimeout(r, 1000));
    expect(normalizeSave(await save(4))).toBe(before.v4);
    expect(normalizeSave(await save(6))).toBe(before.v6);
    expect(normalizeIpsetSave(await ipsetSave())).toBe(before.ipset);
    expect(await probe(vm2, vm1, 22)).toBe(true);

    const line = `-A ${chainOf("i", vm1.port.id)} -p tcp -m tcp --dport 80 -j RETURN`;
    t = Date.now();
    await api.createSecurityGroupRule({ security_group_id: groups.web, direction: "ingress", protocol: "tcp", port_range_min: 80, port_range_max: 80 });
    const arrived = await until("a rule created after the restart", async () => (await save()).includes(`${line}\n`), t, 60_000);
    console.log(`broker restart: ${restartMs} ms; the agent reconnected ${reconnectMs} ms and had every tap's answer again ${resyncMs} ms after it began (kernel unchanged); a rule created afterwards in the kernel ${arrived} ms after the call`);
    expect(await probe(vm2, vm1, 80)).toBe(true);
  });
});
