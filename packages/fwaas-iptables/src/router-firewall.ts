/**
 * The FWaaS iptables driver for one router: given the router's IptablesManager, its internal ports
 * and the v1 firewalls / v2 firewall groups that apply to it, it puts exactly their chains and jumps
 * into the filter tables (IPv4 and IPv6), with the layout neutron-fwaas writes.
 *
 * Layout (per IP version, all chains wrapped, so `neutron-l3-agent-…`):
 * - v1 firewall `F` (the seed): `iv4F` / `ov4F` with `-m state --state INVALID -j DROP`,
 *   `-m state --state RELATED,ESTABLISHED -j ACCEPT`, then every enabled rule of that version in
 *   policy order (in both chains: v1 rules have no direction), verdicts ACCEPT / DROP / REJECT.
 *   FORWARD: `-o qr-+ -j iv4F`, `-i qr-+ -j ov4F`, `-o qr-+ -j fwaas-defau`, `-i qr-+ -j fwaas-defau`.
 * - v2 group `G` (neutron-fwaas Zed): `iv4G` gets the ingress rules, `ov4G` the egress rules; INVALID
 *   goes to `dropped`, verdicts to `accepted` / `dropped` / `rejected` (chains holding the verdict).
 *   FORWARD, for the group's ports on this router in the group's order: every `-o qr-P -j iv4G`,
 *   every `-i qr-P -j ov4G`, every `-o qr-P -j fwaas-defau`, every `-i qr-P -j fwaas-defau`.
 * - `fwaas-default-policy` drops what no rule accepted (`-j DROP`; `-j dropped` once a v2 group is
 *   on the router, as the v2 driver writes it).
 * - `admin_state_up: false`: the firewall's own chains go, its default-policy jumps stay, so
 *   everything through its interfaces is dropped.
 * - Several firewalls on one router: v2 groups in id order, then v1 firewalls; each block is
 *   complete (its chain jumps, then its default jumps), so one group's ports never lose their jumps
 *   because of another's.
 *
 * Incremental by construction. Every chain is computed as text (translated once per rule list, so
 * one firewall on ten routers is translated once) and compared with what was programmed; only a
 * chain whose text changed is rewritten in the manager (other firewalls' chains, and the unchanged
 * direction or IP version of the same firewall, are not touched at all). The FORWARD jumps are
 * recomputed as a whole whenever anything changed and re-added under one tag: the applier diffs them
 * against the kernel, so only the jumps that really changed are sent. Because the jump order is a
 * function of the desired state alone, any sequence of syncs ends in the layout one fresh sync writes.
 *
 * What neutron-fwaas gets wrong and this does not: adding a port to a group keeps the other ports'
 * jumps; removing one port removes that port's jumps only; creating, updating or deleting one group
 * never removes another group's default-policy jumps; and `accepted` / `dropped` / `rejected` /
 * `fwaas-defau` go when the last firewall leaves the router.
 *
 * Invariants: only the manager is mutated (callers apply it, usually in a deferred apply);
 * `sync(x); sync(x)` changes nothing the second time; the conntrack plan a sync returns is meant to
 * be run after the apply (deleting entries before the new rules are in would let a packet re-create
 * them under the old rules).
 */
import { kernelChainName, ruleJumpTarget, type IptablesManager, type IptablesTable } from "@chainwarden/core";
import { conntrackFilterOf, EMPTY_CONNTRACK_PLAN, type ConntrackFilter, type ConntrackPlan } from "./conntrack-cleaner.js";
import type { FirewallGroup } from "./firewall-group.js";
import type { FirewallRule, IpVersion } from "./firewall-rule.js";
import type { Firewall } from "./firewall.js";
import {
  ACCEPTED_CHAIN,
  DEFAULT_POLICY_CHAIN,
  DROPPED_CHAIN,
  firewallChainName,
  interfaceName,
  interfaceOption,
  INTERNAL_DEV_PREFIX,
  REJECTED_CHAIN,
  type Direction,
} from "./fwaas-chains.js";
import { translateRule, V1_ACTION_TARGETS, V2_ACTION_TARGETS } from "./rule-translation.js";

/** Everything that decides one router's firewall layout: its ports, the v1 firewalls and v2 groups on it, and what to keep from the kernel. */
export interface RouterFirewallInput {
  /** The router's internal interface port ids (Neutron's `_interfaces`). */
  readonly ports: readonly string[];
  /** v1 firewalls covering the router (see `firewallCoversRouter`). */
  readonly firewalls?: readonly Firewall[];
  /** v2 groups; each binds those of its ports that are this router's. Others are ignored. */
  readonly groups?: readonly FirewallGroup[];
  /**
   * Firewalls to keep as the kernel has them (invalid input, or a failed apply): their chains are
   * taken from `kernel` as they are; where the kernel has none, only their default-policy jumps
   * are written, so everything through their interfaces is dropped (closed, never open). A held
   * firewall this driver already programs is left as it is.
   */
  readonly held?: readonly HeldFirewall[];
  /** The kernel's filter tables (kernel chain name → rules), for held firewalls and `keepUnknown`. */
  readonly kernel?: KernelFilter;
  /**
   * The input is incomplete: firewall chains the kernel has that no firewall here explains, and
   * their FORWARD jumps, are kept as they are.
   */
  readonly keepUnknown?: boolean;
}

/** A firewall to keep as the kernel has it (see `RouterFirewallInput.held`). */
export interface HeldFirewall {
  readonly kind: "v1" | "v2";
  readonly id: string;
  /** v2: the group's ports (those of this router are used); v1: none, it covers `qr-+`. */
  readonly ports: readonly string[];
}

/** Per IP version: kernel chain name → rules as iptables-save prints them. */
export type KernelFilter = ReadonlyMap<IpVersion, ReadonlyMap<string, readonly string[]>>;

/** Options of `RouterFirewall`; both optional. */
export interface RouterFirewallOptions {
  /** The internal interface prefix, Neutron's `qr-`. */
  interfacePrefix?: string;
  /** Named in core's errors (the router id). */
  resource?: string;
}

/** What one `RouterFirewall.sync` changed in the manager, and the conntrack plan to run once that is applied. */
export interface RouterFirewallSyncResult {
  /** `v1:<id>` / `v2:<id>` whose chains were written (new or changed). */
  readonly rewritten: string[];
  /** `v1:<id>` / `v2:<id>` whose chains were removed (gone, down, or about to be rewritten). */
  readonly removed: string[];
  /** The FORWARD jumps were rebuilt. */
  readonly jumpsRebuilt: boolean;
  /**
   * Kernel chains whose wanted content this sync changed, as `<family>/<chain>`
   * (`4/neutron-l3-agent-iv4fa0e5c2b`, `6/neutron-l3-agent-FORWARD`). After the apply, a conntrack
   * plan is worth running only if the apply really changed one of them: a firewall that is "new" to
   * a fresh manager but already in the kernel (an agent restart) must not flush connections.
   */
  readonly chains: string[];
  /** Run after the apply (`ConntrackCleaner`). */
  readonly conntrack: ConntrackPlan;
}

interface ChainSpec {
  readonly family: IpVersion;
  readonly name: string;
  readonly rules: readonly string[];
  /** The rules joined: equal text means nothing to rewrite. */
  readonly text: string;
}

/** What one firewall puts on this router. */
interface Program {
  readonly key: string;
  readonly kind: "v1" | "v2";
  readonly id: string;
  readonly adminUp: boolean;
  readonly chains: readonly ChainSpec[];
  /** v2: the bound ports here; v1: none (it uses `qr-+`). */
  readonly ports: readonly string[];
  /** Enabled rules by direction, for the conntrack diff. */
  readonly ingress: readonly FirewallRule[];
  readonly egress: readonly FirewallRule[];
  /** Kept as the kernel has it (or closed): never a reason to flush connections. */
  readonly held?: boolean;
}

interface Jump {
  readonly family: IpVersion;
  readonly rule: string;
}

const JUMP_TAG = "fwaas-jump";
const KEPT_TAG = "fwaas-kept-while-incomplete";
/** The chains every firewall on a router shares. */
const SHARED_CHAINS: readonly string[] = [DEFAULT_POLICY_CHAIN, ACCEPTED_CHAIN, DROPPED_CHAIN, REJECTED_CHAIN];
const FAMILIES: readonly IpVersion[] = [4, 6];

/**
 * neutron-fwaas's iptables driver (`IptablesFwaasDriver`) for one router's `IptablesManager`, v1 and v2 layouts:
 * `sync` makes the manager hold exactly the chains and FORWARD jumps of its input, rewriting only the chains
 * that changed; a second `sync` of the same input changes nothing. It mutates only the manager (the caller
 * applies it), and the conntrack plan it returns is for after that apply.
 */
export class RouterFirewall {
  private programs = new Map<string, Program>();
  private sharedKey = "";
  private jumpsKey = "";
  private readonly prefix: string;
  private readonly resource: string | undefined;

  constructor(
    readonly manager: IptablesManager,
    options: RouterFirewallOptions = {},
  ) {
    this.prefix = options.interfacePrefix ?? INTERNAL_DEV_PREFIX;
    this.resource = options.resource;
  }

  /** The firewalls currently programmed (`v1:<id>`, `v2:<id>`). */
  get programmed(): string[] {
    return [...this.programs.keys()];
  }

  /** Makes the manager hold exactly the chains and jumps of `input` (nothing else of ours). */
  sync(input: RouterFirewallInput): RouterFirewallSyncResult {
    const desired = this.compute(input);
    const rewritten = new Set<string>();
    const removed = new Set<string>();
    const chains = new Set<string>();
    const kernel = (c: ChainSpec) => `${c.family}/${kernelChainName(this.manager.wrapName, c.name, true)}`;

    // Chain by chain: a firewall whose ingress rules changed keeps its egress chains untouched.
    const before = chainsOf(this.programs);
    const after = chainsOf(desired);
    for (const [key, old] of before) {
      if (after.get(key)?.spec.text === old.spec.text) continue;
      // removeChain also drops the jumps to the chain; they are all rebuilt below.
      this.filter(old.spec.family).removeChain(old.spec.name);
      chains.add(kernel(old.spec));
      if (!after.has(key)) removed.add(old.program);
    }
    for (const [key, now] of after) {
      if (before.get(key)?.spec.text === now.spec.text) continue;
      const table = this.filter(now.spec.family);
      table.addChain(now.spec.name, this.opts());
      for (const rule of now.spec.rules) table.addRule(now.spec.name, rule, this.opts());
      chains.add(kernel(now.spec));
      rewritten.add(now.program);
    }
    for (const key of this.programs.keys()) if (!desired.has(key)) removed.add(key);
    const changed = chains.size > 0 || removed.size > 0;
    const sharedChanged = this.syncShared(desired);

    let jumps = this.jumps(desired);
    // Incomplete input: the kernel's jumps stay, in the kernel's order (which firewall decides
    // first depends on it); new ones follow them.
    if (input.keepUnknown && input.kernel) jumps = this.withKernelJumps(jumps, input.kernel);
    const jumpsKey = jumps.map((j) => `${j.family} ${j.rule}`).join("\n");
    let jumpsRebuilt = false;
    if (changed || sharedChanged || jumpsKey !== this.jumpsKey) {
      for (const family of FAMILIES) this.filter(family).clearRulesByTag(JUMP_TAG);
      for (const j of jumps) this.filter(j.family).addRule("FORWARD", j.rule, { tag: JUMP_TAG, ...this.opts() });
      this.jumpsKey = jumpsKey;
      jumpsRebuilt = true;
      for (const family of FAMILIES) chains.add(`${family}/${kernelChainName(this.manager.wrapName, "FORWARD", true)}`);
    }

    if (input.keepUnknown && input.kernel) this.keepUnknown(input.kernel);

    const conntrack = this.conntrackPlan(desired);
    this.programs = desired;
    return { rewritten: [...rewritten], removed: [...removed], jumpsRebuilt, chains: [...chains], conntrack };
  }

  /** Whether the driver already holds this firewall (`v1:<id>` / `v2:<id>`) as the kernel had it. */
  holds(key: string): boolean {
    return this.programs.get(key)?.held === true;
  }

  /**
   * Firewall chains the kernel has and the manager does not (their names are firewall chains, or
   * the shared ones), taken over as they are; the shared chains the kernel has keep its content.
   */
  private keepUnknown(kernel: KernelFilter): void {
    const wrap = this.manager.wrapName;
    const prefix = `${wrap}-`;
    for (const family of FAMILIES) {
      const table = this.filter(family);
      const copy = kernel.get(family);
      if (!copy) continue;
      const adopted: [string, readonly string[]][] = [];
      for (const [chain, rules] of copy) {
        if (!this.isFirewallChain(chain)) continue;
        // A shared chain by the name the driver declares it under (the kernel's is cut).
        const shared = SHARED_CHAINS.find((c) => kernelChainName(wrap, c, true) === chain);
        const name = shared ?? chain.slice(prefix.length);
        if (table.isDeclared(chain)) {
          if (shared === undefined) continue;
          table.emptyChain(name);
        } else {
          table.addChain(name, this.opts());
        }
        adopted.push([name, rules]);
      }
      for (const [name, rules] of adopted) for (const rule of rules) table.addRule(name, rule, { tag: KEPT_TAG, ...this.opts() });
    }
    // The shared chains' content may differ from what the next complete sync writes.
    this.sharedKey = "";
  }

  /** Whether a kernel chain name is one FWaaS writes (a firewall's, or a shared one). */
  private isFirewallChain(chain: string): boolean {
    const prefix = `${this.manager.wrapName}-`;
    if (!chain.startsWith(prefix)) return false;
    const name = chain.slice(prefix.length);
    return /^[io]v[46]/.test(name) || SHARED_CHAINS.some((c) => kernelChainName(this.manager.wrapName, c, true) === chain);
  }

  /** The kernel's FWaaS jumps in FORWARD, in its order, then the wanted ones it does not have. */
  private withKernelJumps(jumps: readonly Jump[], kernel: KernelFilter): Jump[] {
    const wrap = this.manager.wrapName;
    const expand = (rule: string) => rule.replace(/\$([A-Za-z0-9_.-]+)/g, (_, name: string) => kernelChainName(wrap, name, true));
    const out: Jump[] = [];
    for (const family of FAMILIES) {
      const kept = (kernel.get(family)?.get(kernelChainName(wrap, "FORWARD", true)) ?? []).filter((rule) => {
        const target = ruleJumpTarget(rule);
        return target !== undefined && this.isFirewallChain(target);
      });
      const have = new Set(kept);
      for (const rule of kept) out.push({ family, rule });
      for (const j of jumps) if (j.family === family && !have.has(expand(j.rule))) out.push(j);
    }
    return out;
  }

  /** Removes everything this driver put into the manager (the router has no firewall any more). */
  clear(): RouterFirewallSyncResult {
    return this.sync({ ports: [] });
  }

  // --- computing the desired layout ---------------------------------------------------------------

  private compute(input: RouterFirewallInput): Map<string, Program> {
    const programs = new Map<string, Program>();
    const routerPorts = new Set(input.ports);
    const held = input.held ?? [];
    // Held firewalls take their places in the same order as the others (the FORWARD jumps follow it).
    const groups = [
      ...(input.groups ?? []).map((g) => ({ id: g.id, ports: g.ports, make: (ports: string[]) => this.v2Program(g, ports) })),
      ...held.filter((h) => h.kind === "v2").map((h) => ({ id: h.id, ports: h.ports, make: (ports: string[]) => this.heldProgram(h, ports, input.kernel) })),
    ].sort(byId);
    for (const g of groups) {
      const ports = g.ports.filter((p) => routerPorts.has(p));
      if (ports.length > 0) programs.set(`v2:${g.id}`, g.make(ports));
    }
    const v1 = [
      ...(input.firewalls ?? []).map((f) => ({ id: f.id, make: () => this.v1Program(f) })),
      ...held.filter((h) => h.kind === "v1").map((h) => ({ id: h.id, make: () => this.heldProgram(h, [], input.kernel) })),
    ].sort(byId);
    for (const f of v1) programs.set(`v1:${f.id}`, f.make());
    return programs;
  }

  /**
   * A held firewall: the one this driver already holds, as it is; else its chains as the kernel has
   * them; else none (closed: its default-policy jumps drop everything through its interfaces).
   */
  private heldProgram(h: HeldFirewall, ports: string[], kernel: KernelFilter | undefined): Program {
    const key = `${h.kind}:${h.id}`;
    const before = this.programs.get(key);
    if (before?.held) return before;
    const chains: ChainSpec[] = [];
    for (const family of FAMILIES) {
      for (const direction of ["ingress", "egress"] as const) {
        const name = firewallChainName(direction, family, h.id);
        const rules = kernel?.get(family)?.get(kernelChainName(this.manager.wrapName, name, true));
        if (rules !== undefined) chains.push({ family, name, rules, text: rules.join("\n") });
      }
    }
    return { ...program(h.kind, h.id, chains.length > 0, chains, h.kind === "v2" ? ports : [], [], []), held: true };
  }

  private v1Program(fw: Firewall): Program {
    const enabled = enabledRules(fw.rules);
    const chains: ChainSpec[] = [];
    if (fw.adminStateUp) {
      for (const family of FAMILIES) {
        const { rules, text } = translated(fw.rules, family, "v1");
        for (const direction of ["ingress", "egress"] as const) {
          chains.push({ family, name: firewallChainName(direction, family, fw.id), rules, text });
        }
      }
    }
    return program("v1", fw.id, fw.adminStateUp, chains, [], enabled, enabled);
  }

  private v2Program(group: FirewallGroup, ports: string[]): Program {
    const ingress = enabledRules(group.ingressRules);
    const egress = enabledRules(group.egressRules);
    const chains: ChainSpec[] = [];
    if (group.adminStateUp) {
      for (const family of FAMILIES) {
        for (const [direction, list] of [["ingress", group.ingressRules], ["egress", group.egressRules]] as const) {
          chains.push({ family, name: firewallChainName(direction, family, group.id), ...translated(list, family, "v2") });
        }
      }
    }
    return program("v2", group.id, group.adminStateUp, chains, ports, ingress, egress);
  }

  private jumps(desired: ReadonlyMap<string, Program>): Jump[] {
    const jumps: Jump[] = [];
    for (const family of FAMILIES) {
      for (const p of desired.values()) {
        const devices = p.kind === "v1" ? [`${this.prefix}+`] : p.ports.map((port) => interfaceName(this.prefix, port));
        if (p.adminUp) {
          for (const direction of ["ingress", "egress"] as Direction[]) {
            const chain = firewallChainName(direction, family, p.id);
            for (const dev of devices) jumps.push({ family, rule: `${interfaceOption(direction)} ${dev} -j $${chain}` });
          }
        }
        for (const direction of ["ingress", "egress"] as Direction[]) {
          for (const dev of devices) jumps.push({ family, rule: `${interfaceOption(direction)} ${dev} -j $${DEFAULT_POLICY_CHAIN}` });
        }
      }
    }
    return jumps;
  }

  /** The chains every firewall on the router shares. Returns true when anything changed. */
  private syncShared(desired: ReadonlyMap<string, Program>): boolean {
    const any = desired.size > 0;
    const v2 = [...desired.values()].some((p) => p.kind === "v2");
    const key = JSON.stringify({ any, v2 });
    if (key === this.sharedKey) return false;
    const before = JSON.parse(this.sharedKey || '{"any":false,"v2":false}') as { any: boolean; v2: boolean };
    for (const family of FAMILIES) {
      const table = this.filter(family);
      if (v2 && !before.v2) {
        for (const [chain, rule] of [
          [ACCEPTED_CHAIN, "-j ACCEPT"],
          [DROPPED_CHAIN, "-j DROP"],
          [REJECTED_CHAIN, `-j REJECT --reject-with ${family === 4 ? "icmp-port-unreachable" : "icmp6-port-unreachable"}`],
        ] as const) {
          table.addChain(chain, this.opts());
          table.emptyChain(chain);
          table.addRule(chain, rule, this.opts());
        }
      }
      if (any) {
        table.addChain(DEFAULT_POLICY_CHAIN, this.opts());
        table.emptyChain(DEFAULT_POLICY_CHAIN);
        table.addRule(DEFAULT_POLICY_CHAIN, v2 ? `-j $${DROPPED_CHAIN}` : "-j DROP", this.opts());
      } else {
        table.removeChain(DEFAULT_POLICY_CHAIN);
      }
      if (!v2 && before.v2) for (const chain of [ACCEPTED_CHAIN, DROPPED_CHAIN, REJECTED_CHAIN]) table.removeChain(chain);
    }
    this.sharedKey = key;
    return true;
  }

  // --- conntrack ------------------------------------------------------------------------------------

  /**
   * As neutron-fwaas: a firewall newly enforced here flushes the namespace's connections (each is
   * re-examined by the new rules on its next packet); a firewall whose rules changed removes the
   * connections its changed, new and removed rules match. Unlike neutron-fwaas, a port newly bound
   * to a group counts as newly enforced (neutron-fwaas diffs the unchanged rules and removes
   * nothing), admin_state_up going back to true does too, and both IP versions are flushed.
   */
  private conntrackPlan(desired: ReadonlyMap<string, Program>): ConntrackPlan {
    let flush = false;
    const filters: ConntrackFilter[] = [];
    for (const [key, now] of desired) {
      if (!now.adminUp || now.held) continue;
      const old = this.programs.get(key);
      if (!old || !old.adminUp || now.ports.some((p) => !old.ports.includes(p))) {
        flush = true;
        continue;
      }
      for (const rule of [...changedRules(old.ingress, now.ingress), ...changedRules(old.egress, now.egress)]) {
        filters.push(conntrackFilterOf(rule));
      }
    }
    if (flush) return { flush: [...FAMILIES], filters: [] };
    if (filters.length === 0) return EMPTY_CONNTRACK_PLAN;
    const unique = new Map(filters.map((f) => [filterKey(f), f]));
    return { flush: [], filters: [...unique.values()] };
  }

  // --- helpers ----------------------------------------------------------------------------------------

  private filter(family: IpVersion): IptablesTable {
    return this.manager.table(family, "filter");
  }

  private opts(): { resource?: string } {
    return this.resource === undefined ? {} : { resource: this.resource };
  }
}

/**
 * A policy's chain body for one IP version, translated once per rule list: the same firewall on ten
 * routers (or in a repeated sync) is translated and joined once. Keyed by the list object, which the
 * parsed firewall shares with every router it is bound to.
 */
const translations = new WeakMap<readonly FirewallRule[], Map<string, { rules: string[]; text: string }>>();

function translated(list: readonly FirewallRule[], family: IpVersion, flavour: "v1" | "v2"): { rules: string[]; text: string } {
  let byKey = translations.get(list);
  if (!byKey) translations.set(list, (byKey = new Map()));
  const key = `${flavour}${family}`;
  let out = byKey.get(key);
  if (!out) {
    const head =
      flavour === "v1"
        ? ["-m state --state INVALID -j DROP", "-m state --state RELATED,ESTABLISHED -j ACCEPT"]
        : [`-m state --state INVALID -j $${DROPPED_CHAIN}`, "-m state --state RELATED,ESTABLISHED -j ACCEPT"];
    const targets = flavour === "v1" ? V1_ACTION_TARGETS : V2_ACTION_TARGETS;
    // A loop, not spreads: an empty list (the other IP version) has another elements kind and deoptimized this.
    const rules = head;
    for (const r of list) if (r.enabled && r.ipVersion === family) rules.push(translateRule(r, targets));
    out = { rules, text: rules.join("\n") };
    byKey.set(key, out);
  }
  return out;
}

/** Every chain of the programs, by `<family>/<name>`, with the program that owns it. */
function chainsOf(programs: ReadonlyMap<string, Program>): Map<string, { spec: ChainSpec; program: string }> {
  const out = new Map<string, { spec: ChainSpec; program: string }>();
  for (const [key, p] of programs) for (const c of p.chains) out.set(`${c.family}/${c.name}`, { spec: c, program: key });
  return out;
}

function program(
  kind: "v1" | "v2",
  id: string,
  adminUp: boolean,
  chains: ChainSpec[],
  ports: string[],
  ingress: readonly FirewallRule[],
  egress: readonly FirewallRule[],
): Program {
  return { key: `${kind}:${id}`, kind, id, adminUp, chains, ports, ingress, egress };
}

function byId(a: { id: string }, b: { id: string }): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** A rule's identity for the diff: its id, or its content when it has none. */
function ruleIdentity(rule: FirewallRule): string {
  return rule.id !== undefined ? `id:${rule.id}` : `content:${ruleContent(rule)}`;
}

const enabledLists = new WeakMap<readonly FirewallRule[], readonly FirewallRule[]>();

/** A policy's enabled rules: one list per parsed policy, so every router diffs the same objects. */
function enabledRules(list: readonly FirewallRule[]): readonly FirewallRule[] {
  let out = enabledLists.get(list);
  if (!out) enabledLists.set(list, (out = list.filter((r) => r.enabled)));
  return out;
}

/** Parsed rules are immutable and shared by every router a firewall is on: describe each once. */
const contents = new WeakMap<FirewallRule, string>();

function ruleContent(rule: FirewallRule): string {
  let text = contents.get(rule);
  if (text === undefined) contents.set(rule, (text = describeRule(rule)));
  return text;
}

function describeRule(rule: FirewallRule): string {
  const port = (p: FirewallRule["sourcePort"]) => (p ? `${p.min}:${p.max}` : "");
  return [
    rule.ipVersion,
    rule.protocolNumber ?? "",
    rule.source?.text ?? "",
    rule.destination?.text ?? "",
    port(rule.sourcePort),
    port(rule.destinationPort),
    rule.action,
  ].join("|");
}

/**
 * neutron-fwaas' changed + new + removed rules (both versions of a changed one). A reorder changes
 * which rule decides, which neutron-fwaas overlooks: then every rule that kept its place in neither
 * list counts too.
 */
function changedRules(before: readonly FirewallRule[], after: readonly FirewallRule[]): readonly FirewallRule[] {
  // The same update reaches every router with the same two lists: diff them once.
  let byAfter = changes.get(before);
  if (!byAfter) changes.set(before, (byAfter = new WeakMap()));
  let out = byAfter.get(after);
  if (!out) byAfter.set(after, (out = diffRules(before, after)));
  return out;
}

const changes = new WeakMap<readonly FirewallRule[], WeakMap<readonly FirewallRule[], readonly FirewallRule[]>>();

function diffRules(before: readonly FirewallRule[], after: readonly FirewallRule[]): FirewallRule[] {
  const old = new Map(before.map((r) => [ruleIdentity(r), r]));
  const now = new Map(after.map((r) => [ruleIdentity(r), r]));
  const out: FirewallRule[] = [];
  for (const [id, r] of now) {
    const o = old.get(id);
    if (!o) out.push(r);
    else if (ruleContent(o) !== ruleContent(r)) out.push(o, r);
  }
  for (const [id, r] of old) if (!now.has(id)) out.push(r);
  const keptBefore = [...old.keys()].filter((id) => now.has(id));
  const keptAfter = [...now.keys()].filter((id) => old.has(id));
  if (keptBefore.some((id, i) => keptAfter[i] !== id)) {
    for (const id of keptAfter) if (keptBefore.indexOf(id) !== keptAfter.indexOf(id)) out.push(now.get(id)!);
  }
  return out;
}

function filterKey(f: ConntrackFilter): string {
  const port = (p: ConntrackFilter["sourcePort"]) => (p ? `${p.min}:${p.max}` : "");
  return [f.family, f.protocolNumber ?? "", port(f.sourcePort), port(f.destinationPort), f.source?.text ?? "", f.destination?.text ?? ""].join("|");
}
