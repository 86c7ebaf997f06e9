/**
 * The agents driven over Neutron's RPC (issue 17, item 6): a real RabbitMQ (`RabbitMqLab`), a
 * stand-in for neutron-server's agent RPC (`NeutronStandIn`: our oslo.messaging, answers and casts
 * in the recorded shapes of the real server), and the built agents run as an operator runs them.
 *
 * l3, on `routers` routers × `fips` floating IPs:
 * - full sync: process start → every router's floating IP rules in its namespace's kernel tables.
 *   Each agent says when an iptables apply of a namespace ended (ours: its "namespace applied" log
 *   line; Neutron's: lockutils' "Releasing lock iptables-qrouter-<id>"); the bench then reads that
 *   namespace's nat table and counts the router done at that line's time only when every DNAT rule
 *   of its floating IPs is there.
 * - floating IP change: one floating IP of a router associated with another port (the stand-in's
 *   router dict changes as the server's would), `routers_updated` cast to the agent's queue, then
 *   the namespace's nat table read in a loop until the DNAT rule points at the new address and the
 *   old one is gone: cast → rules in the kernel, p50 and p95.
 * - memory: VmRSS of the agent process and of its process tree after the sync, and its peak.
 * - the same on Debian's `neutron-l3-agent` (see neutron-l3-agent.ts), same stand-in, same machine.
 * - the raw tools: `ip netns add` + `iptables-restore` of the very rules our agent put in each
 *   namespace, namespace after namespace; and `iptables-restore --noflush` of one floating IP's move.
 *
 * l2, on `ports` ports in one security group (the recorded group `web`, itself a remote group):
 * veth pairs named as Neutron's taps in a namespace of the bench's own; our l2 agent asks the
 * stand-in about them (`security_group_info_for_devices`), then a rule is added to the group and
 * `security_groups_rule_updated` fanned out: cast → the new rule in every port's chain.
 *
 * Everything it creates is named with a random tag and removed at the end, also on failure and on
 * SIGINT/SIGTERM: namespaces (`cwb<tag>*`, Neutron's `qrouter-<id>` of this run's routers), processes
 * (each in its own process group, killed with the bench if it dies), the broker, the temporary directory.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { deleteNamespace, ExecaRunner, listNamespaces, type Backend } from "@chainwarden/core";
import { RabbitMqLab } from "@chainwarden/openstack-lab";
import { cpuMsOf, rssOf, type Rss } from "./bench-process.js";
import { NeutronL3Agent } from "./neutron-l3-agent.js";
import { fixedIp, IdSource, RouterFactory, SecurityGroupFactory } from "./neutron-shapes.js";
import { NeutronStandIn } from "./neutron-stand-in.js";
import { OurAgent } from "./our-agent.js";

type Dict = Record<string, any>;

export interface RpcBenchOptions {
  backend: Backend;
  /** Routers of each l3 agent (default 200). */
  routers?: number;
  /** Floating IPs per router (default 10). */
  fips?: number;
  /** Ports of the l2 agent (default 2,000). */
  ports?: number;
  /** Floating IP changes per agent, for p50/p95 (default 20). */
  moves?: number;
  /** Security group rule changes (default 10). */
  ruleChanges?: number;
  /** Run Debian's neutron-l3-agent too (default true when installed). */
  neutron?: boolean;
  /** Neutron's privsep `thread_pool_size` (default 32; 0: oslo's default, the number of CPUs). */
  neutronPrivsepThreads?: number;
  /** How long Neutron's full sync may take (default 15 min; a wedged privsep daemon never finishes, see README). */
  neutronTimeoutMs?: number;
  /** Which parts (default both). */
  parts?: readonly ("l3" | "l2")[];
  /** Progress lines go here (stderr), so stdout stays the report. */
  log?: (line: string) => void;
}

export interface Percentiles {
  count: number;
  p50: number;
  p95: number;
  max: number;
}

export interface L3AgentResult {
  /** Process start → the first RPC it sent, ms. */
  firstRpcMs: number;
  /** Process start → the last router's floating IP rules in its namespace, ms. */
  fullSyncMs: number;
  /** Process start → the first router's, ms. */
  firstRouterMs: number;
  /** Neutron: process start → the last "Finished a router update" (addresses and gratuitous ARPs after the rules). */
  finishedMs?: number;
  /** Routers found done by a sweep (no apply line was seen for them; counted when the sweep found them). */
  swept: number;
  /** CPU of the agent and its helpers (and the commands they ran) from start to the end of the full sync, ms. */
  syncCpuMs: number;
  /** CPU of the agent and its helpers per floating IP change (the window of the changes over their count; background work included), ms. */
  changeCpuMs: number;
  /** routers_updated cast → the moved floating IP's DNAT rule in the kernel, ms. */
  fipChange: Percentiles;
  /** Of which: cast → the agent's sync_routers call for the router arrived at the server, ms. */
  fipFetch: Percentiles;
  /** Ours: the namespace run that put the change in (its log line's `durationMs`: reconcile, restore, after-apply work), ms. */
  fipApply?: Percentiles;
  rssAfterSync: Rss;
  rssAfterChanges: Rss;
  /** Log lines at warn or error level. */
  problems: string[];
}

export interface RpcBenchResult {
  backend: Backend;
  routers: number;
  fips: number;
  ports: number;
  load: { before: string; after: string };
  l3?: {
    ours: L3AgentResult;
    neutron?: L3AgentResult;
    /** Why Neutron's agent was not measured. */
    neutronSkipped?: string;
    neutronPrivsepThreads: number;
    /** ip netns add + iptables-restore / ip6tables-restore of our rules, namespace after namespace, ms. */
    rawFullMs: number;
    /** iptables-restore --noflush of one floating IP's move (3 rules out, 3 in), ms. */
    rawFipChange: Percentiles;
    rulesPerRouter: number;
  };
  l2?: {
    /** Process start → every port's rules in the kernel, ms. */
    fullSyncMs: number;
    firstRpcMs: number;
    /** security_groups_rule_updated cast → the new rule in every port's chain, ms. */
    ruleChange: Percentiles;
    /** Of which: cast → the agent's first security_group_info_for_devices call arrived, ms. */
    ruleFetch: Percentiles;
    /** Cast → its last one (the agent asks for `rpc_resources_processing_step` = 20 devices per call), ms. */
    ruleFetchLast: Percentiles;
    /** Of which: the namespace run that put the rule in (its log line's `durationMs`), ms. */
    ruleApply: Percentiles;
    /** Restore lines that run sent (median). */
    ruleLines: number;
    /** CPU of the agent and its helpers (and their commands), start → full sync, ms. */
    syncCpuMs: number;
    /** The same per rule change (the window of the changes over their count), ms. */
    changeCpuMs: number;
    rssAfterSync: Rss;
    rssAfterChanges: Rss;
    /** iptables-restore of our whole ruleset into a fresh namespace (both families), ms. */
    rawFullMs: number;
    /** iptables-restore --noflush of the same per-port rule lines the change added, ms. */
    rawRuleChange: Percentiles;
    kernelRules: number;
    problems: string[];
  };
  standInCalls: Record<string, number>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function percentiles(values: readonly number[]): Percentiles {
  const v = [...values].sort((a, b) => a - b);
  const at = (q: number) => v[Math.min(v.length - 1, Math.max(0, Math.ceil(q * v.length) - 1))] ?? NaN;
  return { count: v.length, p50: at(0.5), p95: at(0.95), max: v[v.length - 1] ?? NaN };
}

function countRules(save: string): number {
  return save.split("\n").filter((l) => l.startsWith("-A ")).length;
}

/** Polls `probe` every `everyMs` until it is true; throws after `timeoutMs` (or when `alive` throws). */
async function until(probe: () => Promise<boolean>, what: string, timeoutMs: number, alive: () => void, everyMs = 0): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    alive();
    if (await probe()) return;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    if (everyMs > 0) await sleep(everyMs);
  }
}

/** The DNAT rule of a floating IP, as both agents write it (Neutron's `floating_forward_rules`). */
function dnatRule(fip: string, fixed: string): string {
  return `-A neutron-l3-agent-PREROUTING -d ${fip}/32 -j DNAT --to-destination ${fixed}`;
}

interface Expectation {
  check: () => Promise<boolean>;
  resolve: (time: number) => void;
}

/**
 * When rules reached the kernel, without loading the host with polls: each agent says when an
 * iptables apply in a namespace ended (ours: its "namespace applied" log line; Neutron's: lockutils'
 * "Releasing lock iptables-qrouter-<id>", both written right after iptables-restore returned); the
 * bench then reads that namespace's tables (one read at a time) and, when what it expects is there,
 * takes that line's time as the moment the rules were in. A slow poll (`fallbackMs`) is the safety net
 * for a line that never comes; what it finds counts at the time it found it.
 */
class KernelWatch {
  private readonly expected = new Map<string, Expectation>();
  private queue: Promise<void> = Promise.resolve();

  /** Resolves with the time (epoch ms) `check` first held after an apply in `namespace`. */
  expect(namespace: string, check: () => Promise<boolean>, fallbackMs: number): Promise<number> {
    return new Promise<number>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (time: number) => {
        clearTimeout(timer);
        this.expected.delete(namespace);
        resolve(time);
      };
      this.expected.set(namespace, { check, resolve: done });
      if (fallbackMs > 0) {
        const poll = () => {
          timer = setTimeout(() => {
            this.queue = this.queue.then(async () => {
              if (this.expected.get(namespace)?.resolve !== done) return;
              if (await check().catch(() => false)) done(Date.now());
              else poll();
            });
          }, fallbackMs);
        };
        poll();
      }
    });
  }

  applied(namespace: string, time: number): void {
    const e = this.expected.get(namespace);
    if (!e) return;
    this.queue = this.queue.then(async () => {
      if (this.expected.get(namespace) !== e) return;
      if (await e.check().catch(() => false)) e.resolve(time);
    });
  }

  /** Checks every outstanding expectation now (one at a time); those that hold count at this moment. Returns how many did. */
  async sweep(): Promise<number> {
    let found = 0;
    for (const e of [...this.expected.values()]) {
      await (this.queue = this.queue.then(async () => {
        if (![...this.expected.values()].includes(e)) return;
        if (await e.check().catch(() => false)) {
          e.resolve(Date.now());
          found++;
        }
      }));
    }
    return found;
  }

  cancel(): void {
    this.expected.clear();
  }
}

/** Resolves `promise`, or throws after `timeoutMs` or as soon as `alive` throws (checked each second). */
async function within<T>(promise: Promise<T>, what: string, timeoutMs: number, alive: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = Date.now() + timeoutMs;
  const watchdog = new Promise<never>((_, reject) => {
    const tick = () => {
      try {
        alive();
        if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
        timer = setTimeout(tick, 1000);
      } catch (err) {
        reject(err as Error);
      }
    };
    tick();
  });
  try {
    return await Promise.race([promise, watchdog]);
  } finally {
    clearTimeout(timer);
  }
}

export async function benchRpc(options: RpcBenchOptions): Promise<RpcBenchResult> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const routerCount = options.routers ?? 200;
  const fipCount = options.fips ?? 10;
  const portCount = options.ports ?? 2000;
  const moves = options.moves ?? 20;
  const ruleChanges = options.ruleChanges ?? 10;
  const parts = options.parts ?? ["l3", "l2"];
  const privsepThreads = options.neutronPrivsepThreads ?? 32;
  const runner = new ExecaRunner({ backend: options.backend });
  await runner.version();
  const tag = randomBytes(3).toString("hex");
  const ns = (suffix: string) => `cwb${tag}${suffix}`;
  const dir = mkdtempSync(join(tmpdir(), "cw-rpc-bench-"));
  const neutronRouterIds: string[] = [];
  const stops: (() => Promise<void>)[] = [];
  let cleaned: Promise<void> | undefined;
  const cleanup = () =>
    (cleaned ??= (async () => {
      for (const stop of stops.splice(0).reverse()) await stop().catch((e: unknown) => log(`cleanup: ${String(e)}`));
      const mine = (await listNamespaces(runner)).filter((n) => n.startsWith(ns("")) || neutronRouterIds.some((id) => n === `qrouter-${id}`));
      for (const n of mine) await deleteNamespace(runner, n).catch((e: unknown) => log(`cleanup: ${n}: ${String(e)}`));
      rmSync(dir, { recursive: true, force: true });
    })());
  const onSignal = (signal: NodeJS.Signals) => {
    log(`${signal}: cleaning up`);
    void cleanup().finally(() => process.exit(signal === "SIGINT" ? 130 : 143));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  const addNamespace = async (name: string) => {
    await runner.exec("ip", ["netns", "add", name]);
    await runner.exec("ip", ["link", "set", "lo", "up"], { namespace: name });
  };
  const hostNat = async (namespace: string) => new Set((await runner.save({ namespace, family: 4 }, { table: "nat" })).split("\n"));
  const load = () => loadavg().map((l) => l.toFixed(2)).join(" ");
  // CW_BENCH_LOG_DIR: every agent's whole output is also written there (the directory is the caller's).
  const logFile = (name: string): { logFile?: string } => (process.env.CW_BENCH_LOG_DIR ? { logFile: join(process.env.CW_BENCH_LOG_DIR, `${tag}-${name}.log`) } : {});
  const loadBefore = load();

  try {
    log(`rpc bench ${tag}: starting RabbitMQ`);
    const broker = await RabbitMqLab.start();
    stops.push(() => broker.stop());
    const standIn = await NeutronStandIn.start(broker.transportUrl, `bench-stand-in-${tag}`);
    stops.push(() => standIn.close());
    const ids = new IdSource();
    const factory = new RouterFactory(ids);
    const result: RpcBenchResult = { backend: options.backend, routers: routerCount, fips: fipCount, ports: portCount, load: { before: loadBefore, after: "" }, standInCalls: {} };

    interface RunningAgent {
      startedAt: number;
      pid: number;
      alive: () => void;
      problems: () => string[];
      /** Neutron: when each router's processing finished. */
      finished?: () => ReadonlyMap<string, number>;
      /** Ours: the last namespace run's durationMs, by namespace. */
      applyMs?: ReadonlyMap<string, number>;
      /** Processes of the agent outside its process tree. */
      helpers?: () => number[];
      /** The nat table of one of its namespaces (default: the host's /run/netns/<name>). */
      nat?: (namespace: string) => Promise<Set<string>>;
    }

    /** Full sync, floating IP changes and memory of one l3 agent on `routers`. */
    const measureL3 = async (label: string, host: string, routers: Dict[], namespaceOf: (r: Dict) => string, start: (watch: KernelWatch) => Promise<RunningAgent>, timeoutMs: number): Promise<L3AgentResult> => {
      const watch = new KernelWatch();
      // Set once the agent runs; the checks run only after it reported an apply.
      let nat = hostNat;
      const everyDnat = (router: Dict) => async () => {
        const lines = await nat(namespaceOf(router));
        return (router._floatingips as Dict[]).every((f) => lines.has(dnatRule(f.floating_ip_address, f.fixed_ip_address)));
      };
      // Expected before the agent starts, so that no apply goes unseen.
      const done = routers.map((r) => watch.expect(namespaceOf(r), everyDnat(r), 0));
      const agent = await start(watch);
      if (agent.nat) nat = agent.nat;
      log(`${label}: waiting for ${routers.length} routers' rules`);
      let count = 0;
      let swept = 0;
      let lastCount = 0;
      let stillSince = Date.now();
      const left = new Set(routers);
      routers.forEach((r, i) => void done[i]!.then(() => (count++, left.delete(r))));
      // A router whose apply line was missed (or that needed no apply) would hold the sync forever:
      // after a minute without progress, every router left is checked once, and counted then.
      const progress = setInterval(() => {
        log(`${label}: ${count} of ${routers.length} routers' rules in the kernel after ${((Date.now() - agent.startedAt) / 1000).toFixed(0)} s`);
        if (count !== lastCount) {
          lastCount = count;
          stillSince = Date.now();
        } else if (Date.now() - stillSince >= 60_000 && count < routers.length) {
          stillSince = Date.now();
          void watch.sweep().then((n) => {
            swept += n;
            if (n > 0) log(`${label}: a sweep found ${n} more router(s) with their rules in the kernel`);
          });
        }
      }, 30_000);
      let times: number[];
      try {
        times = await within(Promise.all(done), `${label}: every router's rules`, timeoutMs, agent.alive).catch(async (err: Error) => {
          const missing: string[] = [];
          for (const r of [...left].slice(0, 5)) {
            const namespace = namespaceOf(r);
            const lines = await nat(namespace).catch(() => undefined);
            const present = lines ? (r._floatingips as Dict[]).filter((f) => lines.has(dnatRule(f.floating_ip_address, f.fixed_ip_address))).length : -1;
            missing.push(`${namespace}: ${present < 0 ? "no such namespace" : `${present} of ${(r._floatingips as Dict[]).length} DNAT rules`}${agent.finished?.().has(r.id) ? ", finished" : ""}`);
          }
          const problems = agent.problems();
          throw new Error(
            `${err.message}; ${left.size} router(s) left, e.g. ${missing.join("; ")}${problems.length ? `; ${problems.length} error line(s), first: ${problems[0]}` : ""}`,
          );
        });
      } finally {
        clearInterval(progress);
        watch.cancel();
      }
      const syncCpuMs = cpuMsOf(agent.pid, agent.helpers?.());
      const fullSyncMs = Math.max(...times) - agent.startedAt;
      const firstRouterMs = Math.min(...times) - agent.startedAt;
      const firstRpc = standIn.firstCall.get(host);
      let finishedMs: number | undefined;
      if (agent.finished) {
        // Neutron adds the floating IP addresses (and sends their gratuitous ARPs) after the rules.
        await until(async () => agent.finished!().size >= routers.length, `${label}: every router finished`, timeoutMs, agent.alive, 250);
        finishedMs = Math.max(...agent.finished().values()) - agent.startedAt;
      }
      log(`${label}: full sync ${(fullSyncMs / 1000).toFixed(1)} s; settling`);
      await sleep(3000);
      const rssAfterSync = rssOf(agent.pid, agent.helpers?.());
      const latencies: number[] = [];
      const fetches: number[] = [];
      const applies: number[] = [];
      const cpuBefore = cpuMsOf(agent.pid, agent.helpers?.());
      for (let k = 0; k < moves; k++) {
        // A floating IP associated with another port: the router dict changes as the server's would.
        const router = routers[(k * 37) % routers.length]!;
        const j = k % fipCount;
        const fip = (router._floatingips as Dict[])[j]!;
        const from = fip.fixed_ip_address as string;
        const to = from === fixedIp(j, false) ? fixedIp(j, true) : fixedIp(j, false);
        factory.associate(fip, (router._interfaces as Dict[])[0]!.network_id, to, k, j);
        router.revision_number = (router.revision_number as number) + 1;
        const want = dnatRule(fip.floating_ip_address, to);
        const old = dnatRule(fip.floating_ip_address, from);
        const namespace = namespaceOf(router);
        const moved = watch.expect(
          namespace,
          async () => {
            const lines = await nat(namespace);
            return lines.has(want) && !lines.has(old);
          },
          1000,
        );
        const fetched = standIn.nextCall("sync_routers");
        const castAt = Date.now();
        await standIn.routersUpdated(host, [router.id]);
        latencies.push((await within(moved, `${label}: floating IP ${fip.floating_ip_address} → ${to}`, 120_000, agent.alive)) - castAt);
        fetches.push((await fetched) - castAt);
        if (agent.applyMs) applies.push(agent.applyMs.get(namespace) ?? NaN);
        await sleep(300);
      }
      const changeCpuMs = (cpuMsOf(agent.pid, agent.helpers?.()) - cpuBefore) / moves;
      log(`${label}: ${moves} floating IP changes, p50 ${percentiles(latencies).p50.toFixed(0)} ms`);
      await sleep(1000);
      return {
        swept,
        syncCpuMs,
        changeCpuMs,
        firstRpcMs: firstRpc === undefined ? NaN : firstRpc - agent.startedAt,
        fullSyncMs,
        firstRouterMs,
        ...(finishedMs !== undefined ? { finishedMs } : {}),
        fipChange: percentiles(latencies),
        fipFetch: percentiles(fetches),
        ...(agent.applyMs ? { fipApply: percentiles(applies) } : {}),
        rssAfterSync,
        rssAfterChanges: rssOf(agent.pid, agent.helpers?.()),
        problems: agent.problems(),
      };
    };

    if (parts.includes("l3")) {
      // --- ours ---
      const host = `cw-bench-${tag}-ours`;
      const prefix = ns("-");
      const bridges = ns("br");
      await addNamespace(bridges);
      const routers = Array.from({ length: routerCount }, (_, i) => factory.make(i, { host, fips: fipCount }));
      standIn.addRouters(host, routers);
      const config = join(dir, "l3-agent.yaml");
      writeFileSync(
        config,
        [
          "# written by the chainwarden RPC bench",
          `state_path: ${JSON.stringify(join(dir, "l3-state"))}`,
          "enable_metadata_proxy: false",
          "plugin_options:",
          "  l3-nat:",
          "    interface_driver: linuxbridge",
          `    bridge_namespace: ${bridges}`,
          "",
        ].join("\n"),
      );
      const ours: { agent?: OurAgent } = {};
      const oursResult = await measureL3(
        "our l3 agent",
        host,
        routers,
        (r) => `${prefix}${r.id}`,
        async (watch) => {
          log(`our l3 agent: ${routerCount} routers × ${fipCount} floating IPs`);
          const applyMs = new Map<string, number>();
          const agent = new OurAgent({
            app: "l3-agent",
            // Debug logs: their "rules applied" line is the end of each restore.
            args: ["--config", config, "--transport-url", broker.transportUrl, "--host", host, "--namespace-prefix", prefix, "--backend", options.backend, "--log-level", "debug"],
            onApplied: ({ kind, namespace, time, durationMs }) => {
              if (kind === "namespace") applyMs.set(namespace, durationMs);
              watch.applied(namespace, time);
            },
            ...logFile("l3-agent"),
          });
          ours.agent = agent;
          stops.push(() => agent.stop());
          return { startedAt: agent.startedAt, pid: agent.pid, alive: () => agent.assertRunning(), problems: () => [...agent.problems], applyMs };
        },
        15 * 60_000,
      );
      await ours.agent?.stop();

      // The raw tools on the same rules: each namespace's tables restored into a fresh namespace.
      log("raw tools: our rules, namespace after namespace");
      const saved: { v4: string; v6: string }[] = [];
      for (const r of routers) {
        const namespace = `${prefix}${r.id}`;
        saved.push({ v4: await runner.save({ namespace, family: 4 }), v6: await runner.save({ namespace, family: 6 }) });
      }
      const rulesPerRouter = countRules(saved[0]!.v4) + countRules(saved[0]!.v6);
      // Ours go first, so that the kernel holds as many namespaces as during our sync.
      for (const r of routers) await deleteNamespace(runner, `${prefix}${r.id}`);
      const t0 = performance.now();
      for (let i = 0; i < saved.length; i++) {
        const raw = ns(`r${i}`);
        await runner.exec("ip", ["netns", "add", raw]);
        await runner.restore({ namespace: raw, family: 4 }, saved[i]!.v4);
        await runner.restore({ namespace: raw, family: 6 }, saved[i]!.v6);
      }
      const rawFullMs = performance.now() - t0;
      // One floating IP moved back and forth by hand in the first copy: its DNAT (PREROUTING,
      // OUTPUT) and SNAT rules out, the new ones in, one iptables-restore --noflush each.
      const fip0 = (routers[0]!._floatingips as Dict[])[0]!;
      const address = fip0.floating_ip_address as string;
      let at = fip0.fixed_ip_address as string;
      let lines = saved[0]!.v4
        .split("\n")
        .filter((l) => l.startsWith("-A ") && (l.endsWith(`-d ${address}/32 -j DNAT --to-destination ${at}`) || l.includes(`-s ${at}/32 -j SNAT --to-source ${address}`)));
      if (lines.length !== 3) throw new Error(`raw floating IP move: expected 3 rules of ${address} in our namespace, found ${lines.length}`);
      const rawMoves: number[] = [];
      for (let k = 0; k < moves; k++) {
        const to = at === fixedIp(0, false) ? fixedIp(0, true) : fixedIp(0, false);
        const next = lines.map((l) => l.replaceAll(at, to));
        const input = ["*nat", ...lines.map((l) => l.replace(/^-A /, "-D ")), ...next, "COMMIT", ""].join("\n");
        const r0 = performance.now();
        await runner.restore({ namespace: ns("r0"), family: 4 }, input);
        rawMoves.push(performance.now() - r0);
        lines = next;
        at = to;
      }
      for (let i = 0; i < saved.length; i++) await deleteNamespace(runner, ns(`r${i}`));
      await deleteNamespace(runner, bridges);

      // --- Neutron's ---
      let neutron: L3AgentResult | undefined;
      let neutronSkipped: string | undefined;
      const missing = ["/usr/bin/neutron-l3-agent", "/usr/bin/privsep-helper", "/usr/bin/nsenter", "/usr/bin/arping"].filter((path) => !existsSync(path));
      if (options.neutron === false) neutronSkipped = "not asked for (--neutron=off)";
      else if (missing.length > 0) neutronSkipped = `not installed: ${missing.join(", ")}`;
      if (neutronSkipped === undefined) {
        const nHost = `cw-bench-${tag}-neutron`;
        const nRouters = Array.from({ length: routerCount }, (_, i) => factory.make(i, { host: nHost, fips: fipCount }));
        neutronRouterIds.push(...nRouters.map((r) => r.id as string));
        standIn.addRouters(nHost, nRouters);
        const home = ns("nh");
        await addNamespace(home);
        const nDir = join(dir, "neutron");
        mkdirSync(nDir);
        const theirs: { agent?: NeutronL3Agent } = {};
        try {
          neutron = await measureL3(
            "Neutron's l3 agent",
            nHost,
            nRouters,
            (r) => `qrouter-${r.id}`,
            async (watch) => {
              log(`Neutron's l3 agent: ${routerCount} routers × ${fipCount} floating IPs (privsep thread_pool_size ${privsepThreads || "default"})`);
              const agent = new NeutronL3Agent({
                host: nHost,
                backend: options.backend,
                brokerPort: broker.port,
                dir: nDir,
                namespace: home,
                reportInterval: 30,
                ...(privsepThreads > 0 ? { privsepThreads } : {}),
                onApplied: (namespace, time) => watch.applied(namespace, time),
                ...logFile("neutron-l3-agent"),
              });
              theirs.agent = agent;
              stops.push(() => agent.stop());
              await agent.start();
              return {
                startedAt: agent.startedAt,
                pid: agent.pid,
                alive: () => agent.assertRunning(),
                problems: () => [...agent.errors],
                finished: () => agent.finished,
                helpers: () => agent.privsepPids(),
                nat: async (namespace) => new Set((await agent.nat(namespace)).split("\n")),
              };
            },
            options.neutronTimeoutMs ?? 15 * 60_000,
          );
        } catch (err) {
          const tail = theirs.agent?.describe().split("\n").slice(-15).join("\n");
          neutronSkipped = `failed: ${(err as Error).message}${tail ? `; its last output:\n${tail}` : ""}`;
          log(`Neutron's l3 agent ${neutronSkipped}`);
        }
        // Its namespaces are in its own /run/netns: stopping it unmounts them.
        await theirs.agent?.stop();
        await deleteNamespace(runner, home);
      }
      result.l3 = {
        ours: oursResult,
        ...(neutron ? { neutron } : {}),
        ...(neutronSkipped ? { neutronSkipped } : {}),
        neutronPrivsepThreads: privsepThreads,
        rawFullMs,
        rawFipChange: percentiles(rawMoves),
        rulesPerRouter,
      };
    }

    if (parts.includes("l2")) {
      const host = `cw-bench-${tag}-l2`;
      const home = ns("l2");
      await addNamespace(home);
      const group = new SecurityGroupFactory(ids, host, portCount);
      standIn.serveSecurityGroups(group);
      const taps = [...group.ports.keys()];
      log(`our l2 agent: ${portCount} ports (veth pairs named as Neutron's taps) in one security group`);
      // This kernel may have no dummy devices; veth pairs are what the l2 devices bench uses too.
      const veths = taps.map((tap, i) => `link add ${tap} type veth peer name p${i.toString(16).padStart(8, "0")}\n`).join("");
      await runner.exec("ip", ["-batch", "-"], { namespace: home, input: veths });
      // A port's ingress chain: `i` and the tap name after `tap`, cut to Neutron's 11 characters of a wrapped chain name.
      const ingress = (tap: string) => `neutron-linuxbri-${`i${tap.slice(3)}`.slice(0, 11)}`;
      const filter = async () => (await runner.save({ namespace: home, family: 4 }, { table: "filter" })).split("\n");
      const watch = new KernelWatch();
      let lastApplyMs = NaN;
      let lastApplyLines = NaN;
      const synced = watch.expect(home, async () => (await filter()).filter((l) => l.startsWith(":neutron-linuxbri-i")).length >= portCount, 5000);
      const agent = new OurAgent({
        app: "l2-agent",
        args: ["--transport-url", broker.transportUrl, "--host", host, "--netns", home, "--backend", options.backend, "--log-level", "debug"],
        onApplied: ({ kind, namespace, time, durationMs, lines }) => {
          if (namespace !== home) return;
          if (kind === "namespace") {
            lastApplyMs = durationMs;
            lastApplyLines = lines;
          }
          watch.applied(namespace, time);
        },
        ...logFile("l2-agent"),
      });
      stops.push(() => agent.stop());
      const alive = () => agent.assertRunning();
      const fullSyncMs = (await within(synced, "every port's chains", 15 * 60_000, alive)) - agent.startedAt;
      const firstRpc = standIn.firstCall.get("security_group_info_for_devices");
      log(`our l2 agent: full sync ${(fullSyncMs / 1000).toFixed(1)} s; settling`);
      await sleep(3000);
      const rssAfterSync = rssOf(agent.pid);
      const syncCpuMs = cpuMsOf(agent.pid);
      const [first, last] = [ingress(taps[0]!), ingress(taps[taps.length - 1]!)];
      const chainHas = async (chain: string, port: number) => (await runner.exec("iptables", ["-w", "-S", chain], { namespace: home, reject: false })).stdout.includes(`--dport ${port} `);
      const latencies: number[] = [];
      const fetches: number[] = [];
      const applies: number[] = [];
      const sent: number[] = [];
      const fetchesLast: number[] = [];
      const cpuBefore = cpuMsOf(agent.pid);
      for (let k = 0; k < ruleChanges; k++) {
        const port = 9000 + k;
        group.addRule(port);
        // One iptables-restore carries a namespace's change: the first and the last port's chains tell.
        const added = watch.expect(home, async () => (await chainHas(first, port)) && (await chainHas(last, port)), 1000);
        const fetched = standIn.nextCall("security_group_info_for_devices");
        const castAt = Date.now();
        await standIn.securityGroupsRuleUpdated([group.groupId]);
        latencies.push((await within(added, `rule tcp ${port} in the ports' chains`, 120_000, alive).catch((err: Error) => Promise.reject(new Error(`${err.message}; the agent's last output:\n${agent.describe()}`)))) - castAt);
        const withRule = (await filter()).filter((l) => l.startsWith("-A neutron-linuxbri-i") && l.includes(`--dport ${port} `)).length;
        if (withRule !== portCount) throw new Error(`rule tcp ${port}: in ${withRule} of ${portCount} ports' chains`);
        fetches.push((await fetched) - castAt);
        applies.push(lastApplyMs);
        sent.push(lastApplyLines);
        fetchesLast.push(standIn.lastCall.get("security_group_info_for_devices")! - castAt);
        log(`our l2 agent: rule ${k + 1}: ${(latencies[k]! / 1000).toFixed(2)} s, ${lastApplyLines} restore lines, RSS ${rssOf(agent.pid).rssMiB.toFixed(0)} MiB`);
        await sleep(300);
      }
      const changeCpuMs = (cpuMsOf(agent.pid) - cpuBefore) / ruleChanges;
      log(`our l2 agent: ${ruleChanges} rule changes, p50 ${percentiles(latencies).p50.toFixed(0)} ms`);
      await sleep(1000);
      const rssAfterChanges = rssOf(agent.pid);
      const problems = [...agent.problems];
      await agent.stop();

      // The raw tools: the whole ruleset into a fresh namespace, then the per-port lines of a rule.
      const v4 = await runner.save({ namespace: home, family: 4 });
      const v6 = await runner.save({ namespace: home, family: 6 });
      const ipsets = (await runner.exec("ipset", ["save"], { namespace: home })).stdout;
      const twin = ns("l2raw");
      await addNamespace(twin);
      await runner.exec("ipset", ["restore"], { namespace: twin, input: ipsets });
      const t0 = performance.now();
      await runner.restore({ namespace: twin, family: 4 }, v4);
      await runner.restore({ namespace: twin, family: 6 }, v6);
      const rawFullMs = performance.now() - t0;
      const lastPort = 9000 + ruleChanges - 1;
      const ruleLines = v4.split("\n").filter((l) => l.startsWith("-A neutron-linuxbri-i") && l.includes(`--dport ${lastPort} `));
      const rawChanges: number[] = [];
      for (let k = 0; k < ruleChanges; k++) {
        const input = ["*filter", ...ruleLines.map((l) => l.replace(`--dport ${lastPort} `, `--dport ${10000 + k} `)), "COMMIT", ""].join("\n");
        const r0 = performance.now();
        await runner.restore({ namespace: twin, family: 4 }, input);
        rawChanges.push(performance.now() - r0);
      }
      await deleteNamespace(runner, twin);
      await deleteNamespace(runner, home);
      result.l2 = {
        fullSyncMs,
        firstRpcMs: firstRpc === undefined ? NaN : firstRpc - agent.startedAt,
        ruleChange: percentiles(latencies),
        ruleFetch: percentiles(fetches),
        ruleFetchLast: percentiles(fetchesLast),
        ruleApply: percentiles(applies),
        ruleLines: percentiles(sent).p50,
        syncCpuMs,
        changeCpuMs,
        rssAfterSync,
        rssAfterChanges,
        rawFullMs,
        rawRuleChange: percentiles(rawChanges),
        kernelRules: countRules(v4) + countRules(v6),
        problems,
      };
    }
    result.standInCalls = Object.fromEntries(standIn.calls);
    result.load.after = load();
    return result;
  } finally {
    await cleanup();
    process.removeListener("SIGINT", onSignal);
    process.removeListener("SIGTERM", onSignal);
  }
}

/** The report: markdown tables, ours next to Neutron's agent and the raw tools, with the issue's targets. */
export function formatRpcBench(r: RpcBenchResult): string {
  const s = (ms: number | undefined) => (ms === undefined || Number.isNaN(ms) ? "—" : `${(ms / 1000).toFixed(1)} s`);
  const m = (ms: number) => (ms >= 100 ? ms.toFixed(0) : ms.toFixed(1));
  const p = (x: Percentiles) => `${m(x.p50)} / ${m(x.p95)} ms (n = ${x.count}, max ${m(x.max)})`;
  const mem = (x: Rss) =>
    `${x.rssMiB.toFixed(0)} MiB (peak ${x.peakMiB.toFixed(0)}); with its ${x.processes - 1} helper process${x.processes === 2 ? "" : "es"}: RSS ${x.treeMiB.toFixed(0)}, PSS ${x.treePssMiB.toFixed(0)} MiB`;
  const out: string[] = [
    `Backend ${r.backend}; load average (1, 5, 15 min) before ${r.load.before}, after ${r.load.after}.`,
    "neutron-server is played by a stand-in on our oslo.messaging (same broker, the real server's recorded payload shapes, casts and versions): building these resources through the real server's API and database takes many minutes per run.",
    "",
  ];
  if (r.l3) {
    const { ours, neutron } = r.l3;
    const ratio = neutron ? ` (${(neutron.fullSyncMs / ours.fullSyncMs).toFixed(1)}× faster)` : "";
    out.push(
      `### l3: ${r.routers} routers × ${r.fips} floating IPs (${r.l3.rulesPerRouter} rules per router namespace)`,
      "",
      "| | ours (l3-agent) | Neutron's neutron-l3-agent | raw tools | target |",
      "|---|---|---|---|---|",
      `| process start → first RPC | ${s(ours.firstRpcMs)} | ${s(neutron?.firstRpcMs)} | | |`,
      `| full sync: start → first router's rules in the kernel | ${s(ours.firstRouterMs)} | ${s(neutron?.firstRouterMs)} | | |`,
      `| full sync: start → last router's rules in the kernel | ${s(ours.fullSyncMs)}${ratio} | ${s(neutron?.fullSyncMs)} | ${s(r.l3.rawFullMs)} (ip netns add + restore of the same rules, one namespace after another) | ≤ ¼ of Neutron's |`,
      `| full sync: start → last router finished (addresses, gratuitous ARPs) | | ${s(neutron?.finishedMs)} | | |`,
      `| full sync: CPU of the agent, its helpers and their commands | ${s(ours.syncCpuMs)} | ${s(neutron?.syncCpuMs)} | | |`,
      `| floating IP change: cast → DNAT rule in the kernel, p50 / p95 | ${p(ours.fipChange)} | ${neutron ? p(neutron.fipChange) : "—"} | ${p(r.l3.rawFipChange)} (iptables-restore --noflush of the move) | p50 < 100 ms |`,
      `| … of which cast → its sync_routers call at the server, p50 / p95 | ${p(ours.fipFetch)} | ${neutron ? p(neutron.fipFetch) : "—"} | | |`,
      ...(ours.fipApply ? [`| … the namespace run that put it in (its log's durationMs, post-apply work included), p50 / p95 | ${p(ours.fipApply)} | | | |`] : []),
      `| CPU per floating IP change (agent, helpers, commands; background work included) | ${m(ours.changeCpuMs)} ms | ${neutron ? `${m(neutron.changeCpuMs)} ms` : "—"} | | |`,
      `| RSS after the sync | ${mem(ours.rssAfterSync)} | ${neutron ? mem(neutron.rssAfterSync) : "—"} | | < 200 MB |`,
      `| RSS after the changes | ${mem(ours.rssAfterChanges)} | ${neutron ? mem(neutron.rssAfterChanges) : "—"} | | |`,
      "",
    );
    if (neutron) out.push(`Neutron's agent: privsep thread_pool_size ${r.l3.neutronPrivsepThreads || "default (CPUs)"}; its log's ERRORs: ${neutron.problems.length}${neutron.problems.length ? `, first: ${neutron.problems[0]}` : ""}.`);
    for (const [who, x] of [["ours", ours], ["Neutron's", neutron]] as const) if (x?.swept) out.push(`${who}: ${x.swept} router(s) were found done by a sweep (no apply line seen), counted when found.`);
    if (r.l3.neutronSkipped) out.push(`Neutron's agent not measured: ${r.l3.neutronSkipped}`);
    if (ours.problems.length) out.push(`Our l3 agent logged ${ours.problems.length} warning(s) or error(s); first: ${ours.problems[0]}`);
    out.push("");
  }
  if (r.l2) {
    const l2 = r.l2;
    out.push(
      `### l2: ${r.ports} ports in one security group (${l2.kernelRules} rules in the kernel)`,
      "",
      "| | ours (l2-agent) | raw tools | target |",
      "|---|---|---|---|",
      `| process start → first RPC | ${s(l2.firstRpcMs)} | | |`,
      `| full sync: start → every port's rules in the kernel | ${s(l2.fullSyncMs)} | ${s(l2.rawFullMs)} (iptables-restore of the whole ruleset) | |`,
      `| rule added: cast → in every port's chain, p50 / p95 | ${p(l2.ruleChange)} | ${p(l2.rawRuleChange)} (iptables-restore --noflush of the ${r.ports} rule lines) | < 1 s |`,
      `| … of which cast → its first security_group_info_for_devices call, p50 / p95 | ${p(l2.ruleFetch)} | | |`,
      `| … cast → its last security_group_info_for_devices call (20 devices each), p50 / p95 | ${p(l2.ruleFetchLast)} | | |`,
      `| … the namespace run that put it in (its log's durationMs; ${l2.ruleLines} restore lines), p50 / p95 | ${p(l2.ruleApply)} | | |`,
      `| CPU: full sync / per rule change (agent, helpers, commands) | ${s(l2.syncCpuMs)} / ${m(l2.changeCpuMs)} ms | | |`,
      `| RSS after the sync | ${mem(l2.rssAfterSync)} | | |`,
      `| RSS after the changes | ${mem(l2.rssAfterChanges)} | | |`,
      "",
    );
    if (l2.problems.length) out.push(`Our l2 agent logged ${l2.problems.length} warning(s) or error(s); first: ${l2.problems[0]}`, "");
  }
  out.push(`Stand-in calls served: ${Object.entries(r.standInCalls).map(([k, v]) => `${k} ${v}`).join(", ")}.`, "");
  return out.join("\n");
}
