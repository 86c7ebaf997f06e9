import { randomBytes } from "node:crypto";
import {
  Agent,
  applyObserverExtensionPoint,
  baseConfigSchema,
  createLogger,
  createPlugin,
  stateSourceExtensionPoint,
  type AgentConfig,
  type ApplyEvent,
  type StateDocument,
  type StateSink,
} from "@chainwarden/agent";
import {
  deleteNamespace,
  ExecaRunner,
  ForwardingRunner,
  listNamespaces,
  type AuxCommand,
  type Backend,
  type ExecOptions,
  type ExecResult,
  type PreparedCommand,
  type PrepareOptions,
  type RestoreOptions,
  type SaveOptions,
  type Target,
} from "@chainwarden/core";
import { l3NatPlugin } from "@chainwarden/l3-nat";
import { ourCpuMs } from "./netns.js";

export interface L3BenchOptions {
  backend: Backend;
  /** Routers in the bulk add (default 200). */
  routers?: number;
  /** Floating IPs per router in the bulk add (default 10). */
  fipsPerRouter?: number;
  /** Floating IPs of the big router whose one floating IP changes (default 1,000). */
  bigRouterFips?: number;
  /** Further moves of the floating IP after the first, for medians (default 20). */
  moves?: number;
  /** Run a metadata proxy process per router (default false: the rules only, `metadata_proxy: external`). */
  metadataProxy?: boolean;
  /** The agent's `max_parallel_namespaces` (default 4). */
  parallel?: number;
}

/** Time spent in child processes of one kind, summed over all of them (they run in parallel). */
export interface CommandTime {
  count: number;
  ms: number;
}

export interface L3PhaseResult {
  /** Wall clock, state delivered → everything applied (post-apply work included). */
  wallMs: number;
  /** Our own CPU (user + system) in that time: this process and the runner's spawn helper; the commands not included. */
  cpuMs: number;
  /**
   * State delivered → the phase's last restore returned: the rules are in the kernel. For a floating
   * IP move this is the change's latency; the wall time adds the conntrack cleanup that follows it.
   */
  rulesInMs: number;
  restoreLines: number;
  namespace: CommandTime;
  devices: CommandTime;
  restore: CommandTime;
  save: CommandTime;
  other: CommandTime;
}

export interface L3BenchResult {
  backend: Backend;
  routers: number;
  fipsPerRouter: number;
  bigRouterFips: number;
  metadataProxy: boolean;
  /** 200 routers × 10 floating IPs, from an empty host. */
  add: L3PhaseResult;
  /** The router with 1,000 floating IPs, added on its own. */
  addBig: L3PhaseResult;
  /** One floating IP of the big router moved to another fixed IP. */
  /**
   * One floating IP of the big router moved to another fixed IP, the first time (like Neutron, the
   * first update after an add also moves the metadata REDIRECT above the floating IP rules).
   */
  change: L3PhaseResult & { applyMs: number };
  /** The same floating IP moved back and forth `count` more times: medians, and the most lines any move sent. */
  moves: { count: number; maxLines: number; rulesInMs: number; wallMs: number; cpuMs: number; restoreMs: number };
  /** Every router removed. */
  remove: L3PhaseResult;
}

type Kind = "namespace" | "devices" | "restore" | "save" | "other";

/** An ExecaRunner that adds up how long each kind of command took. */
class TimingRunner extends ForwardingRunner<ExecaRunner> {
  readonly times: Record<Kind, CommandTime> = fresh();
  restoreLines = 0;
  /** performance.now() when the latest restore returned. */
  lastRestoreEnd = 0;
  override save(target: Target, options?: SaveOptions): Promise<string> {
    return this.time("save", () => this.inner.save(target, options));
  }
  override restore(target: Target, input: string, options?: RestoreOptions): Promise<void> {
    this.restoreLines += input.split("\n").filter((l) => l !== "" && l !== "COMMIT" && !l.startsWith("*")).length;
    return this.time("restore", () => this.inner.restore(target, input, options)).finally(() => {
      this.lastRestoreEnd = performance.now();
    });
  }
  override exec(command: AuxCommand, args: readonly string[], options?: ExecOptions): Promise<ExecResult> {
    // A router namespace is made in one `ip -force -batch` starting with `netns add`.
    const namespaceWork = command === "ip" && (args[0] === "netns" || (args[0] === "link" && args[2] === "lo") || options?.input?.startsWith("netns add ") === true);
    const kind: Kind = namespaceWork ? "namespace" : command === "ip" ? "devices" : "other";
    return this.time(kind, () => this.inner.exec(command, args, options));
  }
  /** Passed on (ForwardingRunner does not): the router's conntrack cleanup starts it before the apply. */
  prepare(command: AuxCommand, args: readonly string[], options?: PrepareOptions): PreparedCommand {
    const prepared = this.inner.prepare(command, args, options);
    return {
      run: (input) => this.time("other", () => prepared.run(input)),
      cancel: () => prepared.cancel(),
      get waiting() {
        return prepared.waiting;
      },
    };
  }
  reset(): void {
    Object.assign(this.times, fresh());
    this.restoreLines = 0;
  }
  private async time<T>(kind: Kind, fn: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      this.times[kind].count++;
      this.times[kind].ms += performance.now() - t0;
    }
  }
}

function fresh(): Record<Kind, CommandTime> {
  return { namespace: { count: 0, ms: 0 }, devices: { count: 0, ms: 0 }, restore: { count: 0, ms: 0 }, save: { count: 0, ms: 0 }, other: { count: 0, ms: 0 } };
}

/** Address n (0-based) of 100.64.0.0/10: unique floating and gateway addresses for thousands of routers. */
function cgnat(n: number): string {
  const v = (100 << 24) + (64 << 16) + n + 2;
  return [v >>> 24, (v >> 16) & 255, (v >> 8) & 255, v & 255].join(".");
}

function makeRouter(index: number, fips: number, fipBase: number, tag: string): Record<string, unknown> {
  // The index first: device names keep 11 characters of a port id, tap names share the bridge namespace.
  const n = String(index).padStart(5, "0");
  const id = `${n}${tag}-0000-4000-8000-000000000000`;
  return {
    id,
    enable_snat: true,
    gw_port: {
      id: `g${n}${tag}-gw`,
      network_id: "bench-external",
      mac_address: "fa:16:3e:00:00:01",
      fixed_ips: [{ ip_address: cgnat(index), subnet_id: "ext" }],
      subnets: [{ id: "ext", cidr: "100.64.0.0/10", gateway_ip: "100.64.0.1" }],
    },
    _interfaces: [
      {
        id: `i${n}${tag}-int`,
        network_id: `bench-tenant-${index}`,
        mac_address: "fa:16:3e:00:00:02",
        fixed_ips: [{ ip_address: "10.0.0.1", subnet_id: "int" }],
        subnets: [{ id: "int", cidr: "10.0.0.0/16", gateway_ip: "10.0.0.1" }],
      },
    ],
    _floatingips: Array.from({ length: fips }, (_, j) => ({
      id: `fip-${index}-${j}`,
      floating_ip_address: cgnat(100_000 + fipBase + j),
      fixed_ip_address: `10.0.${(j + 2) >> 8}.${(j + 2) & 255}`,
    })),
  };
}

/**
 * The l3 benchmark: the real agent (`Agent`, reconcile loop, `l3NatPlugin` with the linuxbridge
 * driver, bridges in a namespace of the bench's own) on the real kernel. Adds `routers` routers with
 * `fipsPerRouter` floating IPs each, adds a router with `bigRouterFips`, moves one of its floating
 * IPs, removes everything. Every phase reports wall time, our own CPU, and the time spent in child
 * processes by kind (namespace creation, device plumbing, iptables-restore, iptables-save), so it
 * shows what limits an add. Run as root; every namespace it creates is deleted at the end.
 */
export async function benchL3(options: L3BenchOptions): Promise<L3BenchResult> {
  const routers = options.routers ?? 200;
  const fipsPerRouter = options.fipsPerRouter ?? 10;
  const bigRouterFips = options.bigRouterFips ?? 1000;
  const metadataProxy = options.metadataProxy ?? false;
  const inner = new ExecaRunner({ backend: options.backend });
  await inner.version();
  const runner = new TimingRunner(inner);
  const tag = randomBytes(3).toString("hex");
  const prefix = `cwb${tag}-`;
  const fabric = `cwb${tag}fabric`;
  await inner.exec("ip", ["netns", "add", fabric]);

  let sink: StateSink | undefined;
  const events: ApplyEvent[] = [];
  const bench = createPlugin({
    name: "l3-bench",
    version: "0.0.0",
    framework: "^0.1.0",
    register(env) {
      env.addExtension(stateSourceExtensionPoint, {
        name: "bench",
        start: async (s: StateSink) => {
          sink = s;
          s.update({ routers: [] }, "bench");
        },
        stop: async () => {
          sink = undefined;
        },
      });
      env.addExtension(applyObserverExtensionPoint, { onApply: (e: ApplyEvent) => void events.push(e) });
    },
  });
  const config: AgentConfig = {
    ...baseConfigSchema.parse({ wrap_name: "neutron-l3-agent", coalesce_ms: 0, resync_interval: 0, log_level: "silent", max_parallel_namespaces: options.parallel ?? 4 }),
    namespace_prefix: prefix,
    metadata_port: 9697,
    enable_metadata_proxy: true,
  };
  const agent = await Agent.create({
    name: "l3-agent",
    version: "bench",
    config,
    plugins: [
      { plugin: l3NatPlugin, options: { interface_driver: "linuxbridge", bridge_namespace: fabric, metadata_proxy: metadataProxy ? "process" : "external", metadata_upstream: "/run/cw-bench-metadata.sock" } },
      { plugin: bench },
    ],
    runner,
    logger: createLogger({ level: "silent", name: "l3-bench" }),
  });

  const phase = async (document: StateDocument): Promise<L3PhaseResult> => {
    runner.reset();
    events.length = 0;
    const c0 = ourCpuMs(inner);
    const t0 = performance.now();
    sink!.update(document, "bench");
    await agent.idle();
    const wallMs = performance.now() - t0;
    const cpuMs = ourCpuMs(inner) - c0;
    const failed = events.filter((e) => e.error);
    if (failed.length > 0) throw new Error(`l3 bench: ${failed.length} namespace(s) failed, first: ${failed[0]!.error!.message}`);
    return { wallMs, cpuMs, restoreLines: runner.restoreLines, rulesInMs: runner.lastRestoreEnd - t0, ...runner.times };
  };

  try {
    await agent.start();
    const bulk = Array.from({ length: routers }, (_, i) => makeRouter(i, fipsPerRouter, i * fipsPerRouter, tag));
    const add = await phase({ routers: bulk });
    const big = makeRouter(routers, bigRouterFips, routers * fipsPerRouter, tag);
    const addBig = await phase({ routers: [...bulk, big] });
    const movedTo = (fixed: string) => {
      const moved = structuredClone(big) as { _floatingips: { fixed_ip_address: string }[] };
      moved._floatingips[bigRouterFips >> 1]!.fixed_ip_address = fixed;
      return moved;
    };
    const original = (big as { _floatingips: { fixed_ip_address: string }[] })._floatingips[bigRouterFips >> 1]!.fixed_ip_address;
    const change = await phase({ routers: [...bulk, movedTo("10.0.250.250")] });
    const applyMs = events.reduce((n, e) => n + e.durationMs, 0);
    // One move is one sample of a ~30 ms restore whose time varies by ±10 ms: report medians.
    const samples: L3PhaseResult[] = [];
    for (let k = 0; k < (options.moves ?? 20); k++) samples.push(await phase({ routers: [...bulk, movedTo(k % 2 === 0 ? original : "10.0.250.250")] }));
    const median = (pick: (p: L3PhaseResult) => number) => {
      const v = samples.map(pick).sort((a, b) => a - b);
      return v[v.length >> 1] ?? 0;
    };
    const moves = {
      count: samples.length,
      maxLines: Math.max(0, ...samples.map((p) => p.restoreLines)),
      rulesInMs: median((p) => p.rulesInMs),
      wallMs: median((p) => p.wallMs),
      cpuMs: median((p) => p.cpuMs),
      restoreMs: median((p) => p.restore.ms),
    };
    const remove = await phase({ routers: [] });
    return { backend: options.backend, routers, fipsPerRouter, bigRouterFips, metadataProxy, add, addBig, change: { ...change, applyMs }, moves, remove };
  } finally {
    await agent.stop().catch(() => undefined);
    for (const ns of (await listNamespaces(inner)).filter((n) => n.startsWith(prefix) || n === fabric)) await deleteNamespace(inner, ns);
  }
}

/** One markdown table row per phase. */
export function formatL3Bench(r: L3BenchResult): string {
  const f = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(1));
  const t = (c: CommandTime) => `${c.count} / ${f(c.ms)}`;
  const row = (name: string, p: L3PhaseResult, extra = "") =>
    `| ${r.backend} | ${name} | ${f(p.wallMs)} | ${f(p.cpuMs)} | ${t(p.namespace)} | ${t(p.devices)} | ${t(p.restore)} | ${t(p.save)} | ${p.restoreLines}${extra} |\n`;
  return (
    "| backend | phase | wall ms | our CPU ms | namespace cmds / ms | device cmds / ms | restores / ms | saves / ms | restore lines |\n" +
    "|---|---|---|---|---|---|---|---|---|\n" +
    row(`add ${r.routers} routers × ${r.fipsPerRouter} FIPs${r.metadataProxy ? " (+proxies)" : ""}`, r.add) +
    row(`add 1 router × ${r.bigRouterFips} FIPs`, r.addBig) +
    row(`move 1 FIP of ${r.bigRouterFips}, first`, r.change, ` (rules in after ${f(r.change.rulesInMs)} ms)`) +
    `| ${r.backend} | move it ${r.moves.count}× more, medians | ${f(r.moves.wallMs)} | ${f(r.moves.cpuMs)} | 0 / 0.0 | 0 / 0.0 | 1 / ${f(r.moves.restoreMs)} | 0 / 0.0 | ≤ ${r.moves.maxLines} (rules in after ${f(r.moves.rulesInMs)} ms) |\n` +
    row("remove all", r.remove)
  );
}
