import type { ReconcileContext } from "@chainwarden/agent";
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { IpRunner, ProcessRunner, SpawnedProcess } from "@chainwarden/core";
import { MetadataProxyError } from "./metadata-proxy-error.js";
import { inspectProxyProcess, isNeutronHaproxy, parseProxyCommandLine, processAlive, readPidFile, type ProxyProcessInfo } from "./metadata-proxy-inspect.js";
import { MetadataProxyMonitor, type MonitoredMetadataProxy } from "./metadata-proxy-monitor.js";
import { formatMetadataUpstream, type MetadataUpstream } from "./metadata-proxy.js";
import { L3NatError } from "./l3-nat-errors.js";

/** The agent's pino logger type, without importing pino. */
type Logger = ReconcileContext["logger"];

/** The proxy's entry point, next to this file in `dist` (tests run from `src` against the build). */
export function defaultMetadataProxyScript(): string {
  const here = fileURLToPath(import.meta.url);
  const beside = here.replace(/\.[jt]s$/, "").replace(/metadata-proxy-process$/, "metadata-proxy-main.js");
  if (existsSync(beside)) return beside;
  const built = beside.replace(/\/src\/([^/]+)$/, "/dist/$1");
  if (existsSync(built)) return built;
  throw new L3NatError("METADATA_PROXY_MISSING", `the metadata proxy script is missing (looked for ${beside} and ${built}); build @chainwarden/l3-nat first`);
}

/**
 * Where a router's proxy keeps its files under Neutron's `state_path`: the pid file where Neutron
 * keeps haproxy's (`external/pids/<router id>.pid`), the log (the proxy's stdout and stderr, JSON
 * lines) in `external/logs/<router id>.log`, with one older generation in `.log.1`.
 */
export function metadataProxyFiles(statePath: string, routerId: string): { pidFile: string; logFile: string } {
  return { pidFile: join(statePath, "external", "pids", `${routerId}.pid`), logFile: join(statePath, "external", "logs", `${routerId}.log`) };
}

/**
 * Where `neutron-l3-agent` keeps a router's haproxy under the same `state_path`: its pid file
 * (`external/pids/<router id>.pid.haproxy`) and its config (`ns-metadata-proxy/<router id>.conf`).
 */
export function neutronHaproxyFiles(statePath: string, routerId: string): { pidFile: string; configFile: string } {
  return { pidFile: join(statePath, "external", "pids", `${routerId}.pid.haproxy`), configFile: join(statePath, "ns-metadata-proxy", `${routerId}.conf`) };
}

/**
 * Removes a router's pid file and logs once its proxy is gone (for a router removed while no agent
 * ran: its namespace, and the proxy in it, went with Neutron's stale namespace cleanup).
 */
export function removeMetadataProxyFiles(statePath: string, routerId: string): void {
  const { pidFile, logFile } = metadataProxyFiles(statePath, routerId);
  for (const f of [pidFile, logFile, `${logFile}.1`]) rmSync(f, { force: true });
}

/** One router's proxy, as the handler sees it. */
export interface MetadataProxyHandle {
  /** Adopts the proxy that runs as configured, or starts one; resolves once it listens. */
  ensureRunning(): Promise<void>;
  /** Stops it (the router goes) and waits until it is gone; its pid file goes with it. */
  stop(): Promise<void>;
  /** Stops watching it and leaves it running (the agent stops, or `apply --once` ends). */
  release?(): void;
  /** The router's namespace is gone: kills a proxy that still holds the deleted one. */
  namespaceGone?(): Promise<void>;
  readonly pid: number | undefined;
}

/** What a router's metadata proxy is made from (`MetadataProxyFactory`): where it runs and listens, the upstream it forwards to, and where its files live. */
export interface MetadataProxyParams {
  namespace: string;
  routerId: string;
  port: number;
  upstream: MetadataUpstream;
  logger: Logger;
  /** node for the proxy; ip for the processes left in its namespace. */
  runner: ProcessRunner & IpRunner;
  /** Neutron's `state_path` (agent config): where pid files and logs live, see `metadataProxyFiles`. */
  statePath: string;
}

/** Makes the proxy handle of one router (`RouterHandlerOptions.proxyFactory`); called once per router the handler sets up (never in a dry run); the handle's `ensureRunning` starts or adopts the proxy. */
export type MetadataProxyFactory = (params: MetadataProxyParams) => MetadataProxyHandle;

/** Options of `MetadataProxyProcess`: the router's parameters, plus the script, start and stop time-outs and the shared monitor. */
export interface MetadataProxyProcessOptions extends MetadataProxyParams {
  /** Default: `defaultMetadataProxyScript()`. */
  script?: string;
  /** How long a start may take before it counts as failed. */
  startTimeoutMs?: number;
  /** After SIGTERM, how long before SIGKILL (Neutron: 5 s). */
  stopTimeoutMs?: number;
  /** The agent's monitor (one for all routers); default: one of this proxy's own. */
  monitor?: MetadataProxyMonitor;
}

/** A proxy that lived this long is not in a crash loop: the next death respawns it at once. */
const STABLE_MS = 60_000;
const MAX_RESPAWN_DELAY_MS = 30_000;
/** After the last process in a deleted namespace exits the kernel frees its devices in a work queue (~20 ms here). */
const NETNS_RELEASE_MS = 100;
const ROUTER_ID = /^(?!\.)[A-Za-z0-9_.-]{1,64}$/;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * The metadata proxy of one router as a daemon, the way Neutron runs haproxy:
 * `ip netns exec <ns> <node> metadata-proxy-main.js --router-id … --namespace … --port … --upstream …
 * --pid-file … --log-file …`, started through core's runner (argument array, no shell; `ip netns exec`
 * replaces itself with node, so the pid is the proxy's) in a session of its own, stdout and stderr
 * appended to its log file. It does not depend on the agent: an `apply --once` leaves it running, an
 * agent that stops (SIGTERM) leaves it running, and the next agent adopts it.
 *
 * Identity. The proxy writes `<state_path>/external/pids/<router id>.pid` once it listens. A pid
 * from there (or this process's own child) is the router's proxy only if `/proc/<pid>` is alive,
 * its command line runs our script for this router id, and its `/proc/<pid>/ns/net` is
 * `/run/netns/<namespace>` (device and inode). Then:
 * - same script and options (port, upstream, namespace, pid file) → adopted, never restarted;
 * - other options → SIGTERM (SIGKILL after `stopTimeoutMs`), started anew;
 * - in a deleted namespace, or one deleted and made again → SIGKILL at once (it holds the dead
 *   namespace and its devices, and the router's ports could never be plugged again), started anew
 *   once the namespace exists;
 * - a dead pid, or one reused by another program → a stale pid file, replaced; nothing is signalled.
 * A start that finds the port taken kills any proxy of ours in the namespace that no pid file names, and tries once more.
 *
 * Monitoring (Neutron's ProcessMonitor): the shared `MetadataProxyMonitor` calls `check` every few
 * seconds, and an exit of this process's own child calls it at once. A dead proxy is started again,
 * logged and counted; one that keeps dying waits 1, 2, 4, … up to 30 s between starts (the first
 * respawn is immediate, and a proxy that lived a minute starts the count afresh).
 *
 * Operations on one handle (reconcile, monitor, stop) run one at a time.
 */
export class MetadataProxyProcess implements MetadataProxyHandle, MonitoredMetadataProxy {
  readonly routerId: string;
  readonly upstream: MetadataUpstream;
  readonly pidFile: string;
  readonly logFile: string;
  private readonly script: string;
  private readonly monitor: MetadataProxyMonitor;
  private readonly ownMonitor: boolean;
  private readonly logger: Logger;
  /** ensureRunning was called and neither stop nor release since: the monitor keeps it up. */
  private wanted = false;
  private stopped = false;
  /** The proxy last seen running as configured. */
  private proxyPid: number | undefined;
  private child: SpawnedProcess | undefined;
  private startedAt = 0;
  /** Consecutive deaths and failed starts (the backoff's exponent). */
  private failures = 0;
  private nextAttemptAt = 0;
  /** It ran and went: the next start is a respawn (counted). */
  private respawnPending = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: MetadataProxyProcessOptions) {
    if (!ROUTER_ID.test(options.routerId)) throw new Error(`router id ${JSON.stringify(options.routerId)} cannot name a pid file`);
    this.routerId = options.routerId;
    this.upstream = options.upstream;
    ({ pidFile: this.pidFile, logFile: this.logFile } = metadataProxyFiles(options.statePath, options.routerId));
    this.script = options.script ?? defaultMetadataProxyScript();
    this.ownMonitor = options.monitor === undefined;
    this.monitor = options.monitor ?? new MetadataProxyMonitor();
    this.logger = options.logger;
  }

  /** The proxy's pid while it runs. */
  get pid(): number | undefined {
    return this.proxyPid !== undefined && processAlive(this.proxyPid) ? this.proxyPid : undefined;
  }

  get running(): boolean {
    return this.pid !== undefined;
  }

  ensureRunning(): Promise<void> {
    if (this.stopped) return Promise.reject(new MetadataProxyError(this.routerId, "its proxy was stopped"));
    this.wanted = true;
    this.monitor.register(this);
    return this.serial(() => this.converge(false));
  }

  async check(): Promise<void> {
    if (!this.wanted || this.stopped) return;
    try {
      await this.serial(() => (this.wanted && !this.stopped ? this.converge(true) : Promise.resolve()));
    } catch (err) {
      this.logger.error({ err, retryInMs: Math.max(0, this.nextAttemptAt - Date.now()) }, "metadata proxy restart failed");
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unwatch();
    await this.serial(async () => {
      const found = this.find();
      if (found) await this.terminate(found.pid, true);
      this.removePidFile();
      for (const f of [this.logFile, `${this.logFile}.1`]) rmSync(f, { force: true });
      this.proxyPid = undefined;
      if (found) this.logger.info({ proxyPid: found.pid }, "metadata proxy stopped");
    });
    if (this.ownMonitor) this.monitor.close();
  }

  release(): void {
    this.unwatch();
    const pid = this.pid;
    if (pid !== undefined) this.logger.info({ proxyPid: pid, pidFile: this.pidFile, logFile: this.logFile }, "metadata proxy keeps running without the agent");
    if (this.ownMonitor) this.monitor.close();
  }

  async namespaceGone(): Promise<void> {
    await this.serial(async () => {
      const found = this.find();
      if (!found || found.netns === "same") return;
      await this.terminate(found.pid, false);
      this.logger.warn({ proxyPid: found.pid }, "router namespace is gone; its metadata proxy was killed");
      this.removePidFile();
      this.proxyPid = undefined;
      await sleep(NETNS_RELEASE_MS);
    });
  }

  // ---- internals ----------------------------------------------------------------------------------------

  private unwatch(): void {
    this.wanted = false;
    this.monitor.unregister(this);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Brings the proxy to "running as configured"; `fromMonitor` honours the crash-loop backoff. */
  private async converge(fromMonitor: boolean): Promise<void> {
    const { port, namespace } = this.options;
    const found = this.find();
    if (found && found.netns === "same" && this.matches(found)) {
      if (this.proxyPid !== found.pid) {
        if (this.child?.pid !== found.pid) {
          this.logger.info({ proxyPid: found.pid, pidFile: this.pidFile }, "metadata proxy adopted");
          await this.reportUpstream();
        }
        this.proxyPid = found.pid;
        this.startedAt = Date.now();
      }
      // Its pid file was lost (removed by hand): written again, or the next agent could not adopt it.
      if (readPidFile(this.pidFile) !== found.pid) this.writePidFile(found.pid);
      if (Date.now() - this.startedAt >= STABLE_MS) this.failures = 0;
      return;
    }

    const lost = this.proxyPid;
    this.proxyPid = undefined;
    if (found) {
      if (found.netns !== "same") {
        await this.terminate(found.pid, false);
        this.logger.warn({ proxyPid: found.pid, netns: found.netns === "gone" ? "deleted" : "deleted and made again" }, "router namespace is gone; its metadata proxy was killed");
      } else {
        const was = found.commandLine;
        this.logger.info({ proxyPid: found.pid, was: { port: was.port, upstream: was.upstream, script: was.script }, port, upstream: formatMetadataUpstream(this.upstream) }, "metadata proxy options changed; restarting it");
        await this.terminate(found.pid, true);
      }
    } else {
      const stale = readPidFile(this.pidFile);
      if (stale !== undefined && stale !== lost) this.logger.info({ proxyPid: stale, pidFile: this.pidFile }, "stale metadata proxy pid file replaced");
    }
    this.removePidFile();

    const namespaceExists = existsSync(`/run/netns/${namespace}`);
    if (lost !== undefined && !found) {
      // It was running and is not any more.
      this.respawnPending = true;
      if (!namespaceExists) {
        this.logger.info({ proxyPid: lost }, "metadata proxy ended with its router namespace; it starts again in the new one");
      } else {
        this.failures = Date.now() - this.startedAt >= STABLE_MS ? 1 : this.failures + 1;
        this.nextAttemptAt = Date.now() + respawnDelay(this.failures);
        this.logger.warn({ proxyPid: lost, failures: this.failures, respawnInMs: respawnDelay(this.failures) }, "metadata proxy died; starting it again");
      }
    }
    if (fromMonitor) {
      // Nothing to start in: the router's next reconcile makes the namespace again.
      if (!namespaceExists) return;
      const wait = this.nextAttemptAt - Date.now();
      if (wait > 0) {
        this.retryTimer ??= setTimeout(() => {
          this.retryTimer = undefined;
          void this.check();
        }, wait);
        this.retryTimer.unref();
        return;
      }
    }
    try {
      await this.retireNeutronHaproxy();
      try {
        await this.start();
      } catch (err) {
        // A proxy of ours without a pid file (one whose file was removed by hand) holds the port:
        // looked for only now, which spares every other start an `ip netns pids`.
        if (!(err instanceof MetadataProxyError && /EADDRINUSE/.test(err.message)) || !(await this.killLeftovers())) throw err;
        await this.start();
      }
    } catch (err) {
      this.failures++;
      this.nextAttemptAt = Date.now() + respawnDelay(this.failures);
      throw err;
    }
  }

  /** The proxy of this router (pid file, own child, last seen), whatever its options and namespace. */
  private find(): ProxyProcessInfo | undefined {
    const candidates = new Set<number>();
    const fromFile = readPidFile(this.pidFile);
    if (fromFile !== undefined) candidates.add(fromFile);
    if (this.child?.pid !== undefined && this.child.exitCode === null && this.child.signalCode === null) candidates.add(this.child.pid);
    if (this.proxyPid !== undefined) candidates.add(this.proxyPid);
    for (const pid of candidates) {
      const info = inspectProxyProcess(pid, this.options.namespace);
      if (info && info.commandLine.routerId === this.routerId) return info;
    }
    return undefined;
  }

  private matches(info: ProxyProcessInfo): boolean {
    const c = info.commandLine;
    return (
      c.script === this.script &&
      c.port === String(this.options.port) &&
      c.upstream === formatMetadataUpstream(this.upstream) &&
      c.namespace === this.options.namespace &&
      c.pidFile === this.pidFile
    );
  }

  private async start(): Promise<void> {
    const { namespace, port, runner } = this.options;
    const startTimeout = this.options.startTimeoutMs ?? 10_000;
    mkdirSync(dirname(this.pidFile), { recursive: true, mode: 0o755 });
    mkdirSync(dirname(this.logFile), { recursive: true, mode: 0o755 });
    const upstream = formatMetadataUpstream(this.upstream);
    const args = [this.script, "--router-id", this.routerId, "--namespace", namespace, "--port", String(port), "--upstream", upstream, "--pid-file", this.pidFile, "--log-file", this.logFile];
    const logFrom = fileSize(this.logFile);
    // Through core's runner (execa, argument arrays): `ip netns exec NS node SCRIPT ...`, as a daemon.
    const child = runner.spawn("node", args, { namespace, detached: { logFile: this.logFile } });
    this.child = child;
    let exited: string | undefined;
    child.once("error", (err) => (exited ??= err.message));
    child.once("exit", (code, signal) => {
      exited ??= signal ? `signal ${signal}` : `exit code ${code}`;
      // Our own child: its death is seen at once, not at the next poll.
      if (this.child === child && this.wanted && !this.stopped) void this.check();
    });
    const deadline = Date.now() + startTimeout;
    for (;;) {
      if (child.pid !== undefined && readPidFile(this.pidFile) === child.pid && processAlive(child.pid)) break;
      if (exited !== undefined) throw new MetadataProxyError(this.routerId, `its proxy exited while starting (${exited}): ${logTail(this.logFile, logFrom)}`);
      if (Date.now() > deadline) {
        child.kill("SIGKILL");
        throw new MetadataProxyError(this.routerId, `its proxy did not listen within ${startTimeout} ms: ${logTail(this.logFile, logFrom)}`);
      }
      await sleep(20);
    }
    this.proxyPid = child.pid;
    this.startedAt = Date.now();
    if (this.respawnPending) this.monitor.countRespawn();
    this.respawnPending = false;
    this.logger.info({ proxyPid: child.pid, port, upstream, pidFile: this.pidFile, logFile: this.logFile }, "metadata proxy started; it runs on its own");
    await this.reportUpstream();
  }

  /**
   * The haproxy `neutron-l3-agent` left running for this router when this agent replaced it (a
   * service stopped without its children, as with systemd's `KillMode=process`, or an agent killed by
   * hand): it holds the metadata port in the namespace, so ours could never start. It forwards to the
   * same metadata agent; it is stopped (SIGTERM, SIGKILL after `stopTimeoutMs`), its pid file removed,
   * and ours starts in its place. Found only by Neutron's pid file, checked against `/proc`.
   */
  private async retireNeutronHaproxy(): Promise<void> {
    const { namespace, statePath } = this.options;
    const { pidFile, configFile } = neutronHaproxyFiles(statePath, this.routerId);
    const pid = readPidFile(pidFile);
    if (pid === undefined || !isNeutronHaproxy(pid, namespace, configFile)) return;
    const signal = (s: NodeJS.Signals) => {
      if (!isNeutronHaproxy(pid, namespace, configFile)) return false;
      try {
        process.kill(pid, s);
        return true;
      } catch {
        return false;
      }
    };
    if (signal("SIGTERM") && !(await waitGone(pid, this.options.stopTimeoutMs ?? 5_000)) && signal("SIGKILL")) await waitGone(pid, 5_000);
    rmSync(pidFile, { force: true });
    this.logger.info({ proxyPid: pid, pidFile }, "neutron-l3-agent's haproxy metadata proxy stopped; this agent's proxy replaces it");
  }

  /** A router's proxy that cannot reach its upstream answers 502: say so, naming the router and the upstream. */
  private async reportUpstream(): Promise<void> {
    if (await this.monitor.probe(this.upstream)) return;
    this.logger.warn({ upstream: formatMetadataUpstream(this.upstream), error: this.monitor.upstreamError(this.upstream) }, "metadata upstream unreachable; the router's proxy answers 502");
  }

  /** Kills the proxies of ours in the namespace that no pid file names; true when there was one. */
  private async killLeftovers(): Promise<boolean> {
    const r = await this.options.runner.exec("ip", ["netns", "pids", this.options.namespace], { reject: false });
    let killed = false;
    for (const pid of r.stdout.split(/\s+/).filter((p) => /^\d+$/.test(p)).map(Number)) {
      if (!parseProxyCommandLine(readCommandLine(pid))) continue;
      this.logger.warn({ proxyPid: pid }, "killing a metadata proxy left in the router namespace");
      await this.terminate(pid, false, false);
      killed = true;
    }
    return killed;
  }

  /**
   * Ends the proxy `pid`: SIGTERM and up to `stopTimeoutMs` when `graceful`, then SIGKILL; resolves once it is gone.
   * Every signal goes only after `/proc` shows the pid still runs our script (for this router, when `sameRouter`).
   */
  private async terminate(pid: number, graceful: boolean, sameRouter = true): Promise<void> {
    const ours = () => {
      const c = processAlive(pid) ? parseProxyCommandLine(readCommandLine(pid)) : undefined;
      return c !== undefined && (!sameRouter || c.routerId === this.routerId);
    };
    const signal = (s: NodeJS.Signals) => {
      if (!ours()) return false;
      try {
        process.kill(pid, s);
        return true;
      } catch {
        return false;
      }
    };
    if (graceful && signal("SIGTERM")) {
      const timeout = this.options.stopTimeoutMs ?? 5_000;
      if (await waitGone(pid, timeout)) return;
      this.logger.warn({ proxyPid: pid, timeoutMs: timeout }, "metadata proxy ignored SIGTERM; killing it");
    }
    if (signal("SIGKILL")) await waitGone(pid, 5_000);
  }

  private writePidFile(pid: number): void {
    mkdirSync(dirname(this.pidFile), { recursive: true, mode: 0o755 });
    const tmp = `${this.pidFile}.${process.pid}.tmp`;
    writeFileSync(tmp, `${pid}\n`, { mode: 0o644 });
    renameSync(tmp, this.pidFile);
  }

  private removePidFile(): void {
    rmSync(this.pidFile, { force: true });
  }
}

/** 0 for the first respawn, then 1 s, 2 s, 4 s, … up to 30 s. */
function respawnDelay(failures: number): number {
  return failures <= 1 ? 0 : Math.min(MAX_RESPAWN_DELAY_MS, 1_000 * 2 ** (failures - 2));
}

async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (processAlive(pid)) {
    if (Date.now() > end) return false;
    await sleep(10);
  }
  return true;
}

function readCommandLine(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").slice(0, -1);
  } catch {
    return [];
  }
}

function fileSize(path: string): number {
  try {
    const fd = openSync(path, "r");
    try {
      return fstatSync(fd).size;
    } finally {
      closeSync(fd);
    }
  } catch {
    return 0;
  }
}

/** What the proxy (or `ip netns exec`) wrote since `from`: the last lines, for an error message. */
function logTail(path: string, from: number): string {
  let text = "";
  try {
    const fd = openSync(path, "r");
    try {
      const size = fstatSync(fd).size;
      const start = Math.max(from > size ? 0 : from, size - 2048);
      const buf = Buffer.alloc(size - start);
      readSync(fd, buf, 0, buf.length, start);
      text = buf.toString("utf8");
    } finally {
      closeSync(fd);
    }
  } catch {
    return "(no log)";
  }
  const lines = text.split("\n").filter(Boolean).slice(-3);
  const shown = lines.map((l) => {
    try {
      const j = JSON.parse(l) as { msg?: string; error?: string };
      return j.error ?? j.msg ?? l;
    } catch {
      return l;
    }
  });
  return shown.join("; ").slice(0, 500) || "(nothing logged)";
}
