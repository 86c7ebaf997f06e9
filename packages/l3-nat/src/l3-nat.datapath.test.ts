import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer, type IncomingHttpHeaders } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ExecaRunner, listNamespaces, type Backend } from "@chainwarden/core";
import { createRouterLab, isRoot, type RouterLab, type TestNetns } from "@chainwarden/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bridgeName } from "./device-names.js";
import { defaultMetadataProxyScript } from "./metadata-proxy-process.js";
import { createL3Agent } from "./test-support/l3-agent-harness.js";

/**
 * Real traffic through a router the agent builds, on the real kernel. Everything lives in a router
 * lab (`createRouterLab`: unique names) and the agent's namespaces (a unique prefix), all deleted in
 * `afterAll`, also on failure:
 *
 *   vm1 (10.10.10.2) ──┐                                   ┌── ext (200.200.128.100, no route back)
 *                      brq<int1> ── qr ─ router ─ qg ── brq<ext>
 *   vm2 (10.20.20.2) ──┘brq<int2> ── qr ─┘
 *   (bridges and tap ends in the `fabric` namespace: linuxbridge driver with bridge_namespace)
 */
const PORT = 7000;

const ROUTER_ID = `d47a${randomBytes(2).toString("hex")}-0000-4000-8000-000000000001`;
const INT1 = { net: "a1a1a1a1-1111-4111-8111-111111111111", port: "b1b1b1b1-1111-4111-8111-111111111111" };
const INT2 = { net: "a2a2a2a2-2222-4222-8222-222222222222", port: "b2b2b2b2-2222-4222-8222-222222222222" };
const EXT = { net: "aeaeaeae-eeee-4eee-8eee-eeeeeeeeeeee", port: "bebebebe-eeee-4eee-8eee-eeeeeeeeeeee" };
const FIP = { id: "f0f0f0f0-0000-4000-8000-000000000001", floating_ip_address: "200.200.128.3", fixed_ip_address: "10.10.10.2" };

function router(floatingips: unknown[] = [FIP]) {
  return {
    id: ROUTER_ID,
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
        mac_address: "fa:16:3e:00:00:01",
        fixed_ips: [{ ip_address: "10.10.10.1", subnet_id: "int1" }],
        subnets: [{ id: "int1", cidr: "10.10.10.0/24", gateway_ip: "10.10.10.1" }],
      },
      {
        id: INT2.port,
        network_id: INT2.net,
        mac_address: "fa:16:3e:00:00:02",
        fixed_ips: [{ ip_address: "10.20.20.1", subnet_id: "int2" }],
        subnets: [{ id: "int2", cidr: "10.20.20.0/24", gateway_ip: "10.20.20.1" }],
      },
    ],
    _floatingips: floatingips,
  };
}

describe.runIf(isRoot()).each(["nft", "legacy"] as Backend[])("datapath through a router (%s)", (backend) => {
  const runner = new ExecaRunner({ backend });
  const prefix = `cwd${randomBytes(3).toString("hex")}-`;
  const routerNs = `${prefix}${ROUTER_ID}`;
  const dir = mkdtempSync(join(tmpdir(), "cw-l3-datapath-"));
  const socketPath = join(dir, "metadata_proxy");
  const metadataSeen: { url: string | undefined; headers: IncomingHttpHeaders }[] = [];
  const upstream = createServer((req, res) => {
    metadataSeen.push({ url: req.url, headers: req.headers });
    res.end("i-0000abcd");
  });
  let lab: RouterLab<"vm1" | "vm2" | "ext"> | undefined;
  let fabric!: TestNetns, vm1!: TestNetns, vm2!: TestNetns, ext!: TestNetns;
  let h!: Awaited<ReturnType<typeof createL3Agent>>;

  /** A veth from a test namespace into a bridge of the fabric, with an address and a default route. */
  const attach = (ns: TestNetns, network: string, cidr: string, gateway: string | undefined) => lab!.attach(ns, bridgeName(network), cidr, gateway);
  /** Starts net-tool in a namespace; resolves at its first output line. */
  const tool = (ns: TestNetns, args: string[], onLine?: (line: string) => void) => lab!.netTool(ns, args, onLine);

  async function curl(ns: TestNetns, url: string): Promise<string> {
    const r = await ns.exec(["curl", "-s", "--max-time", "5", url], { reject: false });
    return r.stdout;
  }

  beforeAll(async () => {
    await new Promise<void>((r) => upstream.listen(socketPath, () => r()));
    lab = await createRouterLab({ prefix: "cwd", hosts: ["vm1", "vm2", "ext"], agentNamespacePrefix: prefix });
    ({ fabric } = lab);
    ({ vm1, vm2, ext } = lab.hosts);
    await attach(vm1, INT1.net, "10.10.10.2/24", "10.10.10.1");
    await attach(vm2, INT2.net, "10.20.20.2/24", "10.20.20.1");
    // The external host knows only its own subnet: it can reach floating IPs and the gateway, not tenants.
    await attach(ext, EXT.net, "200.200.128.100/24", undefined);
    h = await createL3Agent({
      runner,
      initial: { routers: [router()] },
      config: { namespace_prefix: prefix, backend, resync_interval: 0, state_path: join(dir, "state") },
      options: { interface_driver: "linuxbridge", bridge_namespace: fabric.name, metadata_upstream: socketPath },
    });
    const report = await h.agent.start();
    expect(report.failed).toEqual([]);
    await tool(vm1, ["http-server", String(PORT)]);
    await tool(vm2, ["http-server", String(PORT)]);
    await tool(ext, ["http-server", String(PORT)]);
    await tool(vm1, ["echo-server", String(PORT + 1)]);
  });

  afterAll(async () => {
    await h?.handler.stopProxies().catch(() => undefined);
    await h?.agent.stop().catch(() => undefined);
    try {
      await lab?.delete();
    } finally {
      await new Promise<void>((r) => upstream.close(() => r()));
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("VM → external without a floating IP is seen from the gateway IP (SNAT)", async () => {
    expect(await curl(vm2, `http://200.200.128.100:${PORT}/`)).toBe("remote=200.200.128.2");
  });

  it("east-west between two tenant subnets is not NATed", async () => {
    expect(await curl(vm1, `http://10.20.20.2:${PORT}/`)).toBe("remote=10.10.10.2");
    expect(await curl(vm2, `http://10.10.10.2:${PORT}/`)).toBe("remote=10.20.20.2");
  });

  it("external → floating IP reaches the VM, which sees the real client address", async () => {
    expect(await curl(ext, `http://200.200.128.3:${PORT}/`)).toBe("remote=200.200.128.100");
  });

  it("VM → external leaves from its floating IP", async () => {
    expect(await curl(vm1, `http://200.200.128.100:${PORT}/`)).toBe("remote=200.200.128.3");
  });

  it("the external host cannot reach tenant addresses directly", async () => {
    const r = await ext.exec(["curl", "-s", "--max-time", "1", `http://10.10.10.2:${PORT}/`], { reject: false });
    expect(r.exitCode).not.toBe(0);
  });

  it("curl http://169.254.169.254/ from the VM reaches the upstream through the proxy with the right headers", async () => {
    metadataSeen.length = 0;
    const r = await vm1.exec(["curl", "-s", "--max-time", "5", "-H", "X-Neutron-Router-ID: spoofed", "-H", "X-Forwarded-For: 6.6.6.6", "http://169.254.169.254/latest/meta-data/instance-id"]);
    expect(r.stdout).toBe("i-0000abcd");
    expect(metadataSeen).toHaveLength(1);
    expect(metadataSeen[0]!.url).toBe("/latest/meta-data/instance-id");
    expect(metadataSeen[0]!.headers["x-neutron-router-id"]).toBe(ROUTER_ID);
    expect(metadataSeen[0]!.headers["x-forwarded-for"]).toBe("10.10.10.2");
    // The proxy port itself is closed to the VM (only redirected requests are accepted).
    const direct = await vm1.exec(["curl", "-s", "--max-time", "1", "http://10.10.10.1:9697/"], { reject: false });
    expect(direct.exitCode).not.toBe(0);
  });

  it("disassociating the floating IP cuts an established flow", async () => {
    let echoes = 0;
    await tool(ext, ["stream", "200.200.128.3", String(PORT + 1)], (line) => {
      if (line === "echo") echoes++;
    });
    const until = async (cond: () => boolean, ms: number) => {
      const end = Date.now() + ms;
      while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      return cond();
    };
    expect(await until(() => echoes >= 3, 3_000)).toBe(true);
    await h.push({ routers: [router([])] });
    // No connection to the floating IP is DNATed to the VM any more (the client's next packets may
    // open a new, un-NATed entry that leads nowhere), and the flow is cut.
    const ct = await runner.exec("conntrack", ["-L", "-d", "200.200.128.3"], { namespace: routerNs, reject: false });
    expect(ct.stdout).not.toContain("src=10.10.10.2");
    const settled = echoes;
    await new Promise((r) => setTimeout(r, 1_000));
    expect(echoes - settled).toBeLessThanOrEqual(1);
    expect(await curl(vm1, `http://200.200.128.100:${PORT}/`)).toBe("remote=200.200.128.2");
    const qg = await runner.exec("ip", ["-4", "-o", "addr", "show", "dev", `qg-${EXT.port.slice(0, 11)}`], { namespace: routerNs });
    expect(qg.stdout).not.toContain("200.200.128.3/32");
  });

  it("removing the router leaves no namespace, process or rule behind", async () => {
    const proxyPid = h.handler.liveRouters()[0]!.proxyPid!;
    expect(proxyPid).toBeGreaterThan(0);
    await h.push({ routers: [] });
    expect(await listNamespaces(runner)).not.toContain(routerNs);
    expect(() => process.kill(proxyPid, 0)).toThrow();
    const script = defaultMetadataProxyScript();
    const ours = readdirSync("/proc")
      .filter((p) => /^\d+$/.test(p))
      .filter((p) => {
        try {
          return readFileSync(`/proc/${p}/cmdline`, "utf8").split("\0").includes(script);
        } catch {
          return false;
        }
      });
    expect(ours).toEqual([]);
    // The router's veth ends left the bridges with it.
    const links = await fabric.exec(["ip", "-o", "link", "show"]);
    expect(links.stdout).not.toMatch(/tap(b1b1b1b1|b2b2b2b2|bebebebe)/);
    expect(h.handler.liveRouters()).toEqual([]);
  });
});
