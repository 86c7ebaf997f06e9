/**
 * Neutron's `IptablesFirewallDriver` (and its OVS-hybrid variant), on Chainwarden's IptablesManager.
 *
 * Model. The driver owns, in one stateless manager (filter + raw, wrap name `neutron-linuxbri` or
 * `neutron-openvswi`):
 * - per filtered port, chains `i<dev>` (to the VM), `o<dev>` (from the VM) and `s<dev>` (allowed
 *   source IP/MAC pairs) per IP family, with exactly the rules Neutron writes (see `port-rules.ts`);
 * - per filtered port, its jumps in the shared chains: wrapped FORWARD → `sg-chain` (physdev in/out),
 *   `sg-chain` → `i…`/`o…`, INPUT → `o…`, and the raw-table rules that put the port's traffic in its
 *   conntrack zone (or out of conntrack for stateless groups);
 * - `sg-chain` ending in ACCEPT, `sg-fallback` (DROP), and ACCEPT jumps for trusted devices and for
 *   ports with port security disabled, in Neutron's order (trusted first, then those ports);
 * - per *held* port (its input is invalid, or its apply failed): what the kernel has of it, taken
 *   over as it is (its chains, and the shared rules that name its tap or jump to its chains), or,
 *   where the kernel has nothing of it, chains that send everything to `sg-fallback`, with the same
 *   jumps as a filtered port: a port the agent cannot filter correctly is filtered closed, never
 *   left to the FORWARD policy (Neutron's own fallback is the model);
 * - while the input is incomplete (`keepUnknown`), whatever else the kernel has of this layout.
 *
 * Goals. Neutron rebuilds every port's chains on every change (its update of 200 ports at 2,000 took
 * 83 s). Here a change costs what it touches: each port remembers what it programmed, an update
 * rewrites only the chains whose rule lists differ, and an unchanged port is skipped by fingerprint.
 * The manager then sends only the changed chains.
 *
 * Invariants.
 * - The manager holds exactly what `filtered`, `unfiltered` and `trusted` describe; every shared rule of
 *   a port carries the tag `port:<id>` so it leaves with the port and nothing else does.
 * - Ports added in one batch are programmed in device order, as Neutron sorts them; ports added later
 *   are appended (Neutron re-sorts all ports on every change; the order has no effect on traffic
 *   because each rule matches one device — see the README).
 * - Nothing here runs a process. Conntrack entries that a change makes illegal are queued
 *   (`takeConntrackDeletions`) for after the apply; ipsets the rules name are listed by `ipsetsInUse`.
 */
import { kernelChainName, type IptablesManager, type IptablesTable } from "@chainwarden/core";
import { ConntrackZones } from "./conntrack-zones.js";
import { deletionsByRemoteIps, type ConntrackDeletion } from "./conntrack-cleanup.js";
import type { FirewallFlavor, PortNaming } from "./firewall-flavor.js";
import { ipsetsNamed, kernelPortRules, type KernelCopy } from "./kernel-port-rules.js";
import { ipsetName, trustedDeviceId, type PortFilterResource } from "./l2-state.js";
import { COMMENTS, ETHERTYPES, type Ethertype, type IpVersion, SG_CHAIN, SG_FALLBACK_CHAIN } from "./neutron-constants.js";
import { buildPortRules, conntrackRules, physdevMatch, type PortRules, type RuleSpec } from "./port-rules.js";
import { remoteIdOf, ruleKey, type SecurityGroupRule } from "./security-group-rule.js";

/** Options of `IptablesFirewallDriver`: its manager, the layout, ipsets or not, and the namespace's conntrack zones. */
export interface IptablesFirewallDriverOptions {
  /** A stateless manager (`stateless: true`), the driver's alone. */
  readonly manager: IptablesManager;
  readonly flavor: FirewallFlavor;
  /** Neutron `enable_ipset`: remote groups as `-m set` matches instead of one rule per member. */
  readonly enableIpset: boolean;
  /** Shared across the driver's life in a namespace (zones outlive managers). */
  readonly zones?: ConntrackZones;
}

interface ProgrammedPort {
  readonly resource: PortFilterResource;
  readonly tap: string;
  readonly rules: PortRules;
  readonly zone: number;
  /** The raw PREROUTING rules (both families). */
  readonly raw: readonly string[];
}

/** A set a rule names, with the members it must hold. */
export interface IpsetUse {
  readonly name: string;
  readonly ethertype: Ethertype;
  readonly members: readonly string[];
}

/** What one sync did to the ports: how many were added, updated, removed, left unchanged (same fingerprint), and newly held. */
export interface SyncSummary {
  readonly added: number;
  readonly updated: number;
  readonly removed: number;
  readonly unchanged: number;
  /** Ports held as the kernel has them (or closed) by this sync. */
  readonly held: number;
}

/** A port to keep as the kernel has it (see the class comment). */
export interface HeldPortSpec {
  readonly id: string;
  /** What names its tap and chains. */
  readonly naming: PortNaming;
}

/** What the driver put in the manager for a held port. */
interface HeldPort {
  readonly tap: string;
  /** Per family, the chains added (names as given to `addChain`), in the order added. */
  readonly chains: Record<IpVersion, string[]>;
  /** Per family: taken from the kernel, or closed (the kernel had nothing of it). */
  readonly modes: Record<IpVersion, "kernel" | "closed">;
  /** Sets the rules taken from the kernel name: they must outlive the apply. */
  readonly ipsets: Set<string>;
}

/** What `syncByFamily` calls around and while writing each family's tables. */
export interface FamilyHooks {
  /** Before the family's tables are written; the driver's own state is complete (`first`: the first family). */
  before?(v: IpVersion, summary: SyncSummary, first: boolean): Promise<void> | void;
  /** A port's chains of the family are written (names as given to `addChain`, jump targets first). */
  chainsWritten?(v: IpVersion, chains: readonly string[]): void;
  /** Every few writes: awaited, so the event loop runs (a restore stream's pipe is fed meanwhile). */
  pause?(v: IpVersion): Promise<void>;
  /** After the family's tables are written (`last`: no family follows). */
  after?(v: IpVersion, last: boolean): Promise<void> | void;
}

/**
 * The filter chains every filtered port adds a jump to (`top` rules, in port order): a cold add's
 * caller can stream them as they grow (`IptablesManager.streamGrowth`).
 */
export const SHARED_FILTER_CHAINS: readonly string[] = [SG_CHAIN, "FORWARD", "INPUT"];

/** Writes between two `pause` calls: about 20 ports, ~64 kB of restore input, one pipe's worth. */
const PAUSE_EVERY = 48;

const ACCEPT_TAG = "accept-jumps";
const KEPT_TAG = "kept-while-incomplete";
const portTag = (id: string) => `port:${id}`;
/** How rules name the resource they belong to (`kind/id`): the agent holds and retries a port whose rule a restore refuses. */
const portResource = (id: string) => `port/${id}`;

/** The shared chains a port has rules in, per table. */
const SHARED_CHAINS = { filter: ["FORWARD", SG_CHAIN, "INPUT"], raw: ["PREROUTING"] } as const;

/**
 * Neutron's `IptablesFirewallDriver` (and `OVSHybridIptablesFirewallDriver`) on one stateless `IptablesManager`: the manager holds exactly
 * the filtered, unfiltered and trusted ports and the held ports' kept or closed chains, each change rewriting only what differs. It runs
 * no process: it queues the conntrack deletions a change calls for (`takeConntrackDeletions`, for after the apply) and lists the
 * ipsets its rules name (`ipsetsInUse`, to exist before it).
 */
export class IptablesFirewallDriver {
  readonly manager: IptablesManager;
  readonly flavor: FirewallFlavor;
  readonly enableIpset: boolean;
  readonly zones: ConntrackZones;
  private readonly filtered = new Map<string, ProgrammedPort>();
  /** Ports with port security disabled; a Map keeps Neutron's dict order (an update keeps its place). */
  private readonly unfiltered = new Map<string, PortFilterResource>();
  private trusted: string[] = [];
  private readonly held = new Map<string, HeldPort>();
  /** Sets named by rules kept while the input was incomplete. */
  private readonly setsKeptUnknown = new Set<string>();
  private deletions: ConntrackDeletion[] = [];
  private readonly families: IpVersion[];
  /** Inside `syncByFamily`: the table writes, queued to run family by family. */
  private queued: ((v: IpVersion) => void)[] | undefined;
  private hooks: FamilyHooks | undefined;
  /** Inside `syncByFamily`: the port chain rules queued per family (which family goes first). */
  private queuedRules: Record<IpVersion, number> | undefined;

  constructor(options: IptablesFirewallDriverOptions) {
    this.manager = options.manager;
    this.flavor = options.flavor;
    this.enableIpset = options.enableIpset;
    this.zones = options.zones ?? new ConntrackZones();
    this.families = this.manager.useIpv6 ? [4, 6] : [4];
    for (const v of this.families) {
      const filter = this.filter(v);
      filter.addChain(SG_FALLBACK_CHAIN);
      filter.addRule(SG_FALLBACK_CHAIN, "-j DROP", { comment: COMMENTS.UNMATCH_DROP });
      filter.addChain(SG_CHAIN);
      // The ports' jumps are `top` rules, so this stays last whatever order ports come in.
      filter.addRule(SG_CHAIN, "-j ACCEPT");
    }
  }

  // ---- Neutron's port lifecycle ----------------------------------------------------------------

  /** Starts filtering a port (or updates it). Neutron's `prepare_port_filter`. */
  preparePortFilter(resource: PortFilterResource): void {
    this.setPorts([resource]);
  }

  /** Neutron's `update_port_filter`; an unknown port is prepared. */
  updatePortFilter(resource: PortFilterResource): void {
    this.setPorts([resource]);
  }

  /** Stops filtering a port: its chains, its jumps and its zone rules go, and its conntrack entries are queued for deletion. */
  removePortFilter(portId: string): boolean {
    if (this.filtered.has(portId)) {
      this.removeFiltered(portId, true);
      return true;
    }
    if (this.unfiltered.delete(portId)) {
      this.renderAcceptJumps();
      return true;
    }
    return false;
  }

  /** Neutron's `process_trusted_ports`: ACCEPT jumps for devices that are not filtered (DHCP, router ports). */
  processTrustedPorts(devices: readonly string[]): void {
    const add = devices.filter((d) => !this.trusted.includes(d));
    if (add.length === 0) return;
    this.trusted.push(...add);
    this.renderAcceptJumps();
  }

  /** Neutron's `remove_trusted_ports`: the devices' ACCEPT jumps go (unknown devices are ignored); the other trusted devices keep their order. */
  removeTrustedPorts(devices: readonly string[]): void {
    const next = this.trusted.filter((d) => !devices.includes(d));
    if (next.length === this.trusted.length) return;
    this.trusted = next;
    this.renderAcceptJumps();
  }

  /**
   * Makes the manager hold exactly these ports and trusted devices. Unchanged ports (same fingerprint)
   * are not touched; new and changed ones are programmed in device order, as Neutron sorts them.
   */
  sync(ports: Iterable<PortFilterResource>, trustedDevices: readonly string[], held: readonly HeldPortSpec[] = [], kernel?: KernelCopy): SyncSummary {
    const desired = new Map<string, PortFilterResource>();
    for (const p of ports) desired.set(p.port.id, p);
    const heldIds = new Set(held.map((h) => h.id));
    let removed = 0;
    for (const id of [...this.filtered.keys(), ...this.unfiltered.keys()]) {
      // A held port this driver already programs keeps what it has: that is what the kernel has.
      if (!desired.has(id) && !heldIds.has(id)) {
        this.removePortFilter(id);
        removed++;
      }
    }
    // Held no longer: a valid version takes the names over below, or the port is gone.
    for (const id of [...this.held.keys()]) {
      if (heldIds.has(id)) continue;
      this.releaseHeld(id);
      if (!desired.has(id)) removed++;
    }
    let newlyHeld = 0;
    for (const h of held) {
      if (this.filtered.has(h.id) || this.unfiltered.has(h.id) || this.held.has(h.id)) continue;
      this.holdPort(h, kernel);
      newlyHeld++;
    }
    const changed: PortFilterResource[] = [];
    let added = 0;
    for (const r of desired.values()) {
      const had = this.filtered.get(r.port.id)?.resource ?? this.unfiltered.get(r.port.id);
      if (had?.fingerprint === r.fingerprint) continue;
      if (!had) added++;
      changed.push(r);
    }
    this.setPorts(changed);
    const gone = this.trusted.filter((d) => !trustedDevices.includes(d));
    if (gone.length) this.removeTrustedPorts(gone);
    this.processTrustedPorts(trustedDevices);
    return { added, updated: changed.length - added, removed, unchanged: desired.size - changed.length, held: newlyHeld };
  }

  /**
   * While the input is incomplete: whatever the kernel has of this layout that the manager does not
   * (chains of ports the state may have lost, their rules in the shared chains) is taken over as
   * it is, so that nothing is removed. Call after `sync`.
   */
  async keepUnknown(): Promise<void> {
    const wrap = this.manager.wrapName;
    const shared = new Set([...SHARED_CHAINS.filter, ...SHARED_CHAINS.raw].map((c) => kernelChainName(wrap, c, true)));
    // A desired port's chains are as its input says; only chains no port has, and the shared ones.
    const kept = await this.manager.keepKernelState({ tag: KEPT_TAG, top: true, chain: (chain, declared) => !declared || shared.has(chain) });
    for (const rule of kept.rules) for (const set of ipsetsNamed(rule)) this.setsKeptUnknown.add(set);
  }

  /**
   * `sync`, with the tables written one family after the other, the family with fewer new rules
   * first, and `hooks` called around and while each is written. The caller can stream each port's
   * chains to the family's restore as they are written (`IptablesManager.openStream`) and start the
   * first family's restore in `after` (`applyEarly`) while the second is computed. The driver's
   * own state (ports, zones, queued conntrack deletions, `ipsetsInUse`) is complete before the
   * first `before`, and each family's tables end up exactly as `sync` leaves them: the writes of
   * one family never read the other's, and they run in the same order. Should `sync` throw (no
   * conntrack zone left) or a hook (an ipset that cannot be made), the writes queued and not yet
   * made are made before the error goes on, so the tables hold what the driver recorded.
   */
  async syncByFamily(ports: Iterable<PortFilterResource>, trustedDevices: readonly string[], hooks: FamilyHooks, held: readonly HeldPortSpec[] = [], kernel?: KernelCopy): Promise<SyncSummary> {
    if (this.queued) throw new Error("syncByFamily is already running for this driver");
    const queued: ((v: IpVersion) => void)[] = [];
    const queuedRules = { 4: 0, 6: 0 };
    this.queued = queued;
    this.queuedRules = queuedRules;
    let summary: SyncSummary;
    try {
      summary = this.sync(ports, trustedDevices, held, kernel);
    } catch (err) {
      // As `sync` would have left it (what it recorded is written), then the error.
      this.queued = undefined;
      for (const v of this.families) for (const write of queued) write(v);
      throw err;
    } finally {
      this.queued = undefined;
      this.queuedRules = undefined;
    }
    this.hooks = hooks;
    // The family with less to write first: its restore is done sooner, and the other family's
    // rules, computed meanwhile, wait for theirs.
    // Security group rules are mostly IPv4, so that is usually IPv6 first.
    const order = [...this.families].sort((a, b) => queuedRules[a] - queuedRules[b]);
    const written = new Map<IpVersion, number>(order.map((v) => [v, 0]));
    try {
      for (const [i, v] of order.entries()) {
        await hooks.before?.(v, summary, i === 0);
        for (let w = 0; w < queued.length; w++) {
          // Counted first: a write that throws half-way is not made twice.
          written.set(v, w + 1);
          queued[w]!(v);
          if (hooks.pause && w % PAUSE_EVERY === PAUSE_EVERY - 1) await hooks.pause(v);
        }
        await hooks.after?.(v, i === order.length - 1);
      }
    } catch (err) {
      // A hook failed (an ipset could not be made): the tables still get what the driver recorded.
      this.hooks = undefined;
      for (const v of order) for (let w = written.get(v)!; w < queued.length; w++) queued[w]!(v);
      throw err;
    } finally {
      this.hooks = undefined;
    }
    return summary;
  }

  // ---- what the caller needs around the apply ------------------------------------------------

  /** Conntrack deletions queued since the last call (run them after the apply). */
  takeConntrackDeletions(): ConntrackDeletion[] {
    const out = this.deletions;
    this.deletions = [];
    return out;
  }

  /** The ipsets the programmed rules name (empty unless `enableIpset`). */
  ipsetsInUse(): Map<string, IpsetUse> {
    const out = new Map<string, IpsetUse>();
    if (!this.enableIpset) return out;
    for (const { resource } of this.filtered.values()) {
      for (const rule of allRules(resource)) {
        const remote = remoteIdOf(rule);
        // Without IPv6 tables no rule names an IPv6 set.
        if (remote === undefined || (rule.ethertype === "IPv6" && !this.families.includes(6))) continue;
        const members = resource.members[remote]?.[rule.ethertype];
        if (members === undefined) continue;
        const name = ipsetName(remote, rule.ethertype);
        out.set(name, { name, ethertype: rule.ethertype, members });
      }
    }
    return out;
  }

  /**
   * Sets that rules taken over from the kernel name (held ports, input kept while incomplete): their
   * members are the kernel's, so they are neither refreshed nor destroyed.
   */
  keptIpsets(): Set<string> {
    const out = new Set(this.setsKeptUnknown);
    for (const h of this.held.values()) for (const set of h.ipsets) out.add(set);
    return out;
  }

  /** Whether the driver programs this port already (filtered, unfiltered or held). */
  programs(id: string): boolean {
    return this.filtered.has(id) || this.unfiltered.has(id) || this.held.has(id);
  }

  /** Ports held as the kernel has them (or closed), by id: `kernel` or `closed` per family. */
  get heldPorts(): ReadonlyMap<string, Readonly<Record<IpVersion, "kernel" | "closed">>> {
    return new Map([...this.held].map(([id, h]) => [id, h.modes]));
  }

  /** The filtered ports whose rules name one of these sets (to tell which ports an ipset failure is for). */
  portsUsingIpsets(sets: ReadonlySet<string>): string[] {
    const out: string[] = [];
    for (const [id, { resource }] of this.filtered) {
      for (const rule of allRules(resource)) {
        const remote = remoteIdOf(rule);
        if (remote !== undefined && sets.has(ipsetName(remote, rule.ethertype))) {
          out.push(id);
          break;
        }
      }
    }
    return out;
  }

  /** Port ids currently filtered (with chains) and those accepted because port security is off. */
  get filteredPorts(): ReadonlySet<string> {
    return new Set(this.filtered.keys());
  }

  get unfilteredPorts(): ReadonlySet<string> {
    return new Set(this.unfiltered.keys());
  }

  get trustedDevices(): readonly string[] {
    return [...this.trusted];
  }

  /** The zone a programmed port's traffic is in. */
  zoneOf(portId: string): number | undefined {
    return this.filtered.get(portId)?.zone;
  }

  // ---- internals -----------------------------------------------------------------------------

  private filter(v: IpVersion): IptablesTable {
    return this.manager.table(v, "filter");
  }

  private raw(v: IpVersion): IptablesTable {
    return this.manager.table(v, "raw");
  }

  /** Runs a table write for every family now, or queues it when `syncByFamily` runs them family by family. */
  private eachFamily(write: (v: IpVersion) => void): void {
    if (this.queued) this.queued.push(write);
    else for (const v of this.families) write(v);
  }

  private setPorts(resources: readonly PortFilterResource[]): void {
    const on = resources
      .filter((r) => r.port.port_security_enabled)
      .sort((a, b) => cmp(this.flavor.tapDevice(a.port), this.flavor.tapDevice(b.port)));
    let acceptChanged = false;
    for (const r of resources) {
      if (r.port.port_security_enabled) continue;
      if (this.filtered.has(r.port.id)) this.removeFiltered(r.port.id, false);
      this.unfiltered.set(r.port.id, r);
      acceptChanged = true;
    }
    for (const r of on) {
      if (this.unfiltered.delete(r.port.id)) acceptChanged = true;
      this.setFiltered(r);
    }
    if (acceptChanged) this.renderAcceptJumps();
  }

  private setFiltered(resource: PortFilterResource): void {
    const id = resource.port.id;
    let prev = this.filtered.get(id);
    const rules = buildPortRules(resource, { flavor: this.flavor, enableIpset: this.enableIpset });
    const tap = this.flavor.tapDevice(resource.port);
    if (prev && (prev.tap !== tap || prev.rules.chains.ingress !== rules.chains.ingress)) {
      // The port moved to another device: start over under the new names.
      this.removeFiltered(id, false);
      prev = undefined;
    }
    const zone = this.zones.allocate(this.flavor.zoneKey(resource.port), () => [...this.filtered.values()].map((p) => this.flavor.zoneKey(p.resource.port)));
    const raw = conntrackRules(this.flavor, resource.port, rules.stateful, zone);

    this.eachFamily((v) => this.programChains(v, rules, prev?.rules, portResource(id)));
    if (this.queuedRules) {
      for (const v of this.families) {
        const f = rules.families[v];
        this.queuedRules[v] += f.ingress.length + f.egress.length + (f.spoof?.length ?? 0);
      }
    }
    const sharedChanged = !prev || prev.raw.join("\n") !== raw.join("\n");
    if (sharedChanged) {
      if (prev) this.clearShared(id);
      this.addShared(id, tap, rules, raw);
    }
    if (prev) this.queueUpdateDeletions(prev, resource, zone);
    this.filtered.set(id, { resource, tap, rules, zone, raw });
  }

  /** Writes a port's chains of one family, rewriting only those whose rule lists changed. */
  private programChains(v: IpVersion, rules: PortRules, prev: PortRules | undefined, resource: string): void {
    const filter = this.filter(v);
    const now = rules.families[v];
    const before = prev?.families[v];
    const write = (chain: string, specs: readonly RuleSpec[], old: readonly RuleSpec[] | undefined) => {
      if (old !== undefined && sameSpecs(specs, old)) return;
      if (old === undefined) filter.addChain(chain, { resource });
      else filter.emptyChain(chain);
      for (const s of specs) filter.addRule(chain, s.rule, s.comment === undefined ? { resource } : { comment: s.comment, resource });
    };
    // The spoof chain exists before the egress chain jumps to it, and goes after the jump is gone.
    if (now.spoof) write(rules.chains.spoof, now.spoof, before?.spoof);
    write(rules.chains.ingress, now.ingress, before?.ingress);
    write(rules.chains.egress, now.egress, before?.egress);
    if (!now.spoof && before?.spoof) filter.removeChain(rules.chains.spoof);
    // The egress chain jumps to the spoof chain: that one goes first.
    this.hooks?.chainsWritten?.(v, now.spoof ? [rules.chains.spoof, rules.chains.ingress, rules.chains.egress] : [rules.chains.ingress, rules.chains.egress]);
  }

  private addShared(id: string, tap: string, rules: PortRules, raw: readonly string[]): void {
    const tag = portTag(id);
    const resource = portResource(id);
    const { ingress, egress } = rules.chains;
    this.eachFamily((v) => {
      const filter = this.filter(v);
      // Security-group jumps go before the ACCEPT jumps of trusted and unfiltered ports (Neutron: top).
      filter.addRule("FORWARD", `${physdevMatch(tap, "ingress")} -j $${SG_CHAIN}`, { top: true, tag, resource, comment: COMMENTS.VM_INT_SG });
      filter.addRule(SG_CHAIN, `${physdevMatch(tap, "ingress")} -j $${ingress}`, { top: true, tag, resource, comment: COMMENTS.SG_TO_VM_SG });
      filter.addRule("FORWARD", `${physdevMatch(tap, "egress")} -j $${SG_CHAIN}`, { top: true, tag, resource, comment: COMMENTS.VM_INT_SG });
      filter.addRule(SG_CHAIN, `${physdevMatch(tap, "egress")} -j $${egress}`, { top: true, tag, resource, comment: COMMENTS.SG_TO_VM_SG });
      filter.addRule("INPUT", `${physdevMatch(tap, "egress")} -j $${egress}`, { top: true, tag, resource, comment: COMMENTS.INPUT_TO_SG });
      const rawTable = this.raw(v);
      for (const r of raw) rawTable.addRule("PREROUTING", r, { tag, resource });
    });
  }

  private clearShared(id: string): void {
    const tag = portTag(id);
    this.eachFamily((v) => {
      this.filter(v).clearRulesByTag(tag);
      this.raw(v).clearRulesByTag(tag);
    });
  }

  /**
   * Keeps a port as the kernel has it, family by family: its chains and its shared rules taken over
   * as they are; where the kernel has nothing of it, closed: its chains send everything to
   * `sg-fallback` (DROP), reached by the jumps a filtered port has.
   */
  private holdPort(spec: HeldPortSpec, kernel: KernelCopy | undefined): void {
    const wrap = this.manager.wrapName;
    const tap = this.flavor.tapDevice(spec.naming);
    const ingress = this.flavor.chainName(spec.naming, "ingress");
    const egress = this.flavor.chainName(spec.naming, "egress");
    const spoof = this.flavor.chainName(spec.naming, "spoof");
    const k = (name: string) => kernelChainName(wrap, name, true);
    const short = new Map([ingress, egress, spoof, ...SHARED_CHAINS.filter, ...SHARED_CHAINS.raw].map((n) => [k(n), n]));
    const names = { tap, chains: [k(ingress), k(egress), k(spoof)], commentName: this.flavor.commentName(spec.naming) };
    const shared = { filter: SHARED_CHAINS.filter.map(k), raw: SHARED_CHAINS.raw.map(k) };
    const tag = portTag(spec.id);
    const resource = portResource(spec.id);
    const held: HeldPort = { tap, chains: { 4: [], 6: [] }, modes: { 4: "closed", 6: "closed" }, ipsets: new Set() };
    this.held.set(spec.id, held);
    this.eachFamily((v) => {
      const filter = this.filter(v);
      const found = kernel === undefined ? undefined : kernelPortRules(kernel, v, names, shared);
      if (found) {
        held.modes[v] = "kernel";
        for (const chain of found.chains.keys()) {
          filter.addChain(short.get(chain)!, { resource });
          held.chains[v].push(short.get(chain)!);
        }
        for (const [chain, rules] of found.chains) {
          for (const rule of rules) {
            filter.addRule(short.get(chain)!, rule, { resource });
            for (const set of ipsetsNamed(rule)) held.ipsets.add(set);
          }
        }
        for (const { table, chain, rule } of found.shared) {
          (table === "filter" ? filter : this.raw(v)).addRule(short.get(chain)!, rule, { top: table === "filter", tag, resource });
          for (const set of ipsetsNamed(rule)) held.ipsets.add(set);
        }
        return;
      }
      for (const chain of [ingress, egress]) {
        filter.addChain(chain, { resource });
        filter.addRule(chain, `-j $${SG_FALLBACK_CHAIN}`, { comment: COMMENTS.UNMATCHED, resource });
        held.chains[v].push(chain);
      }
      filter.addRule("FORWARD", `${physdevMatch(tap, "ingress")} -j $${SG_CHAIN}`, { top: true, tag, resource, comment: COMMENTS.VM_INT_SG });
      filter.addRule(SG_CHAIN, `${physdevMatch(tap, "ingress")} -j $${ingress}`, { top: true, tag, resource, comment: COMMENTS.SG_TO_VM_SG });
      filter.addRule("FORWARD", `${physdevMatch(tap, "egress")} -j $${SG_CHAIN}`, { top: true, tag, resource, comment: COMMENTS.VM_INT_SG });
      filter.addRule(SG_CHAIN, `${physdevMatch(tap, "egress")} -j $${egress}`, { top: true, tag, resource, comment: COMMENTS.SG_TO_VM_SG });
      filter.addRule("INPUT", `${physdevMatch(tap, "egress")} -j $${egress}`, { top: true, tag, resource, comment: COMMENTS.INPUT_TO_SG });
    });
  }

  /** Undoes `holdPort`: its shared rules and its chains go (a valid version may take the names over). */
  private releaseHeld(id: string): void {
    const held = this.held.get(id);
    if (!held) return;
    const tag = portTag(id);
    this.eachFamily((v) => {
      this.filter(v).clearRulesByTag(tag);
      this.raw(v).clearRulesByTag(tag);
      for (const chain of [...held.chains[v]].reverse()) this.filter(v).removeChain(chain);
    });
    this.held.delete(id);
  }

  private removeFiltered(id: string, queueDeletions: boolean): void {
    const prog = this.filtered.get(id);
    if (!prog) return;
    this.clearShared(id);
    const { ingress, egress, spoof } = prog.rules.chains;
    this.eachFamily((v) => {
      const filter = this.filter(v);
      filter.removeChain(egress);
      filter.removeChain(ingress);
      if (prog.rules.families[v].spoof) filter.removeChain(spoof);
    });
    this.filtered.delete(id);
    // Neutron's _remove_conntrack_entries_from_port_deleted: everything to and from the port's addresses.
    if (queueDeletions) {
      for (const et of ETHERTYPES) this.deletions.push(...deletionsByRemoteIps(et, prog.resource.port.fixed_ips, prog.zone));
    }
  }

  /**
   * Conntrack entries an update makes illegal (Neutron's `_remove_conntrack_entries_from_sg_updates`):
   * - a rule deleted from a group the port is still in: the port's entries of that rule's direction,
   *   family and protocol;
   * - a group the port left: all of the port's entries;
   * - a member removed from a remote group the port's rules name: entries between the port and it.
   */
  private queueUpdateDeletions(prev: ProgrammedPort, next: PortFilterResource, zone: number): void {
    const ips = next.port.fixed_ips;
    const before = prev.resource;
    const stillIn = next.port.security_groups.filter((sg) => before.port.security_groups.includes(sg));
    for (const sg of stillIn) {
      const now = new Set((next.security_groups[sg] ?? []).map(ruleKey));
      for (const rule of before.security_groups[sg] ?? []) {
        if (now.has(ruleKey(rule))) continue;
        this.deletions.push({ ethertype: rule.ethertype, direction: rule.direction, protocol: rule.conntrack_protocol, deviceIps: ips, zone });
      }
    }
    if (before.port.security_groups.some((sg) => !next.port.security_groups.includes(sg))) {
      for (const et of ETHERTYPES) this.deletions.push(...deletionsByRemoteIps(et, ips, zone));
    }
    const remotes = new Set<string>();
    for (const rule of allRules(next)) if (remoteIdOf(rule) !== undefined) remotes.add(remoteIdOf(rule)!);
    for (const remote of remotes) {
      for (const et of ETHERTYPES) {
        const was = before.members[remote]?.[et] ?? [];
        const is = new Set(next.members[remote]?.[et] ?? []);
        const gone = was.filter((m) => !is.has(m));
        if (gone.length) this.deletions.push(...deletionsByRemoteIps(et, ips, zone, gone));
      }
    }
  }

  /**
   * ACCEPT jumps of trusted devices and of ports without port security, rewritten as one group so
   * their order is Neutron's after any change: trusted devices in the order they were trusted, then
   * the unfiltered ports in the order they were first seen.
   */
  private renderAcceptJumps(): void {
    // As they are now: a queued write runs after later changes to these lists.
    const trusted = [...this.trusted];
    const unfiltered = [...this.unfiltered.values()];
    this.eachFamily((v) => {
      const filter = this.filter(v);
      filter.clearRulesByTag(ACCEPT_TAG);
      for (const device of trusted) {
        const tap = this.flavor.tapDevice({ device });
        for (const dir of ["ingress", "egress"] as const) {
          filter.addRule("FORWARD", `${physdevMatch(tap, dir)} -j ACCEPT`, { tag: ACCEPT_TAG, comment: COMMENTS.TRUSTED_ACCEPT, resource: portResource(trustedDeviceId(device)) });
        }
      }
      for (const r of unfiltered) {
        const tap = this.flavor.tapDevice(r.port);
        const resource = portResource(r.port.id);
        filter.addRule("FORWARD", `${physdevMatch(tap, "ingress")} -j ACCEPT`, { tag: ACCEPT_TAG, comment: COMMENTS.PORT_SEC_ACCEPT, resource });
        filter.addRule("FORWARD", `${physdevMatch(tap, "egress")} -j ACCEPT`, { tag: ACCEPT_TAG, comment: COMMENTS.PORT_SEC_ACCEPT, resource });
        filter.addRule("INPUT", `${physdevMatch(tap, "egress")} -j ACCEPT`, { tag: ACCEPT_TAG, comment: COMMENTS.PORT_SEC_ACCEPT, resource });
      }
    });
  }
}

/** The port's own rules and its groups' rules. */
function allRules(resource: PortFilterResource): SecurityGroupRule[] {
  const out = [...resource.port.security_group_rules];
  for (const sg of resource.port.security_groups) out.push(...(resource.security_groups[sg] ?? []));
  return out;
}

function sameSpecs(a: readonly RuleSpec[], b: readonly RuleSpec[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i]!.rule !== b[i]!.rule || a[i]!.comment !== b[i]!.comment) return false;
  return true;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
