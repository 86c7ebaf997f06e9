import type { ReconcileContext } from "@chainwarden/agent";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { IptablesRunner, SpawnedProcess } from "@chainwarden/core";
import { formatMetadataUpstream, type MetadataUpstream } from "./metadata-proxy.js";

/** The agent's pino logger type, without importing pino. */
type Logger = ReconcileContext["logger"];

/** The proxy's entry point, next to this file in `dist` (tests run from `src` against the build). */
export function defaultMetadataProxyScript(): string {
  const here = fileURLToPath(import.meta.url);
  const beside = here.replace(/\.[jt]s$/, "").replace(/metadata-proxy-process$/, "metadata-proxy-main.js");
  if (existsSync(beside)) return beside;
  const built = beside.replace(/\/src\/([^/]+)$/, "/dist/$1");
  if (existsSync(built)) return built;
  throw new Error(`the metadata proxy script is missing (looked for ${beside} and ${built}); build @chainwarden/l3-nat first`);
}

/** One router's running proxy, as the handler sees it. */
export interface MetadataProxyHandle {
  /** Starts it unless it runs; resolves once it listens. */
  ensureRunning(): Promise<void>;
  /** Stops it and waits until it is gone. */
  stop(): Promise<void>;
  readonly pid: number | undefined;
}

export interface MetadataProxyParams {
  namespace: string;
  routerId: string;
  port: number;
  upstream: MetadataUpstream;
  logger: Logger;
  runner: IptablesRunner;
}

export type MetadataProxyFactory = (params: MetadataProxyParams) => MetadataProxyHandle;

export interface MetadataProxyProcessOptions extends MetadataProxyParams {
  /** Default: `defaultMetadataProxyScript()`. */
  script?: string;
  /** How long a start may take before it counts as failed. */
  startTimeoutMs?: number;
  /** After SIGTERM, how long before SIGKILL (Neutron: 5 s). */
  stopTimeoutMs?: number;
}

const MAX_RESPAWN_DELAY_MS = 30_000;

/**
 * The metadata proxy of one router, as a child process of the agent running inside the router's
 * namespace: `ip netns exec <ns> <node> metadata-proxy-main.js --router-id … --port … --upstream …`
 * (spawned with an argument array, never a shell; `ip netns exec` replaces itself with node, so the
 * child's pid is the proxy's).
 *
 * Never leaked:
 * - Lifeline: the proxy's stdin is a pipe whose other end only the agent holds. When the agent
 *   exits or is killed, the pipe closes and the proxy exits on end-of-file. So proxies live exactly as
 *   long as the agent, and a restarted agent starts fresh ones.
 * - Adoption: before the first start in a namespace, any earlier proxy still in it (pid in
 *   `ip netns pids` whose command line names our script) is killed.
 * - Stop: SIGTERM, then SIGKILL after `stopTimeoutMs`; `stop()` resolves once the process is gone.
 *   The router's namespace is deleted after that, and core's `deleteNamespace` kills whatever still
 *   runs in it.
 * - Monitor: if the proxy dies on its own, it is started again with capped exponential backoff
 *   (Neutron's process monitor respawns haproxy the same way).
 * The child and its pipes are `unref`ed: a proxy never keeps the agent's event loop alive.
 */
export class MetadataProxyProcess implements MetadataProxyHandle {
  private child: SpawnedProcess | undefined;
  private starting: Promise<void> | undefined;
  private stopping = false;
  private adopted = false;
  private respawnTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private readonly script: string;

  constructor(private readonly options: MetadataProxyProcessOptions) {
    this.script = options.script ?? defaultMetadataProxyScript();
  }

  get pid(): number | undefined {
    return this.child?.exitCode === null && this.child.signalCode === null ? this.child.pid : undefined;
  }

  ensureRunning(): Promise<void> {
    if (this.stopping) return Promise.reject(new Error("metadata proxy is stopped"));
    if (this.pid !== undefined && !this.starting) return Promise.resolve();
    this.starting ??= this.start().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.respawnTimer) clearTimeout(this.respawnTimer);
    await this.starting?.catch(() => undefined);
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill("SIGTERM");
    const timeout = this.options.stopTimeoutMs ?? 5_000;
    let timer: NodeJS.Timeout | undefined;
    const killed = await Promise.race([exited.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), timeout)))]);
    if (timer) clearTimeout(timer);
    if (killed) {
      this.options.logger.warn({ pid: child.pid, timeoutMs: timeout }, "metadata proxy ignored SIGTERM; killing it");
      child.kill("SIGKILL");
      await exited;
    }
    this.options.logger.info({ pid: child.pid }, "metadata proxy stopped");
  }

  private async start(): Promise<void> {
    const { namespace, routerId, port, upstream, logger } = this.options;
    if (!this.adopted) {
      await this.killLeftovers();
      this.adopted = true;
    }
    const args = [this.script, "--router-id", routerId, "--port", String(port), "--upstream", formatMetadataUpstream(upstream)];
    // Through core's runner (execa, argument arrays): `ip netns exec NS node SCRIPT ...`.
    const child = this.options.runner.spawn("node", args, { namespace });
    this.child = child;
    child.unref();
    for (const s of [child.stdin, child.stdout, child.stderr]) {
      (s as unknown as { unref?: () => void } | null)?.unref?.();
      // A pipe of a killed proxy may report EPIPE/ECONNRESET; the exit handler deals with the death.
      s?.on("error", () => undefined);
    }
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => {
      for (const line of chunk.split("\n").filter(Boolean)) logger.warn({ proxy: parseLine(line) ?? line }, "metadata proxy reported a problem");
    });
    await new Promise<void>((resolve, reject) => {
      let buffered = "";
      const timer = setTimeout(() => {
        cleanup();
        child.kill("SIGKILL");
        reject(new Error(`metadata proxy of router ${routerId} did not start within ${this.options.startTimeoutMs ?? 10_000} ms`));
      }, this.options.startTimeoutMs ?? 10_000);
      const onData = (chunk: Buffer) => {
        buffered += chunk.toString("utf8");
        for (const line of buffered.split("\n").slice(0, -1)) {
          if ((parseLine(line) as { event?: string } | undefined)?.event === "listening") {
            cleanup();
            resolve();
            return;
          }
        }
        buffered = buffered.slice(buffered.lastIndexOf("\n") + 1);
      };
      const onExit = (code: number | null, signal: string | null) => {
        cleanup();
        reject(new Error(`metadata proxy of router ${routerId} exited while starting (code ${code}, signal ${signal})`));
      };
      const onError = (err: Error) => {
        cleanup();
        reject(err);
      };
      const cleanup = () => {
        clearTimeout(timer);
        child.stdout?.off("data", onData);
        child.off("exit", onExit);
        child.off("error", onError);
      };
      child.stdout?.on("data", onData);
      child.once("exit", onExit);
      child.once("error", onError);
    });
    // Drain stdout from now on so the pipe never fills.
    child.stdout?.resume();
    this.failures = 0;
    logger.info({ pid: child.pid, port, upstream: formatMetadataUpstream(upstream) }, "metadata proxy started");
    child.once("exit", (code, signal) => {
      if (this.stopping || this.child !== child) return;
      const delay = Math.min(MAX_RESPAWN_DELAY_MS, 500 * 2 ** this.failures++);
      logger.warn({ pid: child.pid, code, signal, respawnInMs: delay }, "metadata proxy exited; restarting it");
      this.respawnTimer = setTimeout(() => {
        this.respawnTimer = undefined;
        if (!this.stopping) this.ensureRunning().catch((err: unknown) => logger.error({ err }, "metadata proxy restart failed"));
      }, delay);
      this.respawnTimer.unref();
    });
  }

  /** A proxy an earlier agent left in this namespace (it should have died with it; make sure). */
  private async killLeftovers(): Promise<void> {
    const r = await this.options.runner.exec("ip", ["netns", "pids", this.options.namespace], { reject: false });
    for (const pid of r.stdout.split(/\s+/).filter((p) => /^\d+$/.test(p))) {
      let cmdline = "";
      try {
        cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      } catch {
        continue;
      }
      if (!cmdline.split("\0").includes(this.script)) continue;
      this.options.logger.warn({ pid: Number(pid) }, "killing a metadata proxy left in the router namespace");
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {
        // gone already
      }
    }
  }
}

function parseLine(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch {
    return undefined;
  }
}
