/**
 * Real traffic through a router that the real l3 plugin builds and this plugin firewalls, on the
 * real kernel (nft and legacy). Everything lives in a router lab (`createRouterLab`: unique names)
 * and the agent's namespaces (a unique prefix), all deleted in `afterAll`, also on failure:
 *
 *   vm1 (10.10.10.2, floating IP 200.200.128.3) ── brq<int1> ── qr ─ router ─ qg ── brq<ext> ── ext (200.200.128.100)
 *   (bridges and tap ends in the `fabric` namespace: the linuxbridge driver with bridge_namespace)
 *
 * The firewall is the seed's (v1, `--protocol icmp --action deny`) plus an allow for TCP 7001, so
 * TCP to 7002 meets the default policy.
 */
import { randomBytes } from "node:crypto";
import { ExecaRunner, type Backend } from "@chainwarden/core";
import { bridgeName, l3NatPlugin } from "@chainwarden/l3-nat";
import { createRouterLab, isRoot, netToolPath, type RouterLab, type TestNetns } from "@chainwarden/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFwaasAgent } from "./test-support/fwaas-agent-harness.js";

const NET_TOOL = netToolPath();
const TENANT = "1b6e214ab4594fd9b57017fa0af0ff62";
const ROUTER_ID = `b412${randomBytes(2).toString("hex")}-680e-4427-b758-767c8ffe794b`;
const INT1 = { net: "46e11e98-0275-4a54-ac1a-bd1c71308be7", port: "6bc18a88-9619-4fce-bf4e-49cae6df1715" };
const EXT = { net: "aeaeaeae-eeee-4eee-8eee-eeeeeeeeeeee", port: "bebebebe-eeee-4eee-8eee-eeeeeeeeeeee" };

const router = {
  id: ROUTER_ID,
  tenant_id: TENANT,
  enable_snat: true,
  gw_port: {
    id: EXT.port,
    network_id: EXT.net,
    mac_address: "fa:16:3e:00:00:10",
    fixed_ips: [{ ip_address: "200.200.128.2", subnet_id: "ext", prefixlen: 24 }],
    subnets: [{ id: "ext", cidr: "200.200.128.0/24", gateway_ip: "200.200.128.1" }],
  },
  _interfaces: [
    {
      id: INT1.port,
      network_id: INT1.net,
      mac_address: "fa:16:3e:31:e3:11",
      fixed_ips: [{ ip_address: "10.10.10.1", subnet_id: "int1" }],
      subnets: [{ id: "int1", cidr: "10.10.10.0/24", gateway_ip: "10.10.10.1" }],
    },
  ],
  _floatingips: [{ id: "f1f1f1f1-0000-4000-8000-000000000003", floating_ip_address: "200.200.128.3", fixed_ip_address: "10.10.10.2" }],
};

const DENY_ICMP = { id: "138cd8cd-b83d-433e-b673-9c8af3109c74", protocol: "icmp", ip_version: 4, action: "deny", enabled: true };
const ALLOW_7001 = { id: "allow-7001", protocol: "tcp", destination_port: "7001", ip_version: 4, action: "allow" };
const DENY_7001 = { id: "deny-7001", protocol: "tcp", destination_port: "7001", ip_version: 4, action: "deny" };
const firewall = (rules: unknown[]) => ({ id: "80daec7b-8167-459e-b915-da02832a248b", tenant_id: TENANT, admin_state_up: true, firewall_policy: { id: "77ea7104", firewall_rules: rules } });

describe.runIf(isRoot()).each(["nft", "legacy"] as Backend[])("datapath through a firewalled router (%s)", (backend) => {
  const runner = new ExecaRunner({ backend });
  const prefix = `cwf${randomBytes(3).toString("hex")}-`;
  let lab: RouterLab<"vm1" | "ext"> | undefined;
  let fabric!: TestNetns, vm1!: TestNetns, ext!: TestNetns;
  let h!: Awaited<ReturnType<typeof createFwaasAgent>>;

  const attach = (ns: TestNetns, network: string, cidr: string, gateway: string | undefined) => lab!.attach(ns, bridgeName(network), cidr, gateway);
  /** Starts net-tool in a namespace; resolves at its first output line. */
  const tool = (ns: TestNetns, args: string[], onLine?: (line: string) => void) => lab!.netTool(ns, args, onLine);

  const ping = async (from: TestNetns, to: string) => (await from.exec(["ping", "-c", "1", "-W", "1", to], { reject: false })).exitCode === 0;
  const tcp = async (from: TestNetns, to: string, port: number) =>
    (await from.exec([process.execPath, NET_TOOL, "probe", to, String(port)], { reject: false })).stdout.trim() === "ok";
  const until = async (cond: () => boolean, ms: number) => {
    const end = Date.now() + ms;
    while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    return cond();
  };

  beforeAll(async () => {
    lab = await createRouterLab({ prefix: "cwf", hosts: ["vm1", "ext"], agentNamespacePrefix: prefix });
    ({ fabric } = lab);
    ({ vm1, ext } = lab.hosts);
    await attach(vm1, INT1.net, "10.10.10.2/24", "10.10.10.1");
    await attach(ext, EXT.net, "200.200.128.100/24", undefined);
    h = await createFwaasAgent({
      runner,
      initial: { routers: [router] },
      config: { namespace_prefix: prefix, backend },
      l3: { plugin: l3NatPlugin, options: { interface_driver: "linuxbridge", bridge_namespace: fabric.name, metadata_proxy: "external" } },
    });
    expect((await h.agent.start()).failed).toEqual([]);
    await tool(ext, ["echo-server", "7001"]);
    await tool(ext, ["echo-server", "7002"]);
  });

  afterAll(async () => {
    await h?.agent.stop().catch(() => undefined);
    await lab?.delete();
  });

  it("without a firewall: ping and TCP to the external host work", async () => {
    expect(await ping(vm1, "200.200.128.100")).toBe(true);
    expect(await tcp(vm1, "200.200.128.100", 7002)).toBe(true);
  });

  it("the seed's firewall: ping fails, allowed TCP works with its replies, the rest meets the default policy", async () => {
    await h.push({ routers: [router], firewalls: [firewall([DENY_ICMP, ALLOW_7001])] });
    expect(await ping(vm1, "200.200.128.100")).toBe(false);
    expect(await ping(ext, "200.200.128.3")).toBe(false);
    expect(await tcp(vm1, "200.200.128.100", 7001)).toBe(true);
    expect(await tcp(vm1, "200.200.128.100", 7002)).toBe(false);
  });

  it("an update that denies an established flow cuts it", async () => {
    let echoes = 0;
    const stream = await tool(vm1, ["stream", "200.200.128.100", "7001"], (line) => {
      if (line === "echo") echoes++;
    });
    expect(await until(() => echoes >= 3, 3_000)).toBe(true);
    await h.push({ routers: [router], firewalls: [firewall([DENY_7001, DENY_ICMP, ALLOW_7001])] });
    // The flow's conntrack entry is gone: its next packets are new, and the new rule drops them.
    await new Promise((r) => setTimeout(r, 400));
    const after = echoes;
    await new Promise((r) => setTimeout(r, 1_000));
    expect(echoes).toBe(after);
    expect(await tcp(vm1, "200.200.128.100", 7001)).toBe(false);
    stream.kill("SIGKILL");
  });

  it("deleting the firewall restores connectivity", async () => {
    await h.push({ routers: [router] });
    expect(await ping(vm1, "200.200.128.100")).toBe(true);
    expect(await tcp(vm1, "200.200.128.100", 7001)).toBe(true);
    expect(await tcp(vm1, "200.200.128.100", 7002)).toBe(true);
  });

  it("a v2 group on the router port: ingress and egress policies per direction", async () => {
    const group = {
      id: "fa0e5c2b-7d1e-4a3c-9b8f-0123456789ab",
      tenant_id: TENANT,
      ports: [INT1.port],
      // Towards the VM only TCP 7002 from outside (through the floating IP); from the VM anything but ICMP.
      ingress_rules: [{ id: "in-7002", protocol: "tcp", destination_port: "7002", action: "allow" }],
      egress_rules: [
        { id: "out-icmp", protocol: "icmp", action: "deny" },
        { id: "out-any", action: "allow" },
      ],
    };
    await h.push({ routers: [router], firewall_groups: [group] });
    await tool(vm1, ["echo-server", "7002"]);
    await tool(vm1, ["echo-server", "7003"]);
    expect(await ping(vm1, "200.200.128.100")).toBe(false);
    expect(await tcp(vm1, "200.200.128.100", 7001)).toBe(true);
    expect(await tcp(ext, "200.200.128.3", 7002)).toBe(true);
    expect(await tcp(ext, "200.200.128.3", 7003)).toBe(false);
    await h.push({ routers: [router], firewall_groups: [{ ...group, admin_state_up: false }] });
    expect(await tcp(vm1, "200.200.128.100", 7001)).toBe(false);
    await h.push({ routers: [router] });
    expect(await tcp(ext, "200.200.128.3", 7003)).toBe(true);
  });
});
