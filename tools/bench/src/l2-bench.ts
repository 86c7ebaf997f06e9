/**
 * The l2 (security group) benchmark: N ports × M ingress rules (2,000 × 10 is ~108k iptables rules,
 * the size Neutron Zed took 7.7 s to add, 83 s to update 200 ports and 91 s to remove 200), through
 * the same path the l2 agent takes — parse the state document, reconcile the namespace into its
 * stateless manager, apply — on a real kernel, in throwaway namespaces. Every phase is reported next
 * to the raw `iptables-restore` of the very lines we sent (each table's declarations first, as
 * Neutron writes them), replayed in a twin namespace holding the same rules: one family after the
 * other (as Neutron runs them; the "raw restore time"), and both families at once in a
 * second twin (on nf_tables our manager runs a large change that way too; on legacy the two only
 * run at once under one hold of the xtables lock, which our manager takes for large tables).
 *
 * Phases: add N ports (cold), update U ports (one rule each), add one port, remove R ports.
 */
import { CanonicalCache, ExecaRunner, IptablesManager, type ApplyResult, type Backend } from "@chainwarden/core";
import { ourCpuMs, withNamespace } from "./netns.js";
import { FirewallNamespace, iptablesFlavor, L2ParseCache, parseL2State, type L2Resource } from "@chainwarden/l2-secgroup";

export interface L2BenchOptions {
  backend: Backend;
  /** Ports (default 2,000). */
  ports?: number;
  /** Ingress IPv4 rules per port (default 10). */
  rulesPerPort?: number;
  /** Ports updated in the update phase (default 200). */
  update?: number;
  /** Ports removed in the remove phase (default 200). */
  remove?: number;
}

export interface L2PhaseResult {
  phase: string;
  /** Ports in the state after the phase. */
  ports: number;
  /** Rules in the kernel after the phase (both families, filter + raw). */
  rules: number;
  /** Reading and validating the whole state document. */
  parseMs: number;
  /** Putting the change into the manager (driver work, canonicalization). */
  reconcileMs: number;
  /** The manager's apply: diff + iptables-restore. */
  applyMs: number;
  /** parse + reconcile + apply. */
  totalMs: number;
  /** Our own CPU over the phase: this process and the runner's spawn helper (the commands excluded). */
  cpuMs: number;
  lines: number;
  bytes: number;
  /** iptables-restore of the same input into the twin namespace, one family after the other (as Neutron runs them). */
  rawRestoreMs: number;
  /** The same, both families at once, into a second twin (on legacy under one hold of the xtables lock, as our apply does). */
  rawParallelMs: number;
  /**
   * After the apply (not in `totalMs`: the rules are in): unused ipsets destroyed and the conntrack
   * deletions the change calls for, of which `conntrackRun` could match a connection and ran.
   */
  afterApplyMs: number;
  conntrackPlanned: number;
  conntrackRun: number;
}

export interface L2BenchResult {
  backend: Backend;
  ports: number;
  rulesPerPort: number;
  phases: L2PhaseResult[];
  /** A second apply of the final state sent nothing. */
  converged: boolean;
}

const SG = (p: number) => `bench-sg-${p}`;

export function portDict(p: number): Record<string, unknown> {
  const hex = p.toString(16).padStart(8, "0");
  return {
    id: `bench-port-${p}`,
    device: `tap${hex}-00`,
    mac_address: `fa:16:3e:${hex.slice(2, 4)}:${hex.slice(4, 6)}:${hex.slice(6, 8)}`,
    fixed_ips: [`10.${(p >> 8) & 255}.${p & 255}.10`],
    network_id: `bench-net-${p % 50}`,
    device_owner: "compute:nova",
    port_security_enabled: true,
    security_groups: [SG(p)],
    allowed_address_pairs: [],
  };
}

export function groupRules(p: number, rules: number, variant = 0): unknown[] {
  return Array.from({ length: rules }, (_, k) => ({
    direction: "ingress",
    ethertype: "IPv4",
    protocol: "tcp",
    port_range_min: 1000 + k + variant,
    port_range_max: 1000 + k + variant,
    remote_ip_prefix: `172.${16 + (k % 16)}.${(p >> 8) & 255}.${p & 255}/32`,
  }));
}

class BenchState {
  readonly ports = new Map<number, Record<string, unknown>>();
  readonly groups = new Map<number, unknown[]>();
  document(): Record<string, unknown> {
    return {
      devices: Object.fromEntries([...this.ports.values()].map((d) => [d["id"], d])),
      security_groups: Object.fromEntries([...this.groups].map(([p, rules]) => [SG(p), rules])),
      sg_member_ips: {},
    };
  }
}

/**
 * The input with each table's chain declarations first, as Neutron writes it. A streamed cold add
 * declares its chains in groups along the way; the raw tools get the same lines in Neutron's order
 * (legacy parses that ~3% faster), so the comparison is with what Neutron would send.
 */
function declarationsFirst(input: string): string {
  const out: string[] = [];
  let block: string[] = [];
  let declarations: string[] = [];
  for (const line of input.split("\n")) {
    if (line.startsWith("*")) {
      out.push(line);
      block = [];
      declarations = [];
    } else if (line === "COMMIT") {
      // Loops, not spreads: a block has tens of thousands of lines.
      for (const l of declarations) out.push(l);
      for (const l of block) out.push(l);
      out.push(line);
    } else if (line.startsWith(":")) declarations.push(line);
    else if (line !== "") block.push(line);
  }
  return `${out.join("\n")}\n`;
}

function countRules(save: string): number {
  return save.split("\n").filter((l) => l.startsWith("-A ")).length;
}

/** Runs the four phases on one backend; every namespace it creates is deleted. */
export async function benchL2(options: L2BenchOptions): Promise<L2BenchResult> {
  const n = options.ports ?? 2000;
  const m = options.rulesPerPort ?? 10;
  const updateCount = options.update ?? 200;
  const removeCount = options.remove ?? 200;
  const runner = new ExecaRunner({ backend: options.backend });
  await runner.version();

  return withNamespace(runner, (ours) =>
    withNamespace(runner, (twin) => withNamespace(runner, async (twin2) => {
      // A fresh canonical cache: measure what a newly started agent pays, not a cache warm from another case.
      const manager = new IptablesManager({ runner, namespace: ours, wrapName: iptablesFlavor.defaultWrapName, stateless: true, canonicalCache: new CanonicalCache() });
      const fw = new FirewallNamespace({ runner, namespace: ours, flavor: iptablesFlavor, enableIpset: false, waitForDevices: false });
      const state = new BenchState();
      // The handler keeps one across documents: a new document re-validates only what changed.
      const cache = new L2ParseCache();
      const phases: L2PhaseResult[] = [];

      const rules = async () => countRules(await runner.save({ namespace: ours, family: 4 })) + countRules(await runner.save({ namespace: ours, family: 6 }));
      const phase = async (name: string) => {
        const c0 = ourCpuMs(runner);
        const t0 = performance.now();
        const parsed = parseL2State(state.document(), "bench", { flavor: iptablesFlavor, enableIpset: false }, cache);
        if (parsed.problems.length) throw new Error(`bench state is invalid: ${parsed.problems[0]!.message}`);
        const t1 = performance.now();
        manager.deferApplyOn();
        await fw.reconcile(manager, parsed.resources.values() as Iterable<L2Resource>);
        const t2 = performance.now();
        const result: ApplyResult = await manager.deferApplyOff();
        const t3 = performance.now();
        const cpuMs = ourCpuMs(runner) - c0;
        const a0 = performance.now();
        const after = await fw.afterApply();
        const afterApplyMs = performance.now() - a0;
        // The same input, as iptables-restore would take it from Neutron, into the twin namespace.
        let rawRestoreMs = 0;
        const raw = result.families.filter((f) => f.sent).map((f) => ({ family: f.family, input: declarationsFirst(f.input) }));
        for (const f of raw) {
          const r0 = performance.now();
          await runner.restore({ namespace: twin, family: f.family }, f.input);
          rawRestoreMs += performance.now() - r0;
        }
        const p0 = performance.now();
        // On legacy, side by side only under a hold of the xtables lock, as our manager does (else they take turns).
        const hold = raw.length === 2 ? await runner.holdXtablesLock() : undefined;
        try {
          await Promise.all(raw.map((f) => runner.restore({ namespace: twin2, family: f.family }, f.input, hold ? { underHold: hold } : {})));
        } finally {
          hold?.release();
        }
        const rawParallelMs = performance.now() - p0;
        phases.push({
          phase: name,
          ports: state.ports.size,
          rules: await rules(),
          parseMs: t1 - t0,
          reconcileMs: t2 - t1,
          applyMs: t3 - t2,
          totalMs: t3 - t0,
          cpuMs,
          lines: result.lines,
          bytes: result.families.reduce((s, f) => s + Buffer.byteLength(f.input), 0),
          rawRestoreMs,
          rawParallelMs,
          afterApplyMs,
          conntrackPlanned: after.conntrack.length,
          conntrackRun: after.conntrackRun.length,
        });
      };

      for (let p = 0; p < n; p++) {
        state.ports.set(p, portDict(p));
        state.groups.set(p, groupRules(p, m));
      }
      await phase(`add ${n} ports`);

      // Every port's first rule moves to another port number.
      for (let p = 0; p < Math.min(updateCount, n); p++) state.groups.set(p * Math.max(1, Math.floor(n / updateCount)) % n, groupRules(p, m, 100));
      await phase(`update ${updateCount} ports`);

      state.ports.set(n, portDict(n));
      state.groups.set(n, groupRules(n, m));
      await phase("add 1 port");

      for (let p = 0; p < removeCount; p++) {
        const victim = p * Math.max(1, Math.floor(n / removeCount)) % n;
        state.ports.delete(victim);
        state.groups.delete(victim);
      }
      await phase(`remove ${removeCount} ports`);

      manager.deferApplyOn();
      await fw.reconcile(manager, parseL2State(state.document(), "bench", { flavor: iptablesFlavor, enableIpset: false }).resources.values());
      const again = await manager.deferApplyOff();
      return { backend: options.backend, ports: n, rulesPerPort: m, phases, converged: again.lines === 0 };
    })),
  );
}

/** A markdown table of one run. */
export function formatL2Bench(results: readonly L2BenchResult[]): string {
  const f = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
  const out = [
    "| backend | phase | ports | kernel rules | parse ms | reconcile ms | apply ms | total ms | CPU ms | lines | raw restore ms | total / raw | raw, families at once ms | after apply ms (conntrack deletions run / called for) |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  ];
  for (const r of results) {
    for (const p of r.phases) {
      out.push(`| ${r.backend} | ${p.phase} | ${p.ports} | ${p.rules} | ${f(p.parseMs)} | ${f(p.reconcileMs)} | ${f(p.applyMs)} | ${f(p.totalMs)} | ${f(p.cpuMs)} | ${p.lines} | ${f(p.rawRestoreMs)} | ${(p.totalMs / Math.max(p.rawRestoreMs, 0.001)).toFixed(2)} | ${f(p.rawParallelMs)} | ${f(p.afterApplyMs)} (${p.conntrackRun} / ${p.conntrackPlanned}) |`);
    }
  }
  return `${out.join("\n")}\n`;
}
