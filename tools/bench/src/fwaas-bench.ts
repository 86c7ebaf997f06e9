import { randomBytes } from "node:crypto";
import { CanonicalCache, ExecaRunner, ForwardingRunner, IptablesManager, type Backend, type HostRunner, type IptablesRunner, type RestoreOptions, type Target } from "@chainwarden/core";
import { parseFirewall, parseFirewallGroup, RouterFirewall, type RouterFirewallInput } from "@chainwarden/fwaas-iptables";
import { ms, ourCpuMs, type HelperOwner } from "./netns.js";

export interface FwaasBenchOptions {
  backend: Backend;
  /** Routers the firewall covers (one namespace and one IptablesManager each). Default 10. */
  routers?: number;
  /** Rules in the policy. Default 512. */
  rules?: number;
  /** `v1`: a firewall on `qr-+` (every rule in both chains); `v2`: a group's ingress and egress lists. Default v1. */
  version?: "v1" | "v2";
  /**
   * First run the same create and update once, on the real tools in throwaway namespaces, so the
   * numbers are the steady state of a running agent rather than V8 compiling the code (ours and the
   * runner's) on first use. The measured run still starts with an empty canonical cache. Default true.
   */
  warmup?: boolean;
}

/** One measured operation over all routers. */
export interface FwaasBenchStep {
  /**
   * Our own CPU: validating, translating, programming the managers and computing the restore input
   * (user + system of this process outside the restore calls), ms.
   */
  cpuMs: number;
  /**
   * Our CPU while a restore runs (this process and the runner's spawn helper: starting `ip netns
   * exec … iptables-restore`, piping the input, reading the result): the runner's per-call cost, ms.
   */
  runnerCpuMs: number;
  /** Wall time spent inside `iptables-restore` (all routers, both families), ms. */
  restoreMs: number;
  /** Wall time of the whole step, ms. */
  wallMs: number;
  restoreCalls: number;
  /** Restore edit lines sent, all routers. */
  lines: number;
}

export interface FwaasBenchRow {
  backend: Backend;
  version: "v1" | "v2";
  warmup: boolean;
  routers: number;
  rules: number;
  /** Validating the firewall (zod + semantic checks + canonical addresses), once. */
  parseMs: number;
  /** The firewall appears on every router. */
  create: FwaasBenchStep;
  /** One rule in the middle changes its action, one is inserted at the top, one is removed. */
  update: FwaasBenchStep;
  /** The same state once more: must send nothing. */
  repeatLines: number;
}

/** Counts and times the restores a runner makes. */
class TimedRunner extends ForwardingRunner<HostRunner & HelperOwner> {
  restoreMs = 0;
  restoreCalls = 0;
  restoreCpuMs = 0;
  get helperPid(): number | undefined {
    return this.inner.helperPid;
  }
  override async restore(target: Target, input: string, options?: RestoreOptions): Promise<void> {
    const t = performance.now();
    const c0 = ourCpuMs(this.inner);
    try {
      await this.inner.restore(target, input, options);
    } finally {
      this.restoreCpuMs += ourCpuMs(this.inner) - c0;
      this.restoreMs += ms(t);
      this.restoreCalls++;
    }
  }
}

/** A varied policy: TCP and UDP ports and ranges, sources and destinations, every action. */
function policyRules(count: number, variant: number): Record<string, unknown>[] {
  const rules: Record<string, unknown>[] = [];
  for (let i = 0; i < count; i++) {
    const rule: Record<string, unknown> = { id: `r${i}`, ip_version: 4, action: i % 17 === 0 ? "reject" : i % 5 === 0 ? "deny" : "allow" };
    if (i % 3 !== 2) rule["protocol"] = i % 3 === 0 ? "tcp" : "udp";
    if (i % 3 === 0) rule["destination_port"] = i % 2 ? String(1000 + i) : `${2000 + i}:${2100 + i}`;
    if (i % 3 === 1) rule["source_port"] = String(3000 + i);
    if (i % 4 === 0) rule["source_ip_address"] = `10.${(i >> 8) & 255}.${i & 255}.0/24`;
    if (i % 7 === 0) rule["destination_ip_address"] = `192.0.${i & 255}.${(i * 7 + variant) & 255}`;
    rules.push(rule);
  }
  return rules;
}

function input(version: "v1" | "v2", rules: Record<string, unknown>[], ports: string[]): { parseMs: number; input: Omit<RouterFirewallInput, "ports"> } {
  const t = performance.now();
  if (version === "v1") {
    const { firewall, issues } = parseFirewall({ id: "80daec7b-8167-459e-b915-da02832a248b", tenant_id: "bench", firewall_policy: { firewall_rules: rules } });
    if (!firewall) throw new Error(`bench policy invalid: ${JSON.stringify(issues.slice(0, 3))}`);
    return { parseMs: ms(t), input: { firewalls: [firewall] } };
  }
  const { group, issues } = parseFirewallGroup({ id: "fa0e5c2b-7d1e-4a3c-9b8f-0123456789ab", ports, ingress_rules: rules, egress_rules: rules });
  if (!group) throw new Error(`bench policy invalid: ${JSON.stringify(issues.slice(0, 3))}`);
  return { parseMs: ms(t), input: { groups: [group] } };
}

/**
 * A 512-rule firewall on 10 routers (each a namespace with its own IptablesManager, as the l3
 * agent has them): the create and a small update, our own CPU next to the time iptables-restore
 * takes. Neutron's old driver needed about 120 s to update such a policy (Launchpad bug 1688573).
 * Conntrack cleanup is not part of it (it runs after the apply and depends on the connections).
 * Runs as root; every namespace is created here and deleted at the end.
 */
export async function benchFwaas(options: FwaasBenchOptions): Promise<FwaasBenchRow> {
  const routers = options.routers ?? 10;
  const count = options.rules ?? 512;
  const version = options.version ?? "v1";
  const execa = new ExecaRunner({ backend: options.backend });
  await execa.version();
  const runner = new TimedRunner(execa);
  const warmup = options.warmup ?? true;
  const tag = randomBytes(3).toString("hex");
  const namespaces = Array.from({ length: routers }, (_, i) => `cw-bench-fw-${tag}-${i}`);
  const scratch = warmup ? Array.from({ length: routers }, (_, i) => `cw-bench-fw-${tag}-w${i}`) : [];
  try {
    for (const ns of [...scratch, ...namespaces]) await execa.exec("ip", ["netns", "add", ns]);
    if (warmup) await run(execa, scratch, routers, count, version);
    const measured = await run(runner, namespaces, routers, count, version);
    return { backend: options.backend, version, warmup, routers, rules: count, ...measured };
  } finally {
    for (const ns of [...scratch, ...namespaces]) await execa.exec("ip", ["netns", "delete", ns], { reject: false });
  }
}

async function run(
  runner: IptablesRunner,
  namespaces: readonly string[],
  routers: number,
  count: number,
  version: "v1" | "v2",
): Promise<Pick<FwaasBenchRow, "parseMs" | "create" | "update" | "repeatLines">> {
  const timed = runner instanceof TimedRunner ? runner : undefined;
  const ports = Array.from({ length: routers }, (_, i) => `c0ffee${String(i).padStart(2, "0")}-1111-4222-8333-444455556666`);
  // One fresh canonical cache for the routers, as one agent process has: the warm-up must not
  // hand the measured run a cache it filled.
  const canonicalCache = new CanonicalCache();
  const sites = Array.from({ length: routers }, (_, i) => {
    const manager = new IptablesManager({ runner, namespace: namespaces[i % namespaces.length], wrapName: "neutron-l3-agent", canonicalCache });
    return { manager, driver: new RouterFirewall(manager, { resource: `router/${i}` }), ports: [ports[i]!] };
  });
  // The routers exist before the firewall: their base layout is not part of the measurement.
  for (const s of sites) await s.manager.apply();

  // Parsing the firewall is in the step: the agent validates every new version once.
  const step = async (parse: () => Omit<RouterFirewallInput, "ports">): Promise<FwaasBenchStep> => {
    const calls = timed?.restoreCalls ?? 0;
    const restore = timed?.restoreMs ?? 0;
    const restoreCpu = timed?.restoreCpuMs ?? 0;
    const c0 = ourCpuMs(timed);
    const t0 = performance.now();
    const fw = parse();
    let lines = 0;
    for (const s of sites) {
      const { result } = await s.manager.deferApply(() => s.driver.sync({ ports: s.ports, ...fw }));
      lines += result.lines;
    }
    const wallMs = ms(t0);
    const totalCpuMs = ourCpuMs(timed) - c0;
    const runnerCpuMs = (timed?.restoreCpuMs ?? 0) - restoreCpu;
    return {
      cpuMs: totalCpuMs - runnerCpuMs,
      runnerCpuMs,
      restoreMs: (timed?.restoreMs ?? 0) - restore,
      wallMs,
      restoreCalls: (timed?.restoreCalls ?? 0) - calls,
      lines,
    };
  };

  const rules = policyRules(count, 0);
  const parseMs = input(version, rules, ports).parseMs;
  const create = await step(() => input(version, rules, ports).input);

  const changed = rules.map((r, i) => (i === count >> 1 ? { ...r, action: r["action"] === "allow" ? "deny" : "allow" } : r));
  changed.splice(count >> 2, 1);
  changed.unshift({ id: "r-new", protocol: "tcp", destination_port: "22", ip_version: 4, action: "deny" });
  const update = await step(() => input(version, changed, ports).input);
  const repeat = await step(() => input(version, changed, ports).input);
  return { parseMs, create, update, repeatLines: repeat.lines };
}
