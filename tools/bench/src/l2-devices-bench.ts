/**
 * The l2 agent while ports wait for their taps: N ports filtered (their taps exist, veth pairs in a
 * throwaway namespace), W more in the state whose taps do not exist yet. Measured with the real
 * agent (plugin, reconcile loop, apply observer) on the real kernel:
 * - how busy the host is while the ports wait (all CPU, from /proc/stat: the agent, its commands,
 *   the kernel), and the agent process's own share;
 * - how long after a tap appears its port's rules are applied (the apply observer's event).
 * Once with the device monitor (`ip -o monitor link`), once with polling only (a runner that offers
 * everything but `watch`): Neutron's way, minus its full pass per poll.
 */
import { readFileSync } from "node:fs";
import {
  Agent,
  applyObserverExtensionPoint,
  baseConfigSchema,
  createLogger,
  createPlugin,
  FRAMEWORK_VERSION,
  MemoryStateSource,
  stateSourceExtensionPoint,
  type ApplyEvent,
} from "@chainwarden/agent";
import { ExecaRunner, ForwardingRunner, type Backend, type HostRunner } from "@chainwarden/core";
import { l2SecgroupPlugin } from "@chainwarden/l2-secgroup";
import { groupRules, portDict } from "./l2-bench.js";
import { withNamespace } from "./netns.js";

export interface DevicesBenchOptions {
  backend: Backend;
  /** Ports filtered, each with its tap (default 2,000). */
  ports?: number;
  /** Ports waiting for their taps; each is then given one, one at a time (default 6). */
  waiting?: number;
  /** How long the host is watched while the ports wait, ms (default 10,000). */
  idleMs?: number;
  /** false: polling only (default true). */
  monitor?: boolean;
}

export interface DevicesBenchResult {
  backend: Backend;
  monitor: boolean;
  ports: number;
  waiting: number;
  /** All CPU of the host while the ports waited, in % of one core. */
  hostBusyPercent: number;
  /** This process's CPU over the same window, in % of one core. */
  agentPercent: number;
  /** Tap created → its port's rules applied, per waiting port, ms. */
  tapToRulesMs: number[];
}

/** Busy jiffies of the whole host (user, nice, system, irq, softirq). */
function hostBusy(): number {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  return f[0]! + f[1]! + f[2]! + f[5]! + f[6]!;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const tapOf = (i: number) => `tapwait${String(i).padStart(4, "0")}-00`;

export async function benchDevices(options: DevicesBenchOptions): Promise<DevicesBenchResult> {
  const n = options.ports ?? 2000;
  const w = options.waiting ?? 6;
  const monitor = options.monitor ?? true;
  const inner = new ExecaRunner({ backend: options.backend });
  await inner.version();
  // Polling only: everything the runner offers but `watch`.
  const runner: HostRunner = monitor
    ? inner
    : Object.assign(new ForwardingRunner(inner), { restoreStream: inner.restoreStream.bind(inner), prepare: inner.prepare.bind(inner), listLinks: inner.listLinks.bind(inner) });
  try {
    return await withNamespace(inner, async (ns) => {
      const veths = Array.from({ length: n }, (_, p) => `link add ${portDict(p)["device"]} type veth peer name v${p.toString(16).padStart(8, "0")}\n`).join("");
      await inner.exec("ip", ["-batch", "-"], { namespace: ns, input: veths });
      const devices: Record<string, unknown> = {};
      const groups: Record<string, unknown> = {};
      for (let p = 0; p < n + w; p++) {
        const port = portDict(p);
        if (p >= n) port["device"] = tapOf(p - n);
        devices[port["id"] as string] = port;
        groups[`bench-sg-${p}`] = groupRules(p, 10);
      }
      const source = new MemoryStateSource({ devices, security_groups: groups, sg_member_ips: {} });
      const applied: { t: number; lines: number }[] = [];
      const observe = createPlugin({
        name: "devices-bench",
        version: "0.0.0",
        framework: `^${FRAMEWORK_VERSION}`,
        register(env) {
          env.addExtension(stateSourceExtensionPoint, source);
          env.addExtension(applyObserverExtensionPoint, { onApply: (e: ApplyEvent) => void applied.push({ t: performance.now(), lines: e.result?.lines ?? 0 }) });
        },
      });
      const agent = await Agent.create({
        name: "l2-agent",
        version: "bench",
        config: { ...baseConfigSchema.parse({ wrap_name: "neutron-linuxbri", resync_interval: 0, log_level: "silent" }), enable_ipset: false },
        plugins: [{ plugin: l2SecgroupPlugin }, { plugin: observe }],
        runner,
        logger: createLogger({ level: "silent", name: "devices-bench" }),
        defaultNamespace: ns,
      });
      try {
        await agent.start();
        await sleep(2_000);
        const idleMs = options.idleMs ?? 10_000;
        const b0 = hostBusy();
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        await sleep(idleMs);
        const c = process.cpuUsage(c0);
        const secs = (performance.now() - t0) / 1000;
        const hostBusyPercent = (hostBusy() - b0) / secs; // jiffies are 1/100 s: per second, % of one core
        const agentPercent = (c.user + c.system) / 1e4 / secs;
        const tapToRulesMs: number[] = [];
        for (let i = 0; i < w; i++) {
          // At a random point of the poll's cycle.
          await sleep(300 + Math.random() * 1_700);
          const seen = applied.length;
          await inner.exec("ip", ["link", "add", tapOf(i), "type", "veth", "peer", "name", `vwait${i}`], { namespace: ns });
          const t = performance.now();
          const deadline = t + 30_000;
          let done: { t: number } | undefined;
          while (!(done = applied.slice(seen).find((e) => e.lines > 0))) {
            if (performance.now() > deadline) throw new Error(`devices bench: no apply within 30 s of ${tapOf(i)} appearing`);
            await sleep(2);
          }
          tapToRulesMs.push(done.t - t);
        }
        return { backend: options.backend, monitor, ports: n, waiting: w, hostBusyPercent, agentPercent, tapToRulesMs };
      } finally {
        await agent.stop();
      }
    });
  } finally {
    await inner.close();
  }
}

export function formatDevicesBench(results: readonly DevicesBenchResult[]): string {
  const out = [
    "| backend | devices found by | ports filtered | waiting | host busy while waiting (% of one core) | agent process (%) | tap → its rules applied, ms (median; min–max) |",
    "|---|---|---|---|---|---|---|",
  ];
  for (const r of results) {
    const sorted = [...r.tapToRulesMs].sort((a, b) => a - b);
    const median = sorted[sorted.length >> 1]!;
    out.push(
      `| ${r.backend} | ${r.monitor ? "monitor (+ poll)" : "poll only"} | ${r.ports} | ${r.waiting} | ${r.hostBusyPercent.toFixed(1)} | ${r.agentPercent.toFixed(1)} | ${median.toFixed(0)}; ${sorted[0]!.toFixed(0)}–${sorted.at(-1)!.toFixed(0)} |`,
    );
  }
  return `${out.join("\n")}\n`;
}
