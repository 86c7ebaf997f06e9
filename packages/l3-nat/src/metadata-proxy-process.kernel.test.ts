import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type IncomingHttpHeaders } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ExecaRunner } from "@chainwarden/core";
import { createNetns, isRoot, type TestNetns } from "@chainwarden/testing";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { defaultMetadataProxyScript, MetadataProxyProcess } from "./metadata-proxy-process.js";

const logger = pino({ level: "silent" });
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup() {
  const netns: TestNetns = await createNetns("cw-mdp");
  cleanups.push(() => netns.delete());
  await netns.exec(["ip", "link", "set", "lo", "up"]);
  const dir = mkdtempSync(join(tmpdir(), "cw-mdp-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const socketPath = join(dir, "metadata_proxy");
  const seen: IncomingHttpHeaders[] = [];
  const server = createServer((req, res) => {
    seen.push(req.headers);
    res.end(`hello ${req.url}`);
  });
  await new Promise<void>((r) => server.listen(socketPath, () => r()));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  return { netns, socketPath, seen };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitFor(cond: () => boolean | Promise<boolean>, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe.runIf(isRoot())("MetadataProxyProcess (real namespaces)", () => {
  it("runs inside the namespace on the port, forwards to a unix socket upstream, and stops without a trace", async () => {
    const { netns, socketPath, seen } = await setup();
    const runner = new ExecaRunner();
    const proxy = new MetadataProxyProcess({ namespace: netns.name, routerId: "r-1", port: 9697, upstream: { kind: "unix", socketPath }, logger, runner });
    cleanups.push(() => proxy.stop());
    await proxy.ensureRunning();
    const pid = proxy.pid!;
    // `ip netns exec` replaced itself with node: the child is the proxy, and it is in the namespace.
    expect((await netns.exec(["ip", "netns", "identify", String(pid)])).stdout.trim()).toBe(netns.name);
    const r = await netns.exec(["curl", "-s", "-H", "X-Neutron-Router-ID: spoofed", "http://127.0.0.1:9697/latest/meta-data/"]);
    expect(r.stdout).toBe("hello /latest/meta-data/");
    expect(seen[0]).toMatchObject({ "x-neutron-router-id": "r-1", "x-forwarded-for": "127.0.0.1" });
    // Idempotent.
    await proxy.ensureRunning();
    expect(proxy.pid).toBe(pid);
    await proxy.stop();
    expect(alive(pid)).toBe(false);
    expect((await netns.exec(["ss", "-ltn"])).stdout).not.toContain(":9697");
  });

  it("is restarted when it dies on its own", async () => {
    const { netns, socketPath } = await setup();
    const proxy = new MetadataProxyProcess({ namespace: netns.name, routerId: "r-2", port: 9697, upstream: { kind: "unix", socketPath }, logger, runner: new ExecaRunner() });
    cleanups.push(() => proxy.stop());
    await proxy.ensureRunning();
    const first = proxy.pid!;
    process.kill(first, "SIGKILL");
    await waitFor(() => proxy.pid !== undefined && proxy.pid !== first);
    await waitFor(async () => (await netns.exec(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:9697/"], { reject: false })).stdout === "200");
  });

  it("dies with the agent that started it (lifeline), even on SIGKILL", async () => {
    const { netns, socketPath } = await setup();
    const script = defaultMetadataProxyScript();
    const dist = script.replace(/metadata-proxy-main\.js$/, "index.js");
    const code = `
      import { MetadataProxyProcess } from ${JSON.stringify(dist)};
      import { ExecaRunner } from "@chainwarden/core";
      const silent = { debug() {}, info() {}, warn() {}, error() {}, child() { return silent; } };
      const p = new MetadataProxyProcess({ namespace: ${JSON.stringify(netns.name)}, routerId: "r-3", port: 9697,
        upstream: { kind: "unix", socketPath: ${JSON.stringify(socketPath)} }, logger: silent, runner: new ExecaRunner() });
      await p.ensureRunning();
      process.stdout.write(String(p.pid) + "\\n");
      setInterval(() => {}, 1000);
    `;
    const agent = spawn(process.execPath, ["--input-type=module", "-e", code], { cwd: join(import.meta.dirname, ".."), stdio: ["ignore", "pipe", "inherit"] });
    cleanups.push(() => void agent.kill("SIGKILL"));
    const proxyPid = await new Promise<number>((resolve, reject) => {
      agent.stdout!.once("data", (d: Buffer) => resolve(Number(d.toString().trim())));
      agent.once("exit", (c) => reject(new Error(`agent exited ${c}`)));
    });
    expect(alive(proxyPid)).toBe(true);
    agent.kill("SIGKILL");
    await waitFor(() => !alive(proxyPid));
    // (`ip netns pids` from the host: run inside, ip would list itself.)
    expect((await new ExecaRunner().exec("ip", ["netns", "pids", netns.name])).stdout.trim()).toBe("");
  });

  it("kills a proxy an earlier agent left in the namespace before starting its own", async () => {
    const { netns, socketPath } = await setup();
    const runner = new ExecaRunner();
    // A leftover: the proxy script started by hand, whose stdin never closes.
    const script = defaultMetadataProxyScript();
    const leftover = spawn("ip", ["netns", "exec", netns.name, process.execPath, script, "--router-id", "old", "--port", "9697", "--upstream", socketPath], { stdio: ["pipe", "pipe", "ignore"] });
    cleanups.push(() => void leftover.kill("SIGKILL"));
    await new Promise<void>((r) => leftover.stdout!.once("data", () => r()));
    const proxy = new MetadataProxyProcess({ namespace: netns.name, routerId: "r-4", port: 9697, upstream: { kind: "unix", socketPath }, logger, runner });
    cleanups.push(() => proxy.stop());
    await proxy.ensureRunning();
    expect(alive(leftover.pid!)).toBe(false);
    expect(proxy.pid).not.toBe(leftover.pid);
  });
});
