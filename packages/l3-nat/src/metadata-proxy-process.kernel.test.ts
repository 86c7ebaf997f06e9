/**
 * The metadata proxy as a daemon, on the real kernel (root). Every test makes its own uniquely named
 * namespace and a temp `state_path`, and teardown always kills every proxy whose command line names
 * that state path, deletes the namespace and removes the directory, also when the test fails.
 */
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Writable } from "node:stream";
import { AgentMetrics } from "@chainwarden/agent";
import { ExecaRunner } from "@chainwarden/core";
import { Cleanups, createNetns, isRoot, type TestNetns } from "@chainwarden/testing";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { alive, pidsMentioning } from "./test-support/processes.js";
import { MetadataProxyMonitor } from "./metadata-proxy-monitor.js";
import { defaultMetadataProxyScript, MetadataProxyProcess, metadataProxyFiles, neutronHaproxyFiles, type MetadataProxyProcessOptions } from "./metadata-proxy-process.js";

// Last in, first out: agents go before their namespaces and files.
const cleanups = new Cleanups();
afterEach(() => cleanups.run());



async function waitFor(cond: () => boolean | Promise<boolean>, ms = 8_000, what = "condition"): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Log lines of a pino logger, parsed and raw; `bindings` as the handler's child logger has them. */
function capture(bindings: Record<string, string> = {}) {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split("\n").filter(Boolean)) {
        raw.push(l);
        lines.push(JSON.parse(l) as Record<string, unknown>);
      }
      done();
    },
  });
  return { lines, raw, logger: pino({ level: "info" }, stream).child(bindings), msgs: () => lines.map((l) => l.msg) };
}

interface Upstream {
  socketPath: string;
  seen: { url: string | undefined; headers: IncomingHttpHeaders }[];
  /** Starts the metadata agent stand-in (when `setup` was told not to). */
  listen(): Promise<void>;
}

async function setup(options: { upstream?: boolean } = {}) {
  const netns: TestNetns = await createNetns("cw-mdp");
  cleanups.defer(() => netns.delete());
  await netns.exec(["ip", "link", "set", "lo", "up"]);
  const dir = mkdtempSync(join(tmpdir(), "cw-mdp-"));
  cleanups.defer(() => rmSync(dir, { recursive: true, force: true }));
  // Runs before the namespace and the directory go (cleanups run last in, first out).
  cleanups.defer(async () => {
    for (const pid of pidsMentioning(dir)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    await waitFor(() => pidsMentioning(dir).every((p) => !alive(p)), 5_000, "test proxies to die");
  });
  const statePath = join(dir, "state");
  const socketPath = join(dir, "metadata_proxy");
  const seen: Upstream["seen"] = [];
  let server: Server | undefined;
  const upstream: Upstream = {
    socketPath,
    seen,
    async listen() {
      server = createServer((req, res) => {
        seen.push({ url: req.url, headers: req.headers });
        res.end(`hello ${req.url}`);
      });
      await new Promise<void>((r) => server!.listen(socketPath, () => r()));
      cleanups.defer(() => new Promise<void>((r) => server!.close(() => r())));
    },
  };
  if (options.upstream !== false) await upstream.listen();
  const runner = new ExecaRunner();
  const routerId = randomUUID();
  // What the handler gives a proxy: the loop's namespace logger, bound to the router.
  const log = capture({ namespace: netns.name, router: routerId, component: "metadata-proxy" });
  /** A handle as the l3 agent makes one; released in teardown (its monitor stops; the proxy is killed above). */
  const handle = (extra: Partial<MetadataProxyProcessOptions> = {}) => {
    const h = new MetadataProxyProcess({ namespace: netns.name, routerId, port: 9697, upstream: { kind: "unix", socketPath }, logger: log.logger, runner, statePath, ...extra });
    cleanups.defer(() => h.release());
    return h;
  };
  const curl = async (args: string[]) => (await netns.exec(["curl", "-s", "--max-time", "5", ...args], { reject: false })).stdout;
  const status = (path = "/latest/meta-data/", extra: string[] = []) => curl(["-o", "/dev/null", "-w", "%{http_code}", ...extra, `http://127.0.0.1:9697${path}`]);
  return { netns, dir, statePath, upstream, runner, routerId, log, handle, curl, status, files: metadataProxyFiles(statePath, routerId) };
}

const readPid = (path: string) => Number(readFileSync(path, "utf8").trim());
const sameNetns = (pid: number, ns: string) => {
  const a = statSync(`/proc/${pid}/ns/net`);
  const b = statSync(`/run/netns/${ns}`);
  return a.dev === b.dev && a.ino === b.ino;
};

describe.runIf(isRoot())("MetadataProxyProcess: a daemon per router (real namespaces)", () => {
  it("runs in the router namespace in a session of its own, tied to the agent by nothing, with its pid file and log", async () => {
    const t = await setup();
    const proxy = t.handle();
    await proxy.ensureRunning();
    const pid = proxy.pid!;
    expect(readPid(t.files.pidFile)).toBe(pid);
    expect(t.files.pidFile).toBe(join(t.statePath, "external", "pids", `${t.routerId}.pid`));
    expect(sameNetns(pid, t.netns.name)).toBe(true);
    // Its own session (setsid) and no pipe to us: stdin /dev/null, stdout and stderr the log file.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    expect(Number(fields[3])).toBe(pid);
    expect(readlinkSync(`/proc/${pid}/fd/0`)).toBe("/dev/null");
    expect(readlinkSync(`/proc/${pid}/fd/1`)).toBe(t.files.logFile);
    expect(readlinkSync(`/proc/${pid}/fd/2`)).toBe(t.files.logFile);
    expect(await t.curl(["http://127.0.0.1:9697/latest/meta-data/"])).toBe("hello /latest/meta-data/");
    const logged = readFileSync(t.files.logFile, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(logged[0]).toMatchObject({ msg: "metadata proxy listening", router: t.routerId, namespace: t.netns.name, pid, port: 9697 });
    // The agent's lines: one key once (no second `pid` or `namespace` beside the logger's own).
    const started = t.log.lines.find((l) => l.msg === "metadata proxy started; it runs on its own")!;
    expect(started).toMatchObject({ proxyPid: pid, pidFile: t.files.pidFile, logFile: t.files.logFile });
    expect(started.pid).toBe(process.pid);
    for (const line of t.log.raw) for (const key of ["pid", "namespace", "router"]) expect(line.split(`"${key}":`).length - 1, line).toBe(1);
    // Idempotent.
    await proxy.ensureRunning();
    expect(proxy.pid).toBe(pid);
  });

  it("outlives the agent process that started it (apply --once exits), and the next agent adopts it by its pid file", async () => {
    const t = await setup();
    const dist = defaultMetadataProxyScript().replace(/metadata-proxy-main\.js$/, "metadata-proxy-process.js");
    const code = `
      import { MetadataProxyProcess } from ${JSON.stringify(dist)};
      import { ExecaRunner } from "@chainwarden/core";
      const silent = { debug() {}, info() {}, warn() {}, error() {}, child() { return silent; } };
      const p = new MetadataProxyProcess({ namespace: ${JSON.stringify(t.netns.name)}, routerId: ${JSON.stringify(t.routerId)}, port: 9697,
        upstream: { kind: "unix", socketPath: ${JSON.stringify(t.upstream.socketPath)} }, logger: silent, runner: new ExecaRunner(),
        statePath: ${JSON.stringify(t.statePath)} });
      await p.ensureRunning();
      process.stdout.write(String(p.pid) + "\\n");
      process.exit(0);
    `;
    const agent = spawn(process.execPath, ["--input-type=module", "-e", code], { cwd: join(import.meta.dirname, ".."), stdio: ["ignore", "pipe", "inherit"] });
    cleanups.defer(() => void agent.kill("SIGKILL"));
    let out = "";
    agent.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    const code0 = await new Promise<number | null>((resolve) => agent.once("exit", (c) => resolve(c)));
    expect(code0).toBe(0);
    const pid = Number(out.trim());
    expect(pid).toBeGreaterThan(0);
    // The agent is gone; the proxy is not, and answers.
    await new Promise((r) => setTimeout(r, 300));
    expect(alive(pid)).toBe(true);
    expect(await t.status()).toBe("200");
    // A new agent: adopted, not restarted.
    const next = t.handle();
    await next.ensureRunning();
    expect(next.pid).toBe(pid);
    expect(t.log.msgs()).toContain("metadata proxy adopted");
    expect(t.log.msgs()).not.toContain("metadata proxy started; it runs on its own");
  });

  it("replaces the haproxy a neutron-l3-agent it took over from left holding the port: stopped, its pid file removed, ours listens", async (ctx) => {
    const haproxy = ["/usr/sbin/haproxy", "/usr/bin/haproxy"].find((p) => existsSync(p));
    if (!haproxy) ctx.skip("haproxy is not installed");
    const t = await setup();
    const { pidFile, configFile } = neutronHaproxyFiles(t.statePath, t.routerId);
    mkdirSync(dirname(pidFile), { recursive: true });
    mkdirSync(dirname(configFile), { recursive: true });
    // What neutron-l3-agent (Zed) writes for a router and runs as `haproxy -f <config>` in its namespace.
    writeFileSync(
      configFile,
      [
        "global",
        "    user        root",
        "    group       root",
        "    maxconn     1024",
        `    pidfile     ${pidFile}`,
        "    daemon",
        "defaults",
        "    mode http",
        "    option http-server-close",
        "    option forwardfor",
        "    timeout connect         30s",
        "    timeout client          32s",
        "    timeout server          32s",
        "listen listener",
        "    bind 0.0.0.0:9697",
        `    server metadata ${t.upstream.socketPath}`,
        "    http-request del-header X-Neutron-Network-ID",
        `    http-request set-header X-Neutron-Router-ID ${t.routerId}`,
        "",
      ].join("\n"),
    );
    await t.netns.exec([haproxy!, "-f", configFile]);
    await waitFor(() => existsSync(pidFile), 5_000, "haproxy's pid file");
    const haproxyPid = readPid(pidFile);
    expect(await t.curl(["http://127.0.0.1:9697/latest/meta-data/"])).toBe("hello /latest/meta-data/");

    const proxy = t.handle();
    await proxy.ensureRunning();
    expect(alive(haproxyPid)).toBe(false);
    expect(existsSync(pidFile)).toBe(false);
    expect(readPid(t.files.pidFile)).toBe(proxy.pid);
    expect(t.log.lines.find((l) => l.msg === "neutron-l3-agent's haproxy metadata proxy stopped; this agent's proxy replaces it")).toMatchObject({ proxyPid: haproxyPid, pidFile });
    expect(t.log.msgs()).not.toContain("metadata proxy failed to start");
    expect(await t.curl(["http://127.0.0.1:9697/latest/meta-data/"])).toBe("hello /latest/meta-data/");
    // Its config stays (Neutron's file); a pid file naming anything but that haproxy is never acted on.
    expect(existsSync(configFile)).toBe(true);
  });

  it("a handle dropped without stop leaves its proxy to the next handle: adopted with the same options, restarted with others", async () => {
    const t = await setup();
    const first = t.handle();
    await first.ensureRunning();
    const pid = first.pid!;
    first.release();
    expect(t.log.msgs()).toContain("metadata proxy keeps running without the agent");
    expect(alive(pid)).toBe(true);

    const second = t.handle();
    await second.ensureRunning();
    expect(second.pid).toBe(pid);
    second.release();

    // The port changed in the config: the old proxy goes (SIGTERM), a new one listens on the new port.
    const third = t.handle({ port: 9698 });
    await third.ensureRunning();
    expect(third.pid).not.toBe(pid);
    expect(alive(pid)).toBe(false);
    expect(t.log.msgs()).toContain("metadata proxy options changed; restarting it");
    expect((await t.netns.exec(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:9698/"])).stdout).toBe("200");
    expect(readPid(t.files.pidFile)).toBe(third.pid);
  });

  it("kills a proxy of ours that no pid file names when it holds the port, and starts its own", async () => {
    const t = await setup();
    // Started by hand, without a pid file.
    const stray = spawn("ip", ["netns", "exec", t.netns.name, process.execPath, defaultMetadataProxyScript(), "--router-id", "old", "--port", "9697", "--upstream", t.upstream.socketPath], { stdio: ["ignore", "pipe", "ignore"] });
    cleanups.defer(() => void stray.kill("SIGKILL"));
    await new Promise<void>((r) => stray.stdout!.once("data", () => r()));
    const proxy = t.handle();
    await proxy.ensureRunning();
    expect(alive(stray.pid!)).toBe(false);
    expect(proxy.pid).not.toBe(stray.pid);
    expect(t.log.lines.find((l) => l.msg === "killing a metadata proxy left in the router namespace")).toMatchObject({ proxyPid: stray.pid });
    expect(await t.status()).toBe("200");
  });

  it("is started again after kill -9, also when adopted (the monitor polls), and counted", async () => {
    const t = await setup();
    const metrics = new AgentMetrics();
    const monitor = new MetadataProxyMonitor({ checkIntervalMs: 200, metrics });
    cleanups.defer(() => monitor.close());
    const first = t.handle({ monitor });
    await first.ensureRunning();
    const p1 = first.pid!;
    // Our own child: its exit is seen at once.
    process.kill(p1, "SIGKILL");
    await waitFor(() => first.pid !== undefined && first.pid !== p1, 8_000, "respawn of our child");
    // The new daemon writes its pid file itself once it listens: a Node start, which took more than
    // five seconds on a loaded CI machine.
    await waitFor(() => existsSync(t.files.pidFile) && readPid(t.files.pidFile) === first.pid, 20_000, "the pid file to name the new proxy");
    const p2 = first.pid!;
    expect(t.log.lines.find((l) => l.msg === "metadata proxy died; starting it again")).toMatchObject({ proxyPid: p1 });
    await waitFor(async () => (await t.status()) === "200", 5_000, "the new proxy to answer");

    // Adopted (not our child: only polling can see it die).
    first.release();
    const adopter = t.handle({ monitor });
    await adopter.ensureRunning();
    expect(adopter.pid).toBe(p2);
    process.kill(p2, "SIGKILL");
    await waitFor(() => adopter.pid !== undefined && adopter.pid !== p2, 8_000, "respawn of the adopted proxy");
    await waitFor(async () => (await t.status()) === "200", 5_000, "the new proxy to answer");
    expect(await metrics.metricsText()).toMatch(/^chainwarden_l3_metadata_proxy_respawns_total 2$/m);
    expect(await metrics.metricsText()).toMatch(new RegExp(`^chainwarden_l3_metadata_proxy_up\\{router="${t.routerId}"\\} 1$`, "m"));
  });

  it("backs off when it keeps dying: the first respawn at once, the next after a second", async () => {
    const t = await setup();
    const monitor = new MetadataProxyMonitor({ checkIntervalMs: 100 });
    cleanups.defer(() => monitor.close());
    const proxy = t.handle({ monitor });
    await proxy.ensureRunning();
    const p1 = proxy.pid!;
    let t0 = Date.now();
    process.kill(p1, "SIGKILL");
    await waitFor(() => proxy.pid !== undefined && proxy.pid !== p1, 8_000, "first respawn");
    const first = Date.now() - t0;
    const p2 = proxy.pid!;
    t0 = Date.now();
    process.kill(p2, "SIGKILL");
    await waitFor(() => proxy.pid !== undefined && proxy.pid !== p2, 8_000, "second respawn");
    const second = Date.now() - t0;
    expect(second).toBeGreaterThanOrEqual(950);
    expect(second - first).toBeGreaterThanOrEqual(700);
    expect(t.log.lines.filter((l) => l.msg === "metadata proxy died; starting it again").map((l) => l.respawnInMs)).toEqual([0, 1_000]);
  });

  it("stop: SIGTERM, pid file and log removed, port closed; a pid file naming another program is stale and never signalled", async () => {
    const t = await setup();
    // A stale pid file whose pid is now another program's.
    const other = spawn("sleep", ["60"], { stdio: "ignore" });
    cleanups.defer(() => void other.kill("SIGKILL"));
    await new Promise((r) => other.once("spawn", r));
    mkdirSync(join(t.statePath, "external", "pids"), { recursive: true });
    writeFileSync(t.files.pidFile, `${other.pid}\n`);

    const proxy = t.handle();
    await proxy.ensureRunning();
    const pid = proxy.pid!;
    expect(pid).not.toBe(other.pid);
    expect(readPid(t.files.pidFile)).toBe(pid);
    expect(t.log.lines.find((l) => l.msg === "stale metadata proxy pid file replaced")).toMatchObject({ proxyPid: other.pid });
    expect(alive(other.pid!)).toBe(true);

    await proxy.stop();
    expect(alive(pid)).toBe(false);
    expect(existsSync(t.files.pidFile)).toBe(false);
    expect(existsSync(t.files.logFile)).toBe(false);
    expect((await t.netns.exec(["ss", "-ltn"])).stdout).not.toContain(":9697");
    expect(t.log.lines.find((l) => l.msg === "metadata proxy stopped")).toMatchObject({ proxyPid: pid });
    // It went on SIGTERM (removing its own pid file), not on the SIGKILL after the timeout.
    expect(t.log.msgs()).not.toContain("metadata proxy ignored SIGTERM; killing it");
    expect(alive(other.pid!)).toBe(true);
    await expect(proxy.ensureRunning()).rejects.toThrow(/stopped/);
  });

  it("exits by itself within two seconds when its router namespace is deleted: it never pins a dead namespace", async () => {
    const t = await setup();
    // No polling: only the proxy itself can notice.
    const monitor = new MetadataProxyMonitor({ checkIntervalMs: 0 });
    const proxy = t.handle({ monitor });
    await proxy.ensureRunning();
    const pid = proxy.pid!;
    const deleted = Date.now();
    await t.runner.exec("ip", ["netns", "delete", t.netns.name]);
    await waitFor(() => !alive(pid), 2_500, "the proxy to exit");
    expect(Date.now() - deleted).toBeLessThan(2_500);
    expect(existsSync(t.files.pidFile)).toBe(false);
    expect(readFileSync(t.files.logFile, "utf8")).toContain("router namespace is gone; metadata proxy exits");
    // And no respawn into nothing.
    await new Promise((r) => setTimeout(r, 300));
    expect(proxy.pid).toBeUndefined();
  });

  it("the agent kills a proxy that still holds a deleted namespace (one that cannot notice: stopped)", async () => {
    const t = await setup();
    const monitor = new MetadataProxyMonitor({ checkIntervalMs: 200 });
    cleanups.defer(() => monitor.close());
    const proxy = t.handle({ monitor });
    await proxy.ensureRunning();
    const pid = proxy.pid!;
    process.kill(pid, "SIGSTOP");
    await t.runner.exec("ip", ["netns", "delete", t.netns.name]);
    await waitFor(() => t.log.msgs().includes("router namespace is gone; its metadata proxy was killed"), 3_000, "the monitor to kill the proxy");
    expect(alive(pid)).toBe(false);
    expect(t.log.lines.find((l) => l.msg === "router namespace is gone; its metadata proxy was killed")).toMatchObject({ proxyPid: pid });
    expect(existsSync(t.files.pidFile)).toBe(false);
    // The same through the handler's call when it finds the namespace gone (nothing left to kill now).
    await proxy.namespaceGone();
  });

  it("answers 502 at once when the upstream socket is missing; the agent warns naming the router and the socket, and exports it", async () => {
    const t = await setup({ upstream: false });
    const metrics = new AgentMetrics();
    const monitorLog = capture();
    const monitor = new MetadataProxyMonitor({ checkIntervalMs: 200, metrics, logger: monitorLog.logger });
    cleanups.defer(() => monitor.close());
    const proxy = t.handle({ monitor });
    await proxy.ensureRunning();
    const started = Date.now();
    expect(await t.status()).toBe("502");
    expect(Date.now() - started).toBeLessThan(2_000);
    const warn = t.log.lines.find((l) => l.msg === "metadata upstream unreachable; the router's proxy answers 502");
    expect(warn).toMatchObject({ level: 40, upstream: t.upstream.socketPath, error: "ENOENT" });
    expect(warn!.router).toBe(t.routerId);
    expect(monitorLog.lines.find((l) => l.msg === "metadata upstream unreachable; metadata proxies answer 502")).toMatchObject({ upstream: t.upstream.socketPath, routerIds: [t.routerId] });
    const gauge = (v: number) => new RegExp(`^chainwarden_l3_metadata_upstream_up\\{upstream="${t.upstream.socketPath}"\\} ${v}$`, "m");
    expect(await metrics.metricsText()).toMatch(gauge(0));
    expect(readFileSync(t.files.logFile, "utf8")).toContain("metadata upstream request failed");

    await t.upstream.listen();
    await waitFor(async () => gauge(1).test(await metrics.metricsText()), 3_000, "the upstream to be seen");
    expect(monitorLog.msgs()).toContain("metadata upstream reachable again");
    expect(await t.status()).toBe("200");
  });

  it("in the namespace: drops the underscore spellings of our headers and refuses absolute-form targets", async () => {
    const t = await setup();
    const proxy = t.handle();
    await proxy.ensureRunning();
    const body = await t.curl(["-H", "X_Neutron_Router_ID: evil", "-H", "X_Forwarded_For: 6.6.6.6", "-H", "X-Instance_ID: evil", "-H", "x_tenant_id: evil", "http://127.0.0.1:9697/latest/meta-data/"]);
    expect(body).toBe("hello /latest/meta-data/");
    const headers = t.upstream.seen.at(-1)!.headers;
    expect(Object.keys(headers).filter((h) => h.includes("_"))).toEqual([]);
    expect(headers).toMatchObject({ "x-neutron-router-id": t.routerId, "x-forwarded-for": "127.0.0.1" });
    const before = t.upstream.seen.length;
    expect(await t.status("/", ["--request-target", "http://elsewhere.example/latest/meta-data/"])).toBe("400");
    expect(t.upstream.seen.length).toBe(before);
  });
});
