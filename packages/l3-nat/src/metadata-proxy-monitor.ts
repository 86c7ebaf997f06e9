import type { AgentMetrics, ReconcileContext } from "@chainwarden/agent";
import { connect } from "node:net";
import { formatMetadataUpstream, type MetadataUpstream } from "./metadata-proxy.js";

/** The agent's pino logger type, without importing pino. */
type Logger = ReconcileContext["logger"];

/** What the monitor needs of one router's proxy (`MetadataProxyProcess`). */
export interface MonitoredMetadataProxy {
  readonly routerId: string;
  readonly upstream: MetadataUpstream;
  /** True while a proxy of this router runs as configured. */
  readonly running: boolean;
  /** Looks at the proxy and brings it back if it died (with the handle's own backoff); never throws. */
  check(): Promise<void>;
}

export interface MetadataProxyMonitorOptions {
  /**
   * Neutron's `check_child_processes_interval`, in milliseconds (default 5,000): how often every
   * proxy, adopted ones included, is looked at, and the upstream probed. 0: no polling (a proxy this
   * process started is still seen dying at once; the others on the router's next reconcile).
   */
  checkIntervalMs?: number;
  /** Serves `chainwarden_l3_metadata_*` with the agent's metrics. */
  metrics?: AgentMetrics;
  /** For what concerns every router at once (the upstream). */
  logger?: Logger;
  /** How long a probe of the upstream may take (default 2,000 ms). */
  probeTimeoutMs?: number;
}

interface UpstreamState {
  up: boolean | undefined;
  error: string | undefined;
  checkedAt: number;
  probing: Promise<boolean> | undefined;
}

/**
 * Neutron's `ProcessMonitor` for the metadata proxies of one agent: every `checkIntervalMs` each
 * registered proxy is checked (alive, ours, in its router's namespace) and brought back when it is
 * not; a proxy is not our child after an agent restart, so this polls rather than waits for exits.
 * It also probes each upstream the proxies forward to (a connect to the metadata agent's socket or
 * the URL's host and port) and says when it goes and comes back: a missing upstream shows as 502s
 * to instances, so it is logged and exported rather than left to be found.
 *
 * Metrics: `chainwarden_l3_metadata_proxy_up{router}`, `chainwarden_l3_metadata_proxy_respawns_total`,
 * `chainwarden_l3_metadata_upstream_up{upstream}`. The timer is unref'd and runs only while some
 * proxy is registered.
 */
export class MetadataProxyMonitor {
  private readonly checkIntervalMs: number;
  private readonly probeTimeoutMs: number;
  private readonly logger: Logger | undefined;
  private readonly proxies = new Set<MonitoredMetadataProxy>();
  private readonly upstreams = new Map<string, UpstreamState>();
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private readonly respawns: { inc(): void } | undefined;

  constructor(options: MetadataProxyMonitorOptions = {}) {
    this.checkIntervalMs = options.checkIntervalMs ?? 5_000;
    this.probeTimeoutMs = options.probeTimeoutMs ?? 2_000;
    this.logger = options.logger;
    const metrics = options.metrics;
    if (metrics) {
      metrics.gauge({
        name: "chainwarden_l3_metadata_proxy_up",
        help: "1 while the router's metadata proxy runs in its namespace as configured",
        labelNames: ["router"],
        collect: (g) => {
          g.reset();
          for (const p of this.proxies) g.set({ router: p.routerId }, p.running ? 1 : 0);
        },
      });
      metrics.gauge({
        name: "chainwarden_l3_metadata_upstream_up",
        help: "1 when the last probe of the metadata upstream (the metadata agent's socket, or the URL) connected",
        labelNames: ["upstream"],
        collect: (g) => {
          g.reset();
          for (const [name, s] of this.upstreams) if (s.up !== undefined) g.set({ upstream: name }, s.up ? 1 : 0);
        },
      });
      this.respawns = metrics.counter({ name: "chainwarden_l3_metadata_proxy_respawns_total", help: "Metadata proxies started again after they died or were found gone" });
    }
  }

  register(proxy: MonitoredMetadataProxy): void {
    this.proxies.add(proxy);
    if (this.timer === undefined && this.checkIntervalMs > 0) {
      this.timer = setInterval(() => void this.tick(), this.checkIntervalMs);
      this.timer.unref();
    }
  }

  unregister(proxy: MonitoredMetadataProxy): void {
    this.proxies.delete(proxy);
    if (this.proxies.size === 0) {
      if (this.timer) clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  /** Counts a respawn (the handle logs it, naming its router). */
  countRespawn(): void {
    this.respawns?.inc();
  }

  /** One round: every proxy checked, every upstream probed. Rounds never overlap. */
  tick(): Promise<void> {
    this.ticking ??= (async () => {
      try {
        await Promise.all([...this.proxies].map((p) => p.check()));
        const inUse = new Map<string, MetadataUpstream>();
        for (const p of this.proxies) inUse.set(formatMetadataUpstream(p.upstream), p.upstream);
        await Promise.all([...inUse.values()].map((u) => this.probe(u, 0)));
      } finally {
        this.ticking = undefined;
      }
    })();
    return this.ticking;
  }

  /**
   * Whether the upstream answers a connect, probing it unless a probe is younger than `maxAgeMs`
   * (one probe serves the proxies of every router started in one pass). Logs when it goes or comes back.
   */
  async probe(upstream: MetadataUpstream, maxAgeMs = 1_000): Promise<boolean> {
    const name = formatMetadataUpstream(upstream);
    let state = this.upstreams.get(name);
    if (!state) this.upstreams.set(name, (state = { up: undefined, error: undefined, checkedAt: 0, probing: undefined }));
    if (state.probing) return state.probing;
    if (state.up !== undefined && Date.now() - state.checkedAt < maxAgeMs) return state.up;
    const s = state;
    s.probing = probeUpstream(upstream, this.probeTimeoutMs).then((error) => {
      const up = error === undefined;
      const routers = [...this.proxies].filter((p) => formatMetadataUpstream(p.upstream) === name).map((p) => p.routerId);
      if (!up && s.up !== false) {
        this.logger?.warn({ upstream: name, error, routers: routers.length, routerIds: routers.slice(0, 20) }, "metadata upstream unreachable; metadata proxies answer 502");
      } else if (up && s.up === false) {
        this.logger?.info({ upstream: name, routers: routers.length }, "metadata upstream reachable again");
      }
      s.up = up;
      s.error = error;
      s.checkedAt = Date.now();
      s.probing = undefined;
      return up;
    });
    return s.probing;
  }

  /** The last probe's error, for a router's log line. */
  upstreamError(upstream: MetadataUpstream): string | undefined {
    return this.upstreams.get(formatMetadataUpstream(upstream))?.error;
  }

  /** Stops polling; the proxies run on (the agent stops). */
  close(): void {
    this.proxies.clear();
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/**
 * Connects to the upstream and hangs up: undefined when that worked, else why not (`ENOENT`: no
 * socket, `ECONNREFUSED`: nobody listens). A URL's host is probed from the agent's network
 * namespace; the proxies connect from their routers' namespaces, so for URLs this is a hint only.
 */
function probeUpstream(upstream: MetadataUpstream, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket =
      upstream.kind === "unix"
        ? connect({ path: upstream.socketPath })
        : connect({ host: upstream.url.hostname.replace(/^\[|\]$/g, ""), port: Number(upstream.url.port || (upstream.url.protocol === "https:" ? 443 : 80)) });
    const done = (error: string | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(error);
    };
    const timer = setTimeout(() => done("ETIMEDOUT"), timeoutMs);
    socket.once("connect", () => done(undefined));
    socket.once("error", (err: NodeJS.ErrnoException) => done(err.code ?? err.message));
  });
}
