import { FakeHost } from "@chainwarden/testing";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { bridgeMark, bridgeName, tapDeviceName } from "./device-names.js";
import { createL3Agent } from "./test-support/l3-agent-harness.js";

/** The test's "host": where the bridges and the outer veth ends live (`bridge_namespace`). */
const FABRIC = "fabric";
const MARK = bridgeMark("qrouter-");
const EXT = "e0e0e0e0-0000-4000-8000-000000000001";
const NET = (n: number) => `a${n}a${n}a${n}a${n}-0000-4000-8000-00000000000${n}`;

/** Router n: a gateway on the shared external network, one interface on network n, a floating IP. */
function router(n: number) {
  const subnet = (id: string, cidr: string, gateway: string) => [{ id, cidr, gateway_ip: gateway }];
  return {
    id: `${n}e4c5a7b-2f0d-4c0e-9a47-3b1f6e2d8c90`,
    enable_snat: true,
    gw_port: {
      id: `${n}1b2c3d4-0001-4e5f-8a9b-0c1d2e3f4a5b`,
      network_id: EXT,
      mac_address: `fa:16:3e:5a:00:0${n}`,
      fixed_ips: [{ ip_address: `200.200.128.1${n}`, subnet_id: "ext", prefixlen: 24 }],
      subnets: subnet("ext", "200.200.128.0/24", "200.200.128.1"),
    },
    _interfaces: [
      {
        id: `${n}0ffee00-1111-4222-8333-444455556666`,
        network_id: NET(n),
        mac_address: `fa:16:3e:10:10:0${n}`,
        fixed_ips: [{ ip_address: `10.10.${n}.1`, subnet_id: `int${n}`, prefixlen: 24 }],
        subnets: subnet(`int${n}`, `10.10.${n}.0/24`, `10.10.${n}.1`),
      },
    ],
    _floatingips: [{ id: `f${n}`, floating_ip_address: `200.200.128.${100 + n}`, fixed_ip_address: `10.10.${n}.5` }],
  };
}
const ns = (n: number) => `qrouter-${router(n).id}`;
const qr = (n: number) => `qr-${router(n)._interfaces[0]!.id.slice(0, 11)}`;
const tapOf = (n: number, port: "qr" | "qg") => tapDeviceName(port === "qr" ? router(n)._interfaces[0]!.id : router(n).gw_port.id);

/** The fabric's devices as `name kind [master] [alias]`, in ifindex order. */
function devices(host: FakeHost): string[] {
  return host.ip.links(FABRIC).map((name) => {
    const d = host.ip.device(FABRIC, name)!;
    return [name, d.kind, d.master && `master ${d.master}`, d.alias && `alias ${d.alias}`].filter(Boolean).join(" ");
  });
}

function logs() {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: "info" }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { lines, logger, messages: () => lines.map((l) => l["msg"]) };
}

const agents: { agent: { stop(): Promise<void> } }[] = [];
afterEach(async () => {
  for (const a of agents.splice(0)) await a.agent.stop();
});

async function setup(host: FakeHost, options: Parameters<typeof createL3Agent>[0]["options"] & object, extra: Partial<Parameters<typeof createL3Agent>[0]> = {}) {
  const h = await createL3Agent({ runner: host, options: { bridge_namespace: FABRIC, metadata_proxy: "external", ...options }, ...extra });
  agents.push(h);
  return h;
}

describe("linuxbridge interface driver, standalone (no l2 agent): bridges of its own", () => {
  it("creates each missing bridge marked as its own, and deletes it with its last port: the host ends as it began", async () => {
    const host = new FakeHost({ namespaces: [FABRIC] });
    const before = devices(host);
    const log = logs();
    const { agent, push } = await setup(host, {}, { initial: { routers: [router(1), router(2)] }, logger: log.logger });
    expect((await agent.start()).failed).toEqual([]);
    expect(log.lines).toContainEqual(expect.objectContaining({ msg: "linuxbridge interface driver: bridge mode", bridgeMode: "standalone" }));
    for (const net of [EXT, NET(1), NET(2)]) expect(host.ip.device(FABRIC, bridgeName(net))).toMatchObject({ kind: "bridge", up: true, alias: MARK });
    expect(host.ip.device(FABRIC, tapOf(1, "qg"))).toMatchObject({ master: bridgeName(EXT), up: true });
    expect(host.ip.device(FABRIC, tapOf(2, "qr"))).toMatchObject({ master: bridgeName(NET(2)), up: true });

    // Router 1 goes: its own network's bridge with it, the shared external one stays for router 2.
    await push({ routers: [router(2)] });
    expect(host.netns.has(ns(1))).toBe(false);
    expect(host.ip.device(FABRIC, bridgeName(NET(1)))).toBeUndefined();
    expect(host.ip.device(FABRIC, bridgeName(EXT))).toMatchObject({ alias: MARK });
    expect(log.lines.filter((l) => l["msg"] === "bridge removed: its last port went").map((l) => l["bridge"])).toEqual([bridgeName(NET(1))]);

    await push({ routers: [] });
    expect(devices(host)).toEqual(before);
  });

  it("uses a bridge it did not create and never deletes it; a VM's port keeps a bridge of its own", async () => {
    const host = new FakeHost({ namespaces: [FABRIC] });
    // brq<ext>: made by someone else (no mark). A VM's tap on router 1's network.
    await host.exec("ip", ["link", "add", bridgeName(EXT), "type", "bridge"], { namespace: FABRIC });
    const { agent, push } = await setup(host, {}, { initial: { routers: [router(1)] } });
    await agent.start();
    expect(host.ip.device(FABRIC, bridgeName(EXT))).not.toHaveProperty("alias");
    expect(host.ip.device(FABRIC, tapOf(1, "qg"))).toMatchObject({ master: bridgeName(EXT) });
    host.ip.addDevice(FABRIC, "tapvm0000-01");
    await host.exec("ip", ["link", "set", "tapvm0000-01", "master", bridgeName(NET(1))], { namespace: FABRIC });
    const withVm = devices(host);

    await push({ routers: [] });
    expect(devices(host)).toEqual(withVm.filter((d) => !d.startsWith("tap1")));
    expect(devices(host)).toEqual([
      "lo loopback",
      `${bridgeName(EXT)} bridge`,
      `${bridgeName(NET(1))} bridge alias ${MARK}`,
      `tapvm0000-01 tap master ${bridgeName(NET(1))}`,
    ]);
  });

  it("explicit bridge_mode standalone under a Neutron control plane", async () => {
    const host = new FakeHost({ namespaces: [FABRIC] });
    const { agent } = await setup(host, { bridge_mode: "standalone" }, { initial: { routers: [router(1)] }, neutronControlPlane: true });
    await agent.start();
    expect(host.ip.device(FABRIC, bridgeName(NET(1)))).toMatchObject({ alias: MARK });
  });
});

describe("linuxbridge interface driver, neutron mode: the l2 agent owns the bridges", () => {
  it("under a Neutron control plane (auto) makes and removes veths only, as BridgeInterfaceDriver", async () => {
    const host = new FakeHost({ namespaces: [FABRIC] });
    // The l2 agent's bridge of the external network; router 1's own network has none yet.
    await host.exec("ip", ["link", "add", bridgeName(EXT), "type", "bridge"], { namespace: FABRIC });
    const before = devices(host);
    const from = host.ip.commands.length;
    const log = logs();
    const { agent, push } = await setup(host, {}, { initial: { routers: [router(1)] }, neutronControlPlane: true, logger: log.logger });
    expect((await agent.start()).failed).toEqual([]);
    expect(log.lines).toContainEqual(expect.objectContaining({ msg: "linuxbridge interface driver: bridge mode", bridgeMode: "neutron" }));
    // The taps are up, in no bridge: the l2 agent puts them into its bridges.
    expect(devices(host)).toEqual([...before, `${tapOf(1, "qr")} veth`, `${tapOf(1, "qg")} veth`]);
    expect(host.ip.device(FABRIC, tapOf(1, "qr"))).toMatchObject({ up: true, peer: { namespace: ns(1), name: qr(1) } });
    expect(host.ip.device(ns(1), qr(1))).toMatchObject({ up: true, mac: "fa:16:3e:10:10:01" });
    const fabricCommands = host.ip.commands.slice(from).filter((c) => c.namespace === FABRIC).map((c) => c.argv.join(" "));
    expect(fabricCommands.filter((c) => /bridge|master|alias/.test(c))).toEqual([]);

    // The l2 agent's part, and the router removed: the bridge stays (the l2 agent deletes it).
    await host.exec("ip", ["link", "set", tapOf(1, "qg"), "master", bridgeName(EXT)], { namespace: FABRIC });
    await push({ routers: [] });
    expect(devices(host)).toEqual(before);
  });

  it("bridge_mode neutron without a control plane; a start leaves bridges alone, even marked ones", async () => {
    const host = new FakeHost({ namespaces: [FABRIC] });
    await host.exec("ip", ["-batch", "-"], { namespace: FABRIC, input: `link add ${bridgeName(NET(9))} type bridge\nlink set dev ${bridgeName(NET(9))} alias ${MARK}\n` });
    const before = devices(host);
    const { agent, push } = await setup(host, { bridge_mode: "neutron" }, { initial: { routers: [router(1)] } });
    await agent.start();
    expect(host.ip.device(FABRIC, bridgeName(NET(1)))).toBeUndefined();
    await push({ routers: [] });
    expect(devices(host)).toEqual(before);
  });
});

describe("start-up sweep and plan", () => {
  /** What an earlier standalone run left: router 1's namespace (a stale router) with its bridges. */
  async function leftovers(host: FakeHost) {
    const first = await createL3Agent({ runner: host, options: { bridge_namespace: FABRIC, metadata_proxy: "external" }, initial: { routers: [router(1), router(2)] } });
    await first.agent.applyOnce();
    // Bridges the sweep must judge: ours, empty (a crash after a tap went); unmarked, same name
    // pattern; another agent's (another namespace prefix); ours with a VM's port.
    const batch = [
      `link add ${bridgeName(NET(7))} type bridge`,
      `link set dev ${bridgeName(NET(7))} alias ${MARK}`,
      `link add ${bridgeName(NET(8))} type bridge`,
      `link add ${bridgeName(NET(9))} type bridge`,
      `link set dev ${bridgeName(NET(9))} alias ${bridgeMark("other-")}`,
      `link add brqvmvmvmvm-00 type bridge`,
      `link set dev brqvmvmvmvm-00 alias ${MARK}`,
    ];
    await host.exec("ip", ["-batch", "-"], { namespace: FABRIC, input: `${batch.join("\n")}\n` });
    host.ip.addDevice(FABRIC, "tapvm0000-02");
    await host.exec("ip", ["link", "set", "tapvm0000-02", "master", "brqvmvmvmvm-00"], { namespace: FABRIC });
  }

  it("plan lists the stale router's devices and the bridges that would go, and changes nothing", async () => {
    const host = new FakeHost({ namespaces: [FABRIC] });
    await leftovers(host);
    const before = devices(host);
    const { agent } = await setup(host, {}, { initial: { routers: [router(2)] } });
    const plan = await agent.plan();
    expect(devices(host)).toEqual(before);
    const stale = plan.namespaces.filter((p) => p.stale).flatMap((p) => p.actions.map((a) => [a.verb, a.object, a.name, a.detail]));
    expect(stale).toEqual([
      ["remove", "namespace", ns(1), `with its devices qg-${router(1).gw_port.id.slice(0, 11)} (veth, with ${tapOf(1, "qg")} in ${bridgeName(EXT)} (namespace fabric)), ${qr(1)} (veth, with ${tapOf(1, "qr")} in ${bridgeName(NET(1))} (namespace fabric))`],
      ["remove", "bridge", bridgeName(NET(1)), `made by this agent (alias ${MARK}); its last port goes`],
      ["remove", "bridge", bridgeName(NET(7)), `made by this agent (alias ${MARK}), without ports`],
    ]);
  });

  it("removes the stale router with its bridge and the marked bridges without ports, logs them, and leaves everything unmarked", async () => {
    const host = new FakeHost({ namespaces: [FABRIC] });
    await leftovers(host);
    const before = devices(host);
    const log = logs();
    const { agent } = await setup(host, {}, { initial: { routers: [router(2)] }, logger: log.logger });
    expect((await agent.start()).failed).toEqual([]);
    expect(host.netns.has(ns(1))).toBe(false);
    const gone = [bridgeName(NET(1)), bridgeName(NET(7)), tapOf(1, "qr"), tapOf(1, "qg")];
    expect(devices(host)).toEqual(before.filter((d) => !gone.includes(d.split(" ")[0]!)));
    // The unmarked bridge with our name pattern, another agent's, and ours with a VM's port survive.
    for (const b of [bridgeName(NET(8)), bridgeName(NET(9)), "brqvmvmvmvm-00"]) expect(host.ip.device(FABRIC, b)).toBeDefined();
    const removed = log.lines.find((l) => l["msg"] === "stale resources from an earlier run removed")!["removed"];
    expect(removed).toEqual([`namespace ${ns(1)}`, `bridge ${bridgeName(NET(7))}`]);
    expect(log.lines.filter((l) => String(l["msg"]).startsWith("bridge ")).map((l) => [l["msg"], l["bridge"]])).toEqual([
      ["bridge removed: its last port went", bridgeName(NET(1))],
      ["bridge left by an earlier run removed", bridgeName(NET(7))],
    ]);
  });
});
