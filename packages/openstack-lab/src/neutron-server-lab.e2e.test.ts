/**
 * A real neutron-server on a real RabbitMQ, driven through its REST API, with agents played by the
 * real Python oslo.messaging (OsloPeer): proves the RPC path end to end and records what the server
 * really sends as the fixtures in ../test-fixtures/neutron-server/ (see its README). With
 * CW_WRITE_FIXTURES=1 the run rewrites them; otherwise each live payload must keep its fixture's shape
 * (the same keys and value types, recursively), so a fixture that no longer describes the server fails.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { NeutronApi, NOAUTH_PROJECT_ID, type NeutronResource } from "./neutron-api.js";
import { NeutronServerLab } from "./neutron-server-lab.js";
import { OsloPeer, type OsloMessage, type OsloReceived } from "./oslo-peer.js";
import { RabbitMqLab } from "./rabbitmq-lab.js";

const FIXTURES = fileURLToPath(new URL("../test-fixtures/neutron-server/", import.meta.url));
const WRITE = process.env.CW_WRITE_FIXTURES === "1";

const L3_HOST = "network-1";
const L2_HOST = "compute-1";
// Short, so the last test sees an agent die quickly; the agents here report every second.
const AGENT_DOWN_TIME = 6;

/** What Neutron's agents send as `time` (`ISO8601_TIME_FORMAT`, UTC, microseconds, no zone). */
function agentTime(): string {
  return `${new Date().toISOString().slice(0, 23)}000`;
}

/** neutron.agent.l3.agent.L3NATAgentWithStateReport's agent_state, for a legacy l3 agent with no routers yet. */
function l3AgentState(host: string): Record<string, unknown> {
  return {
    binary: "neutron-l3-agent",
    host,
    availability_zone: "nova",
    topic: "l3_agent",
    configurations: {
      agent_mode: "legacy",
      handle_internal_only_routers: true,
      interface_driver: "linuxbridge",
      log_agent_heartbeats: false,
      extensions: [],
      routers: 0,
      ex_gw_ports: 0,
      interfaces: 0,
      floating_ips: 0,
    },
    start_flag: true,
    agent_type: "L3 agent",
  };
}

/** The Linux bridge agent's agent_state (CommonAgentLoop + LinuxBridgeManager.get_agent_configurations), VXLAN on. */
function linuxBridgeAgentState(host: string): Record<string, unknown> {
  return {
    binary: "neutron-linuxbridge-agent",
    host,
    topic: "N/A",
    configurations: {
      bridge_mappings: {},
      interface_mappings: { "physnet-ext": "eth1" },
      tunneling_ip: "192.0.2.11",
      tunnel_types: ["vxlan"],
      l2_population: false,
      devices: 0,
    },
    agent_type: "Linux bridge agent",
    // neutron.api.rpc.callbacks.resources.LOCAL_RESOURCE_VERSIONS of Neutron 21.0.0 (Zed).
    resource_versions: {
      QosPolicy: "1.10", Trunk: "1.1", SubPort: "1.0", Port: "1.7", Subnet: "1.1", Network: "1.1", SecurityGroup: "1.5",
      SecurityGroupRule: "1.2", Log: "1.0", PortForwarding: "1.3", ConntrackHelper: "1.0", AddressGroup: "1.2",
      LocalIPAssociation: "1.0", NDPProxy: "1.0", Agent: "1.1",
    },
    start_flag: true,
  };
}

/** PluginReportStateAPI.report_state(use_call=True): topic q-reports-plugin, version 1.2. */
function reportState(state: Record<string, unknown>): OsloMessage {
  return {
    topic: "q-reports-plugin",
    method: "report_state",
    version: "1.2",
    args: { agent_state: { agent_state: { ...state, uuid: crypto.randomUUID() } }, time: agentTime() },
  };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * The structure of a value: keys and value types, recursively (arrays: the union of their items;
 * objects keyed by ids, as `devices` and `security_groups` are: one `<uuid>` key, the union of the values).
 */
function shapeOf(value: unknown): unknown {
  if (Array.isArray(value)) {
    const items = new Map<string, unknown>();
    for (const item of value) items.set(JSON.stringify(shapeOf(item)), shapeOf(item));
    return [...items.keys()].sort().map((key) => items.get(key));
  }
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>);
    const byId = entries.filter(([key]) => UUID.test(key));
    const rest = entries.filter(([key]) => !UUID.test(key)).map(([key, v]) => [key, shapeOf(v)] as const);
    const ids = byId.length ? [["<uuid>", shapeOf(byId.map(([, v]) => v))] as const] : [];
    return Object.fromEntries([...rest, ...ids].sort(([a], [b]) => a.localeCompare(b)));
  }
  return value === null ? "null" : typeof value;
}

/**
 * Writes the fixture (CW_WRITE_FIXTURES=1) or checks that the live payload still has the fixture's
 * shape (`project`: what of it must stay the same; default its whole structure).
 */
function fixture(name: string, payload: unknown, project: (value: unknown) => unknown = shapeOf): void {
  const path = `${FIXTURES}${name}`;
  if (WRITE) {
    mkdirSync(FIXTURES, { recursive: true });
    writeFileSync(path, `${JSON.stringify(payload, null, 2)}\n`);
    return;
  }
  expect(existsSync(path), `${path} (write it with CW_WRITE_FIXTURES=1)`).toBe(true);
  expect(project(payload), name).toEqual(project(JSON.parse(readFileSync(path, "utf8"))));
}

async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe("NeutronServerLab: a real neutron-server, its API and its RPC to agents", () => {
  let rabbit: RabbitMqLab | undefined;
  let neutron: NeutronServerLab | undefined;
  let peer: OsloPeer | undefined;
  let api: NeutronApi;
  const beats: ReturnType<typeof setInterval>[] = [];
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    const t = Date.now();
    rabbit = await RabbitMqLab.start();
    const rabbitMs = Date.now() - t;
    // Assigned as soon as it runs, so that afterAll closes it even when the server does not start.
    const peerStarting = OsloPeer.start(rabbit.transportUrl).then((p) => (peer = p));
    peerStarting.catch(() => undefined);
    neutron = await NeutronServerLab.start({ transportUrl: rabbit.transportUrl, agentDownTime: AGENT_DOWN_TIME });
    await peerStarting;
    api = new NeutronApi(neutron.url);
    console.log(`started: rabbitmq ${rabbitMs} ms, neutron-server ${JSON.stringify(neutron.timings)} ms, total ${Date.now() - t} ms`);
  }, 180_000);

  afterAll(async () => {
    for (const beat of beats) clearInterval(beat);
    await peer?.close();
    await neutron?.stop();
    await rabbit?.stop();
  }, 60_000);

  // A failing step shows what the server logged as an error (its log goes with the lab's directory).
  afterEach(({ task }) => {
    if (task.result?.state !== "fail" || !neutron) return;
    const errors = neutron.log().split("\n").filter((line) => / (ERROR|CRITICAL) /.test(line));
    if (errors.length) console.log(`neutron-server errors:\n${errors.slice(-60).join("\n")}`);
  });

  /** Reports an agent's state now and then every second, as the agent's heartbeat would. */
  async function startAgent(state: Record<string, unknown>): Promise<unknown> {
    const first = await peer!.call(reportState(state));
    const { start_flag: _, resource_versions: __, ...later } = state;
    beats.push(setInterval(() => void peer!.call(reportState(later)).catch(() => undefined), 1000));
    return first;
  }

  const l3Call = (method: string, version: string, args: Record<string, unknown>): OsloMessage => ({ topic: "q-l3-plugin", method, version, args });

  it("answers the API with no agents yet, as an admin of noauth's project", async () => {
    expect(await api.listAgents()).toEqual([]);
    const network = await api.createNetwork({ name: "probe" });
    expect(network.project_id).toBe(NOAUTH_PROJECT_ID);
    await api.deleteNetwork(network.id);
    await expect(api.getNetwork(network.id)).rejects.toMatchObject({ status: 404, type: "NetworkNotFound" });
  });

  it("builds an external network, a tenant network and a router with a gateway and an interface", async () => {
    const ext = await api.createExternalNetwork(neutron!.physicalNetwork, { name: "public" });
    expect(ext).toMatchObject({ "router:external": true, "provider:network_type": "flat", "provider:physical_network": "physnet-ext" });
    const extSubnet = await api.createSubnet({ network_id: ext.id, cidr: "203.0.113.0/24", gateway_ip: "203.0.113.1", enable_dhcp: false });
    const net = await api.createNetwork({ name: "private" });
    expect(net["provider:network_type"]).toBe("vxlan");
    const subnet = await api.createSubnet({ network_id: net.id, cidr: "10.0.0.0/24", gateway_ip: "10.0.0.1" });
    const router = await api.createRouter({ name: "r1", external_gateway_info: { network_id: ext.id, external_fixed_ips: [{ subnet_id: extSubnet.id, ip_address: "203.0.113.10" }] } });
    expect(router.external_gateway_info).toMatchObject({ network_id: ext.id, enable_snat: true });
    const added = await api.addRouterInterface(router.id, { subnet_id: subnet.id });
    expect(added).toMatchObject({ subnet_id: subnet.id });
    Object.assign(ids, { ext: ext.id, extSubnet: extSubnet.id, net: net.id, subnet: subnet.id, router: router.id, routerPort: added.port_id as string });
    const missing = "00000000-0000-4000-8000-000000000000";
    await expect(api.createRouter({ external_gateway_info: { network_id: missing } })).rejects.toMatchObject({ status: 404, type: "NetworkNotFound", serverMessage: `Network ${missing} could not be found.` });
  });

  it("takes an l3 agent's report_state from Python oslo.messaging and shows the agent alive", async () => {
    await peer!.listen("l3_agent", L3_HOST);
    expect(await startAgent(l3AgentState(L3_HOST))).toBe("new");
    const agents = await api.listAgents({ agent_type: "L3 agent" });
    expect(agents).toHaveLength(1);
    expect(agents[0]).toMatchObject({ host: L3_HOST, binary: "neutron-l3-agent", topic: "l3_agent", alive: true, admin_state_up: true });
    ids.l3Agent = agents[0]!.id;
    const { start_flag: _, ...later } = l3AgentState(L3_HOST);
    expect(await peer!.call(reportState(later))).toBe("alive");
    fixture("report-state-l3-agent.json", { request: reportState(l3AgentState(L3_HOST)), reply: "new", agent: agents[0] });
  });

  it("schedules the router to the agent when it asks for its router ids (get_router_ids)", async () => {
    const before = peer!.received.length;
    const routerIds = await peer!.call<string[]>(l3Call("get_router_ids", "1.9", { host: L3_HOST }));
    expect(routerIds).toEqual([ids.router]);
    expect((await api.listL3AgentRouters(ids.l3Agent!)).map((r) => r.id)).toEqual([ids.router]);
    expect((await api.listRouterL3Agents(ids.router!)).map((a) => a.host)).toEqual([L3_HOST]);
    fixture("get-router-ids.json", { request: l3Call("get_router_ids", "1.9", { host: L3_HOST }), reply: routerIds });
    // Scheduled because the agent asked: the server sends it no router_added_to_agent.
    await new Promise((r) => setTimeout(r, 500));
    expect(peer!.received.slice(before).filter((m) => m.listener === `l3_agent.${L3_HOST}`)).toEqual([]);
  });

  it("binds a port with a security group on a Linux bridge agent's host and gives it a floating IP", async () => {
    for (const topic of ["q-agent-notifier-port-update", "q-agent-notifier-port-delete", "q-agent-notifier-security_group-update", "q-agent-notifier-network-update", "q-agent-notifier-network-delete"]) {
      await peer!.listen(topic, L2_HOST);
    }
    expect(await startAgent(linuxBridgeAgentState(L2_HOST))).toBe("new");
    // The network node runs one too, as in a real cloud: the router's ports bind there (vif_type bridge).
    expect(await startAgent(linuxBridgeAgentState(L3_HOST))).toBe("new");
    const group = await api.createSecurityGroup({ name: "web" });
    expect((group.security_group_rules as NeutronResource[]).map((r) => `${r.direction} ${r.ethertype}`).sort()).toEqual(["egress IPv4", "egress IPv6"]);
    await api.createSecurityGroupRule({ security_group_id: group.id, direction: "ingress", protocol: "tcp", port_range_min: 22, port_range_max: 22, remote_ip_prefix: "0.0.0.0/0" });
    await api.createSecurityGroupRule({ security_group_id: group.id, direction: "ingress", protocol: "icmp", port_range_min: 8, port_range_max: 0 });
    await api.createSecurityGroupRule({ security_group_id: group.id, direction: "ingress", remote_group_id: group.id });
    const port = await api.createPort({
      network_id: ids.net,
      name: "vm-1",
      mac_address: "fa:16:3e:00:00:05",
      fixed_ips: [{ subnet_id: ids.subnet, ip_address: "10.0.0.5" }],
      security_groups: [group.id],
      device_owner: "compute:nova",
      device_id: "9d1f6a2e-0000-4000-8000-000000000001",
      "binding:host_id": L2_HOST,
    });
    expect(port).toMatchObject({ "binding:vif_type": "bridge", "binding:host_id": L2_HOST, security_groups: [group.id] });
    const fip = await api.createFloatingIp({ floating_network_id: ids.ext, port_id: port.id, floating_ip_address: "203.0.113.20" });
    expect(fip).toMatchObject({ port_id: port.id, fixed_ip_address: "10.0.0.5", router_id: ids.router, status: "DOWN" });
    Object.assign(ids, { group: group.id, port: port.id, fip: fip.id });
  });

  it("answers sync_routers with the router, its _interfaces, gw_port and _floatingips", async () => {
    const request = l3Call("sync_routers", "1.0", { host: L3_HOST, router_ids: [ids.router] });
    const routers = await peer!.call<Record<string, unknown>[]>(request);
    expect(routers).toHaveLength(1);
    const router = routers[0]!;
    expect(router).toMatchObject({ id: ids.router, gw_port_id: expect.any(String), enable_snat: true });
    expect((router._interfaces as NeutronResource[]).map((p) => p.id)).toEqual([ids.routerPort]);
    expect(router.gw_port).toMatchObject({ fixed_ips: [{ ip_address: "203.0.113.10" }], "binding:host_id": L3_HOST, "binding:vif_type": "bridge" });
    expect((router._interfaces as NeutronResource[])[0]).toMatchObject({ "binding:host_id": L3_HOST, "binding:vif_type": "bridge" });
    expect(router._floatingips).toMatchObject([{ id: ids.fip, floating_ip_address: "203.0.113.20", fixed_ip_address: "10.0.0.5", port_id: ids.port }]);
    fixture("sync-routers.json", { request, reply: routers });

    // The agent marks its floating IPs ACTIVE once they are set up.
    const statuses = l3Call("update_floatingip_statuses", "1.1", { router_id: ids.router, fip_statuses: { [ids.fip!]: "ACTIVE" } });
    const reply = await peer!.call(statuses);
    expect((await api.getFloatingIp(ids.fip!)).status).toBe("ACTIVE");
    fixture("update-floatingip-statuses.json", { request: statuses, reply });
  });

  it("answers security_group_info_for_devices for the port's tap device", async () => {
    const device = `tap${ids.port!.slice(0, 11)}`;
    const request: OsloMessage = { topic: "q-plugin", method: "security_group_info_for_devices", version: "1.3", args: { devices: [device], call_version: "1.3" } };
    const info = await peer!.call<{ devices: Record<string, Record<string, unknown>>; security_groups: Record<string, unknown[]>; sg_member_ips: Record<string, unknown> }>(request);
    expect(Object.keys(info.devices)).toEqual([ids.port]);
    expect(info.devices[ids.port!]).toMatchObject({ device, security_groups: [ids.group], fixed_ips: ["10.0.0.5"], mac_address: "fa:16:3e:00:00:05" });
    expect(info.security_groups[ids.group!]).toHaveLength(5);
    // Members of a remote group are [ip, null] for fixed IPs (a MAC only for allowed address pairs).
    expect(info.sg_member_ips[ids.group!]).toEqual({ IPv4: [["10.0.0.5", null]] });
    fixture("security-group-info-for-devices.json", { request, reply: info });
    fixture("report-state-linuxbridge-agent.json", { request: reportState(linuxBridgeAgentState(L2_HOST)), reply: "new" });
  });

  it("casts router, port, security group and agent changes to the agents", async () => {
    const l3 = `l3_agent.${L3_HOST}`;
    const l2 = (what: string) => `q-agent-notifier-${what}.${L2_HOST}`;
    const pushes = (m: OsloReceived) => m.listener.startsWith("neutron-vo-");
    const actions: { action: string; received: OsloReceived[] }[] = [];
    // Each change must bring exactly these messages ("listener method kind"); the server sends them
    // while it answers the request, but over several queues, so they are awaited as a set.
    const step = async (action: string, run: () => Promise<unknown>, expected: string[]) => {
      const before = peer!.received.length;
      const got = () => peer!.received.slice(before).filter((m) => !pushes(m));
      const names = () => got().map((m) => `${m.listener} ${m.method} ${m.kind}`).sort();
      await run();
      await eventually(`${action}: ${expected.join(", ")}`, async () => (names().length >= expected.length ? true : undefined), 15_000).catch((error: Error) => {
        throw new Error(`${error.message}; received ${names().join(", ") || "nothing"}`);
      });
      await new Promise((r) => setTimeout(r, 300));
      expect(names(), action).toEqual([...expected].sort());
      actions.push({ action, received: got() });
    };
    for (const [type, version] of [["Port", "1.7"], ["SecurityGroup", "1.5"], ["SecurityGroupRule", "1.2"], ["Network", "1.1"], ["Subnet", "1.1"]]) {
      await peer!.listen(`neutron-vo-${type}-${version}`, L2_HOST);
    }
    const pushesBefore = peer!.received.length;

    const net2 = await api.createNetwork({ name: "private-2" });
    const subnet2 = await api.createSubnet({ network_id: net2.id, cidr: "10.1.0.0/24" });
    await step("router interface added (subnet)", () => api.addRouterInterface(ids.router!, { subnet_id: subnet2.id }), [`${l3} routers_updated cast`]);
    await step("router interface removed (subnet)", () => api.removeRouterInterface(ids.router!, { subnet_id: subnet2.id }), [`${l3} routers_updated cast`, `${l2("port-delete")} port_delete cast`]);
    await step("floating IP disassociated", () => api.disassociateFloatingIp(ids.fip!), [`${l3} routers_updated cast`]);
    await step("floating IP associated", () => api.associateFloatingIp(ids.fip!, ids.port!), [`${l3} routers_updated cast`]);
    await step("security group rule created", () => api.createSecurityGroupRule({ security_group_id: ids.group, direction: "ingress", protocol: "tcp", port_range_min: 443, port_range_max: 443 }), [`${l2("security_group-update")} security_groups_rule_updated cast`]);
    const other = await api.createSecurityGroup({ name: "other" });
    await step("port's security groups changed", () => api.updatePort(ids.port!, { security_groups: [ids.group, other.id] }), [`${l2("security_group-update")} security_groups_member_updated cast`, `${l2("port-update")} port_update cast`]);
    await step("l3 agent disabled (admin_state_up false)", () => api.updateAgent(ids.l3Agent!, { admin_state_up: false }), [`${l3} agent_updated cast`]);
    await step("l3 agent enabled", () => api.updateAgent(ids.l3Agent!, { admin_state_up: true }), [`${l3} agent_updated cast`]);
    await step("router removed from the agent", () => api.removeRouterFromL3Agent(ids.l3Agent!, ids.router!), [`${l3} router_removed_from_agent cast`]);
    await step("router added to the agent", () => api.addRouterToL3Agent(ids.l3Agent!, ids.router!), [`${l3} router_added_to_agent call`]);
    await step("floating IP deleted", () => api.deleteFloatingIp(ids.fip!), [`${l3} routers_updated cast`, `${l2("port-delete")} port_delete cast`]);
    await step("port deleted", () => api.deletePort(ids.port!), [`${l2("security_group-update")} security_groups_member_updated cast`, `${l2("port-delete")} port_delete cast`]);
    await step("router gateway cleared", () => api.clearRouterGateway(ids.router!), [`${l3} routers_updated cast`, `${l2("port-delete")} port_delete cast`]);
    await step("router interface removed and router deleted", async () => {
      await api.removeRouterInterface(ids.router!, { subnet_id: ids.subnet! });
      await api.deleteRouter(ids.router!);
    }, [`${l3} routers_updated cast`, `${l2("port-delete")} port_delete cast`, `${l3} router_deleted cast`]);
    await step("network deleted", () => api.deleteNetwork(net2.id), [`${l2("network-delete")} network_delete cast`]);
    fixture("agent-casts.json", actions);

    // The OVO pushes (neutron-vo-<type>-<version>, for agents that reported these versions) come from
    // a background queue of the server: kept apart, one of each kind of object and event.
    const pushKinds = () => {
      const seen = new Map<string, OsloReceived>();
      for (const m of peer!.received.slice(pushesBefore).filter(pushes)) {
        const list = (m.args.resource_list ?? []) as { "versioned_object.name"?: string }[];
        const key = `${m.listener} ${m.method} ${String(m.args.event_type)} ${list[0]?.["versioned_object.name"] ?? "?"}`;
        if (!seen.has(key)) seen.set(key, m);
      }
      return seen;
    };
    // The last ones may still be on their way: a check waits for every kind its fixture has.
    const known = WRITE ? [] : Object.keys(JSON.parse(readFileSync(`${FIXTURES}resource-pushes.json`, "utf8")) as object);
    await eventually("the resource pushes of the fixture", async () => (known.every((key) => pushKinds().has(key)) ? true : undefined), 15_000).catch(() => undefined);
    const seen = pushKinds();
    console.log(`resource pushes: ${[...seen.keys()].join(", ") || "none"}`);
    // Which object of a kind comes first varies (a router port or the VM's), so the check keeps the kinds.
    fixture("resource-pushes.json", Object.fromEntries(seen), (value) =>
      Object.fromEntries(Object.entries(value as Record<string, OsloReceived>).map(([key, m]) => [key, { kind: m.kind, version: m.version, args: Object.keys(m.args).sort() }])),
    );
  });

  it("shows an agent that stopped reporting dead after agent_down_time", async () => {
    expect(await peer!.call(reportState(l3AgentState("gone-1")))).toBe("new");
    const agent = (await api.listAgents({ host: "gone-1" }))[0]!;
    expect(agent.alive).toBe(true);
    await eventually("agent dead", async () => ((await api.getAgent(agent.id)).alive === false ? true : undefined), (AGENT_DOWN_TIME + 6) * 1000);
    // An agent that reports again is told it was revived (a Neutron agent then resyncs everything).
    const { start_flag: _, ...again } = l3AgentState("gone-1");
    expect(await peer!.call(reportState(again))).toBe("revived");
    expect((await api.getAgent(agent.id)).alive).toBe(true);
    // The ones with a heartbeat stay alive.
    expect((await api.listAgents({ host: L3_HOST }))[0]!.alive).toBe(true);
  });

  it("stop() ends every process of the server and removes its directory; a second stop() is harmless", async () => {
    const lab = neutron!;
    const pids = execFileSync("pgrep", ["-f", lab.configFile], { encoding: "utf8" }).trim().split("\n");
    expect(pids.length).toBeGreaterThanOrEqual(2);
    await lab.stop();
    expect(existsSync(lab.dir)).toBe(false);
    expect(() => execFileSync("pgrep", ["-f", lab.configFile], { encoding: "utf8" })).toThrow();
    await lab.stop();
    await expect(fetch(`${lab.url}/v2.0/networks`)).rejects.toThrow();
  });
});
