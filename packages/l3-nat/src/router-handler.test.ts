import { readFileSync } from "node:fs";
import { join } from "node:path";
import { normalizeSave, PREPARED_INPUT } from "@chainwarden/core";
import { duplicateLogKeys, FakeHost, referenceDir } from "@chainwarden/testing";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import type { MetadataProxyFactory } from "./metadata-proxy-process.js";
import type { L3RouterExtension, RouterExtensionContext } from "./router-extension-point.js";
import { createL3Agent } from "./test-support/l3-agent-harness.js";
import { loadL3Scenario } from "./test-support/reference-scenario.js";

const reference = loadL3Scenario(referenceDir(), "l3_seed_router_fip");
const seed = JSON.parse(readFileSync(join(referenceDir(), "l3_seed_router_fip.json"), "utf8")).steps[0].router;
const ID: string = seed.id;
const NS = `qrouter-${ID}`;
const QR = "qr-c0ffee00-11";
const QG = "qg-a1b2c3d4-00";

const withFips = (fips: unknown[]) => ({ ...structuredClone(seed), _floatingips: fips });
const fip = (n: number, fixed: string) => ({ id: `fip-${n}`, floating_ip_address: `200.200.128.${n}`, fixed_ip_address: fixed });

/**
 * The host's events as text: `restore NS v4`, `NS: COMMAND` for each command, `NS:   | LINE` for
 * each line it read (an ip batch; a prepared conntrack's input, where it is run), and
 * `NS: COMMAND cancelled` for a prepared command dropped unrun (`<host>`: the host's namespace).
 */
function hostLog(host: FakeHost, from = 0): string[] {
  return host.events.slice(from).flatMap((e) => {
    const ns = e.namespace ?? "<host>";
    if (e.what === "restore") return [`restore ${ns} v${e.family}`];
    const command = `${ns}: ${[e.what, ...e.args!].join(" ")}`;
    if (e.step === "cancel") return [`${command} cancelled`];
    const lines = (e.input ?? "").split("\n").filter(Boolean).map((l) => `${ns}:   | ${l}`);
    return e.step === "run" ? lines : [command, ...lines];
  });
}

/** A device's IPv4 addresses (the kernel gives a veth with carrier an IPv6 link-local one too). */
function ipv4(host: FakeHost, namespace: string | undefined, device: string): string[] | undefined {
  return host.ip.device(namespace, device)?.addresses.filter((a) => !a.includes(":"));
}

const ROUTER_SYSCTLS = ["net.ipv4.ip_forward", "net.ipv4.conf.all.arp_ignore", "net.ipv4.conf.all.arp_announce", "net.ipv4.conf.all.promote_secondaries", "net.ipv6.conf.all.forwarding"];

/** Records proxy starts and stops instead of running processes. */
function fakeProxies() {
  const log: string[] = [];
  const factory: MetadataProxyFactory = (p) => {
    let running = false;
    return {
      get pid() {
        return running ? 4242 : undefined;
      },
      async ensureRunning() {
        if (!running) log.push(`start ${p.namespace} ${p.routerId} ${p.port}`);
        running = true;
      },
      async stop() {
        if (running) log.push(`stop ${p.namespace}`);
        running = false;
      },
    };
  };
  return { log, factory };
}

const agents: { agent: { stop(): Promise<void> } }[] = [];
afterEach(async () => {
  for (const a of agents.splice(0)) await a.agent.stop();
});

async function setup(options: Parameters<typeof createL3Agent>[0]) {
  const proxies = fakeProxies();
  const h = await createL3Agent(options);
  (h.handler as unknown as { options: { proxyFactory?: MetadataProxyFactory } }).options.proxyFactory = proxies.factory;
  agents.push(h);
  return { ...h, proxies };
}

describe("RouterHandler through the agent (FakeHost)", () => {
  it("adds a router: namespace with forwarding, devices, addresses, route, floating IP, proxy, and Neutron's rules", async () => {
    const host = new FakeHost();
    const { agent, proxies } = await setup({ runner: host, initial: { routers: [seed] } });
    const report = await agent.start();
    expect(report.failed).toEqual([]);

    expect(host.netns.has(NS)).toBe(true);
    expect(ROUTER_SYSCTLS.map((key) => host.ip.sysctl(NS, key))).toEqual(["1", "1", "2", "1", "1"]);
    // linuxbridge: veth pairs, outer ends in their networks' bridges (host namespace by default).
    expect(host.ip.device(NS, QR)).toMatchObject({ kind: "veth", up: true, carrier: true, mac: "fa:16:3e:10:10:01", peer: { namespace: undefined, name: "tapc0ffee00-11" } });
    expect(ipv4(host, NS, QR)).toEqual(["10.10.10.1/24"]);
    expect(host.ip.device(undefined, "tapc0ffee00-11")).toMatchObject({ master: "brq8f2e0c6a-3d", up: true });
    expect(host.ip.device(undefined, "brq8f2e0c6a-3d")).toMatchObject({ kind: "bridge", up: true, carrier: true });
    expect(ipv4(host, NS, QG)).toEqual(["200.200.128.2/24", "200.200.128.3/32"]);
    expect(host.ip.routes(NS, 4)).toEqual([
      "default via 200.200.128.1 dev qg-a1b2c3d4-00",
      "10.10.10.0/24 dev qr-c0ffee00-11 proto kernel scope link src 10.10.10.1",
      "200.200.128.0/24 dev qg-a1b2c3d4-00 proto kernel scope link src 200.200.128.2",
    ]);
    expect(proxies.log).toEqual([`start ${NS} ${ID} 9697`]);

    // The floating IP's address comes after the rules (Neutron: "once NAT rules are in place").
    const log = hostLog(host);
    const fipAdded = log.indexOf(`${NS}:   | address add 200.200.128.3/32 scope global dev ${QG}`);
    expect(fipAdded).toBeGreaterThan(log.lastIndexOf(`restore ${NS} v6`));

    const want = reference.expected[0]!.routers.get(ID)!;
    expect(normalizeSave(host.iptables.dump({ namespace: NS, family: 4 }))).toBe(want.iptables);
    expect(normalizeSave(host.iptables.dump({ namespace: NS, family: 6 }))).toBe(want.ip6tables);
  });

  it("a disassociated floating IP: rules first, then its address, then its connections", async () => {
    const host = new FakeHost();
    const { agent, push } = await setup({ runner: host, initial: { routers: [withFips([fip(3, "10.10.10.2"), fip(4, "10.10.10.4")])] } });
    await agent.start();
    // Connections through each floating IP: from outside (DNATed to the fixed IP), and out of the VM (SNATed to it).
    for (const [floating, fixed] of [["200.200.128.3", "10.10.10.2"], ["200.200.128.4", "10.10.10.4"]] as const) {
      host.conntrack.addConnection(NS, { protocol: "tcp", src: "203.0.113.9", dst: floating, sport: 40000, dport: 22, replySrc: fixed, replyDst: "203.0.113.9" });
      host.conntrack.addConnection(NS, { protocol: "udp", src: fixed, dst: "203.0.113.9", sport: 5000, dport: 53, replySrc: "203.0.113.9", replyDst: floating });
    }
    const before = host.events.length;
    await push({ routers: [withFips([fip(4, "10.10.10.4")])] });
    // Only floating IPs changed: before the restore only the conntrack process starts (prepared);
    // after it the address goes, then the connections (the lines the prepared conntrack reads).
    expect(hostLog(host, before)).toEqual([
      `${NS}: conntrack -R ${PREPARED_INPUT}`,
      `restore ${NS} v4`,
      `${NS}: ip -force -batch -`,
      `${NS}:   | address del 200.200.128.3/32 dev ${QG}`,
      `${NS}:   | -D -d 200.200.128.3`,
      `${NS}:   | -D -q 200.200.128.3`,
    ]);
    expect(host.conntrack.preparedWaiting).toEqual([]);
    expect(host.conntrack.listing(NS).every((c) => c.includes("200.200.128.4"))).toBe(true);
    expect(host.conntrack.count(NS)).toBe(2);
    expect(ipv4(host, NS, QG)).toEqual(["200.200.128.2/24", "200.200.128.4/32"]);
    expect(host.iptables.rules({ namespace: NS, family: 4 }, "nat", "neutron-l3-agent-OUTPUT")).toEqual(["-d 200.200.128.4/32 -j DNAT --to-destination 10.10.10.4"]);
  });

  it("a floating IP moved to another fixed IP has its old connections deleted", async () => {
    const host = new FakeHost();
    const { agent, push } = await setup({ runner: host, initial: { routers: [withFips([fip(3, "10.10.10.2")])] } });
    await agent.start();
    const before = host.events.length;
    await push({ routers: [withFips([fip(3, "10.10.10.9")])] });
    expect(hostLog(host, before).filter((e) => e.includes("conntrack") || e.includes("| -D"))).toEqual([`${NS}: conntrack -R ${PREPARED_INPUT}`, `${NS}:   | -D -d 200.200.128.3`, `${NS}:   | -D -q 200.200.128.3`]);
  });

  it("without a runner that prepares commands, the connections go through one conntrack -D per direction", async () => {
    const host = new FakeHost({ conntrack: { prepare: false } });
    const { agent, push } = await setup({ runner: host, initial: { routers: [withFips([fip(3, "10.10.10.2"), fip(4, "10.10.10.4")])] } });
    await agent.start();
    const before = host.events.length;
    await push({ routers: [withFips([])] });
    const after = hostLog(host, before);
    expect(after.filter((e) => e.includes("conntrack"))).toEqual([
      `${NS}: conntrack -D -d 200.200.128.3`,
      `${NS}: conntrack -D -q 200.200.128.3`,
      `${NS}: conntrack -D -d 200.200.128.4`,
      `${NS}: conntrack -D -q 200.200.128.4`,
    ]);
    expect(after.findIndex((e) => e.includes("conntrack"))).toBeGreaterThan(after.findIndex((e) => e.startsWith("restore")));
  });

  it("a prepared conntrack that cannot start: the connections still go, through conntrack -D", async () => {
    const host = new FakeHost({ conntrack: { prepare: "cannot-start" } });
    const { agent, push } = await setup({ runner: host, initial: { routers: [withFips([fip(3, "10.10.10.2")])] } });
    await agent.start();
    const before = host.events.length;
    await push({ routers: [withFips([])] });
    expect(hostLog(host, before).filter((e) => e.includes("conntrack") || e.startsWith("restore"))).toEqual([
      `${NS}: conntrack -R ${PREPARED_INPUT}`,
      `restore ${NS} v4`,
      `${NS}: conntrack -D -d 200.200.128.3`,
      `${NS}: conntrack -D -q 200.200.128.3`,
    ]);
    // The prepared one was run but never started.
    expect(host.conntrack.calls.filter((c) => c.prepared)).toEqual([]);
  });

  it("a failed apply cancels the prepared conntrack cleanup; the retry prepares and runs it again", async () => {
    const host = new FakeHost();
    const { agent, push } = await setup({ runner: host, initial: { routers: [withFips([fip(3, "10.10.10.2")])] } });
    await agent.start();
    const before = host.events.length;
    host.iptables.failNextRestore({ exitCode: 1, stderr: "iptables-restore: line 2 failed\n" });
    await push({ routers: [withFips([])] });
    // The loop retries after its backoff (20 ms in the harness).
    for (let i = 0; i < 100 && !hostLog(host, before).some((e) => e.includes("| -D -q")); i++) await new Promise((r) => setTimeout(r, 10));
    const events = hostLog(host, before);
    expect(events.filter((e) => e.includes("conntrack") || e.includes("| -D"))).toEqual([
      `${NS}: conntrack -R ${PREPARED_INPUT}`,
      `${NS}: conntrack -R ${PREPARED_INPUT} cancelled`,
      `${NS}: conntrack -R ${PREPARED_INPUT}`,
      `${NS}:   | -D -d 200.200.128.3`,
      `${NS}:   | -D -q 200.200.128.3`,
    ]);
    expect(host.conntrack.preparedWaiting).toEqual([]);
  });

  it("removes a router: extensions told, proxy stopped, namespace deleted (devices with it), nothing left", async () => {
    const host = new FakeHost();
    const seen: string[] = [];
    const ext: L3RouterExtension = { name: "audit", deleteRouter: (c) => void seen.push(`delete ${c.router.id} ${c.namespace}`) };
    const { agent, push, proxies, handler } = await setup({ runner: host, initial: { routers: [seed] }, extensions: [ext] });
    await agent.start();
    await push({ routers: [] });
    expect(seen).toEqual([`delete ${ID} ${NS}`]);
    expect(proxies.log).toEqual([`start ${NS} ${ID} 9697`, `stop ${NS}`]);
    expect(host.netns.has(NS)).toBe(false);
    expect(host.ip.device(undefined, "tapc0ffee00-11")).toBeUndefined();
    expect(handler.liveRouters()).toEqual([]);
    // Added again later, it starts from nothing.
    await push({ routers: [seed] });
    expect(host.netns.has(NS)).toBe(true);
    expect(normalizeSave(host.iptables.dump({ namespace: NS, family: 4 }))).toBe(reference.expected[0]!.routers.get(ID)!.iptables);
  });

  it("a restarted agent removes router namespaces an earlier run left for routers no longer desired", async () => {
    const host = new FakeHost();
    // Left behind: a router deleted while no agent ran. Not ours: another prefix, or not a router id.
    host.ip.addNamespace("qrouter-0ddc0ffe-0000-4000-8000-000000000001");
    host.ip.addNamespace("qrouter-lab-fabric");
    host.ip.addNamespace("other-ns");
    const { agent } = await setup({ runner: host, initial: { routers: [seed] } });
    await agent.start();
    expect(host.netns.list()).toEqual(["qrouter-lab-fabric", "other-ns", NS]);
  });

  it("router extensions get the router, its namespace and manager inside the same deferred apply", async () => {
    const host = new FakeHost();
    const calls: string[] = [];
    const ext: L3RouterExtension = {
      name: "fw",
      addRouter(c: RouterExtensionContext) {
        calls.push(`add ${c.router.id} ${c.namespace} deferred=${c.iptables.deferred}`);
        c.iptables.table(4, "filter").addRule("FORWARD", "-o qr-+ -p icmp -j DROP");
      },
      updateRouter(c: RouterExtensionContext) {
        calls.push(`update ${c.router._floatingips.length} deferred=${c.iptables.deferred}`);
      },
    };
    const { agent, push } = await setup({ runner: host, initial: { routers: [seed] }, extensions: [ext] });
    await agent.start();
    expect(calls).toEqual([`add ${ID} ${NS} deferred=true`]);
    // One restore per family carried the router's and the extension's rules.
    expect(hostLog(host).filter((e) => e.startsWith("restore"))).toEqual([`restore ${NS} v4`, `restore ${NS} v6`]);
    expect(host.iptables.rules({ namespace: NS, family: 4 }, "filter", "neutron-l3-agent-FORWARD")).toEqual(["-j neutron-l3-agent-scope", "-o qr-+ -p icmp -j DROP"]);
    await push({ routers: [withFips([])] });
    expect(calls).toEqual([`add ${ID} ${NS} deferred=true`, "update 0 deferred=true"]);
  });

  it("a failing extension fails the router's apply with an error naming it, and it is retried", async () => {
    const host = new FakeHost();
    let failures = 1;
    const ext: L3RouterExtension = {
      name: "flaky",
      addRouter() {
        if (failures-- > 0) throw new Error("boom");
      },
    };
    const { agent } = await setup({ runner: host, initial: { routers: [seed] }, extensions: [ext] });
    const report = await agent.start();
    // The router is held (kept as the kernel has it) and retried alone.
    expect(report.failed).toEqual([]);
    expect(report.failedResources).toHaveLength(1);
    expect(report.failedResources[0]!.error).toMatchObject({ code: "ROUTER_EXTENSION_FAILED", extension: "flaky", resource: `router/${ID}` });
    expect(report.failedResources[0]!.error.message).toBe(`router extension flaky failed in addRouter for router ${ID}: boom`);
    await agent.idle();
    expect(normalizeSave(host.iptables.dump({ namespace: NS, family: 4 }))).toBe(reference.expected[0]!.routers.get(ID)!.iptables);
  });

  it("noop driver: a missing device is logged and retried; the rules are applied regardless", async () => {
    const host = new FakeHost();
    const { agent, push } = await setup({ runner: host, initial: { routers: [seed] }, options: { interface_driver: "noop" } });
    const report = await agent.start();
    expect(report.failedResources[0]!.error).toMatchObject({ code: "ROUTER_DEVICES_MISSING", devices: [QR, QG] });
    expect(normalizeSave(host.iptables.dump({ namespace: NS, family: 4 }))).toBe(reference.expected[0]!.routers.get(ID)!.iptables);
    // Someone creates the devices; the retry configures them.
    host.ip.addDevice(NS, QR, QG);
    await push({ routers: [seed] });
    expect(ipv4(host, NS, QG)).toEqual(["200.200.128.2/24", "200.200.128.3/32"]);
    expect(ipv4(host, NS, QR)).toEqual(["10.10.10.1/24"]);
    expect(host.ip.routes(NS, 4)[0]).toBe("default via 200.200.128.1 dev qg-a1b2c3d4-00 linkdown");
  });

  it("an unknown interface driver is an error naming the plugin and the drivers there are; the router is held and retried", async () => {
    const host = new FakeHost();
    const { agent } = await setup({ runner: host, initial: { routers: [seed] }, options: { interface_driver: "ovs" } });
    const report = await agent.start();
    // The handler's failure is its own (it names no resource): its router is held, as the kernel has it.
    expect(report.failed).toEqual([]);
    expect(report.failedResources.map((f) => f.resource)).toEqual([`router/${ID}`]);
    expect(report.failedResources[0]!.error.message).toBe('plugin l3-nat: interface_driver "ovs" is not registered (registered: linuxbridge, noop)');
  });

  it("plan is a dry run: rules computed, nothing created, no state kept", async () => {
    const host = new FakeHost();
    const { agent, proxies, handler } = await setup({ runner: host, initial: { routers: [seed] } });
    const plans = (await agent.plan()).namespaces;
    expect(plans).toHaveLength(1);
    expect(plans[0]!.namespace).toBe(NS);
    expect(plans[0]!.families[0]!.input).toContain("-A neutron-l3-agent-PREROUTING -d 200.200.128.3/32 -j DNAT --to-destination 10.10.10.2");
    expect(plans[0]!.actions).toEqual([
      { verb: "create", object: "namespace", name: NS, resource: `router/${ID}` },
      { verb: "start", object: "metadata proxy", name: NS, resource: `router/${ID}` },
    ]);
    expect(host.netns.has(NS)).toBe(false);
    // It reads only: the namespaces, and the bridges an earlier run may have left (the sweep's look).
    expect(hostLog(host).filter((e) => !e.endsWith("ip netns list") && !e.endsWith("ip -j link show type bridge"))).toEqual([]);
    expect(proxies.log).toEqual([]);
    expect(handler.liveRouters()).toEqual([]);
  });

  it("an invalid router is reported naming it; the other routers still apply", async () => {
    const host = new FakeHost();
    const bad = { ...structuredClone(seed), id: "bad-router", _floatingips: [{ id: "f", floating_ip_address: "200.200.128.9" }] };
    const { agent } = await setup({ runner: host, initial: { routers: [bad, seed] } });
    const report = await agent.start();
    expect(report.failed).toEqual([]);
    expect(report.problems).toEqual([
      { source: "test-state", path: "routers.0._floatingips.0.fixed_ip_address", resource: "bad-router", message: "router bad-router: a floating IP needs a fixed_ip_address" },
    ]);
    expect(host.netns.list()).toEqual([NS]);
  });

  it("a gateway removed together with its floating IPs: no stale DNAT, addresses and connections cleaned", async () => {
    const host = new FakeHost();
    const { agent, push } = await setup({ runner: host, initial: { routers: [seed] } });
    await agent.start();
    host.conntrack.addConnection(NS, { protocol: "tcp", src: "10.10.10.5", dst: "203.0.113.9", sport: 40000, dport: 443, replySrc: "203.0.113.9", replyDst: "200.200.128.2" });
    const before = host.events.length;
    await push({ routers: [{ ...structuredClone(seed), gw_port: null, _floatingips: [] }] });
    expect(host.iptables.rules({ namespace: NS, family: 4 }, "nat", "neutron-l3-agent-PREROUTING")).toEqual([
      "-d 169.254.169.254/32 -i qr-+ -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 9697",
    ]);
    expect(host.ip.device(NS, QG)).toBeUndefined();
    expect(host.ip.routes(NS, 4)).toEqual(["10.10.10.0/24 dev qr-c0ffee00-11 proto kernel scope link src 10.10.10.1"]);
    const after = hostLog(host, before);
    expect(after.filter((e) => e.includes("| -D -d"))).toEqual([`${NS}:   | -D -d 200.200.128.2`, `${NS}:   | -D -d 200.200.128.3`]);
    expect(after.findIndex((e) => e.includes("| -D"))).toBeGreaterThan(after.findIndex((e) => e.startsWith("restore")));
    // The SNATed connection went with the gateway's address.
    expect(host.conntrack.count(NS)).toBe(0);
  });

  it("an interface removed is unplugged, an added one plugged; a new gateway address replaces the old one", async () => {
    const host = new FakeHost();
    const { agent, push } = await setup({ runner: host, initial: { routers: [seed] } });
    await agent.start();
    const r = structuredClone(seed);
    r._interfaces = [{ ...r._interfaces[0], id: "dddddddd-1111-4222-8333-444455556666", mac_address: "fa:16:3e:10:10:02" }];
    r.gw_port.fixed_ips = [{ ip_address: "200.200.128.9", subnet_id: "ext-subnet-1", prefixlen: 24 }];
    const before = host.events.length;
    await push({ routers: [r] });
    expect(host.ip.device(NS, QR)).toBeUndefined();
    expect(host.ip.device(undefined, "tapc0ffee00-11")).toBeUndefined();
    expect(host.ip.device(NS, "qr-dddddddd-11")).toMatchObject({ mac: "fa:16:3e:10:10:02", up: true });
    expect(ipv4(host, NS, "qr-dddddddd-11")).toEqual(["10.10.10.1/24"]);
    // The new gateway address came in as a secondary of the old one, and stayed when that went
    // (promote_secondaries; without it the kernel deletes it with its primary).
    expect(ipv4(host, NS, QG)).toEqual(["200.200.128.3/32", "200.200.128.9/24"]);
    expect(host.ip.routes(NS, 4)).toEqual([
      "default via 200.200.128.1 dev qg-a1b2c3d4-00",
      "10.10.10.0/24 dev qr-dddddddd-11 proto kernel scope link src 10.10.10.1",
      "200.200.128.0/24 dev qg-a1b2c3d4-00 proto kernel scope link src 200.200.128.9",
    ]);
    expect(hostLog(host, before).filter((e) => e.includes("| -D -d"))).toEqual([`${NS}:   | -D -d 200.200.128.2`]);
    expect(host.iptables.rules({ namespace: NS, family: 4 }, "nat", "neutron-l3-agent-snat")).toContain("-o qg-a1b2c3d4-00 -j SNAT --to-source 200.200.128.9 --random-fully");
  });

  it("a restarted agent adopts the router: no rule sent, devices left alone, drift repaired", async () => {
    const host = new FakeHost();
    const first = await setup({ runner: host, initial: { routers: [seed] } });
    await first.agent.start();
    await first.agent.stop();
    // Someone removed the floating IP's address while the agent was down.
    await host.ip.exec("ip", ["addr", "del", "200.200.128.3/32", "dev", QG], { namespace: NS });
    const restoresBefore = host.iptables.restoreCalls.length;
    const before = host.events.length;
    const second = await setup({ runner: host, initial: { routers: [seed] } });
    const report = await second.agent.start();
    expect(report.failed).toEqual([]);
    expect(host.iptables.restoreCalls.length).toBe(restoresBefore);
    const commands = hostLog(host, before);
    expect(commands.filter((e) => e.includes("link add"))).toEqual([]);
    expect(commands).toContain(`${NS}:   | address add 200.200.128.3/32 scope global dev ${QG}`);
    expect(ipv4(host, NS, QG)).toEqual(["200.200.128.2/24", "200.200.128.3/32"]);
  });

  it("logs each key once per line, and one info line per applied namespace", async () => {
    const lines: string[] = [];
    const logger = pino({ level: "debug" }, { write: (l: string) => void lines.push(l) });
    const host = new FakeHost();
    const { agent, push } = await setup({ runner: host, initial: { routers: [seed] }, logger });
    await agent.start();
    const changed = { ...seed, _floatingips: [] };
    await push({ routers: [changed] });
    await push({ routers: [] });
    for (const line of lines) expect(duplicateLogKeys(line), line).toEqual([]);
    const applied = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l["msg"] === "namespace applied" && l["level"] === 30);
    expect(applied.length).toBeGreaterThanOrEqual(3);
    expect(applied[1]).toMatchObject({ namespace: NS, changed: 1, removed: 0, sent: true });
    expect(applied.at(-1)).toMatchObject({ namespace: NS, removed: 1 });
  });
});
