/**
 * A router namespace deleted under the running agent (real kernel, root). Before, the router's
 * metadata proxy kept the deleted namespace alive with its veths, and every rebuild failed with
 * `RTNETLINK answers: File exists` for as long as the agent ran. Now the proxy exits by itself and the
 * agent kills it when it finds the namespace gone, so the next full pass rebuilds the router: its
 * namespace, devices, rules and proxy, and an instance gets its metadata again.
 *
 * Everything lives in a router lab (unique names; `delete()` also removes the agent's namespaces by
 * their unique prefix) and a temp `state_path`; teardown always stops the agent, kills any proxy
 * naming that state path and removes it, also when the test fails.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ExecaRunner } from "@chainwarden/core";
import { Cleanups, createRouterLab, isRoot, type RouterLab } from "@chainwarden/testing";
import { afterEach, describe, expect, it } from "vitest";
import { alive, pidsMentioning } from "./test-support/processes.js";
import { bridgeName } from "./device-names.js";
import { createL3Agent } from "./test-support/l3-agent-harness.js";

const ROUTER_ID = `e1e1${randomBytes(2).toString("hex")}-0000-4000-8000-000000000001`;
const NET = { net: "a3a3a3a3-3333-4333-8333-333333333333", port: "b3b3b3b3-3333-4333-8333-333333333333" };

const router = {
  id: ROUTER_ID,
  gw_port: null,
  _interfaces: [
    {
      id: NET.port,
      network_id: NET.net,
      mac_address: "fa:16:3e:00:00:31",
      fixed_ips: [{ ip_address: "10.30.30.1", subnet_id: "s3" }],
      subnets: [{ id: "s3", cidr: "10.30.30.0/24", gateway_ip: "10.30.30.1" }],
    },
  ],
  _floatingips: [],
};

// Last in, first out: agents go before their namespaces and files.
const cleanups = new Cleanups();
afterEach(() => cleanups.run());



function netnsInode(path: string): number | undefined {
  try {
    return statSync(path).ino;
  } catch {
    return undefined;
  }
}

async function waitFor(cond: () => boolean | Promise<boolean>, ms: number, what: string | (() => string)): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${typeof what === "string" ? what : what()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.runIf(isRoot())("a router namespace deleted under the running agent", () => {
  it("is rebuilt within one retry, with its devices, rules and metadata proxy", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cw-mdr-"));
    cleanups.defer(() => rmSync(dir, { recursive: true, force: true }));
    cleanups.defer(() => {
      for (const pid of pidsMentioning(dir)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // gone
        }
      }
    });
    const socketPath = join(dir, "metadata_proxy");
    const upstream = createServer((req, res) => res.end(`i-0000abcd for ${req.headers["x-neutron-router-id"]}`));
    await new Promise<void>((r) => upstream.listen(socketPath, () => r()));
    cleanups.defer(() => new Promise<void>((r) => upstream.close(() => r())));

    const prefix = `cwr${randomBytes(3).toString("hex")}-`;
    const routerNs = `${prefix}${ROUTER_ID}`;
    let lab: RouterLab<"vm"> | undefined = await createRouterLab({ prefix: "cwr", hosts: ["vm"], agentNamespacePrefix: prefix });
    cleanups.defer(() => lab?.delete());
    const runner = new ExecaRunner();
    const h = await createL3Agent({
      runner,
      initial: { routers: [router] },
      // A full pass every second: that is when the agent looks for the namespace.
      config: { namespace_prefix: prefix, state_path: join(dir, "state"), resync_interval: 1 },
      options: { interface_driver: "linuxbridge", bridge_namespace: lab.fabric.name, metadata_upstream: socketPath },
    });
    cleanups.defer(async () => {
      await h.agent.stop();
      await h.handler.stopProxies();
    });
    expect((await h.agent.start()).failed).toEqual([]);
    await lab.attach(lab.hosts.vm, bridgeName(NET.net), "10.30.30.2/24", "10.30.30.1");
    const metadata = async () => (await lab!.hosts.vm.exec(["curl", "-s", "--max-time", "2", "http://169.254.169.254/latest/meta-data/instance-id"], { reject: false })).stdout;
    expect(await metadata()).toBe(`i-0000abcd for ${ROUTER_ID}`);
    const oldProxy = h.handler.liveRouters()[0]!.proxyPid!;
    const retries = async () => Number(/^chainwarden_retries_total (\d+)$/m.exec(await h.agent.metrics.metricsText())?.[1] ?? 0);
    const retriesBefore = await retries();

    await runner.exec("ip", ["netns", "delete", routerNs]);
    const deletedAt = Date.now();
    // (The VM alone proves nothing: a proxy holding the deleted namespace keeps its devices, rules
    // and proxy working behind the bridge, unreachable to the agent.)
    const qr = `qr-${NET.port.slice(0, 11)}`;
    let missing = "";
    await waitFor(
      async () => {
        // (Not "another inode than before": the kernel hands a freed namespace's inode number out again.)
        const ino = netnsInode(`/run/netns/${routerNs}`);
        missing = "the namespace";
        if (ino === undefined) return false;
        const link = await runner.exec("ip", ["-o", "link", "show", qr], { namespace: routerNs, reject: false });
        missing = `${qr} up (${link.stdout.trim() || link.stderr.trim()})`;
        if (!/[<,]UP[,>]/.test(link.stdout)) return false;
        const proxy = h.handler.liveRouters()[0]?.proxyPid;
        missing = `a new proxy in the new namespace (pid ${proxy}, the old one ${oldProxy})`;
        return proxy !== undefined && proxy !== oldProxy && netnsInode(`/proc/${proxy}/ns/net`) === ino;
      },
      10_000,
      () => `the router to be rebuilt; still missing: ${missing}`,
    );
    const rebuiltMs = Date.now() - deletedAt;
    expect(alive(oldProxy)).toBe(false);
    expect(h.handler.liveRouters()[0]!.proxyPid).not.toBe(oldProxy);
    await waitFor(async () => (await metadata()) === `i-0000abcd for ${ROUTER_ID}`, 5_000, "the VM to get its metadata again");
    const rules = await runner.save({ namespace: routerNs, family: 4 }, { table: "nat" });
    expect(rules).toContain("-A neutron-l3-agent-PREROUTING -d 169.254.169.254/32 -i qr-+ -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 9697");
    // Within one retry: the pass that found the namespace gone, at most one more.
    expect((await retries()) - retriesBefore).toBeLessThanOrEqual(1);
    expect(rebuiltMs).toBeLessThan(10_000);
  });
});
