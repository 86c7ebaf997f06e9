/**
 * Everything the security-group firewall keeps for one network namespace (the l2 agent's bridge
 * namespace, or the host's own), around the driver:
 *
 * - the driver of each IptablesManager (a fresh manager — after a failure the agent starts over from
 *   the kernel — gets a fresh driver that rebuilds every port);
 * - the conntrack zones, recovered once from the raw table and kept for the namespace's life, so zone
 *   numbers survive manager resets and agent restarts;
 * - the ipsets, and the conntrack deletions queued by changes until an apply has succeeded;
 * - the device check: a port (or trusted device) is filtered once its tap exists (`ip -o link show`
 *   through the runner), and stops being filtered when its tap is gone; with a waker from the
 *   agent, a device monitor (`DeviceWatch`) wakes the namespace as soon as a tap it cares about
 *   appears or goes.
 *
 * Order of one change: `reconcile` (rules into the manager, sets created/refreshed) → the caller
 * applies the manager → `afterApply` (unused sets destroyed, conntrack entries deleted).
 */
import { NamespaceGoneError, silentLogger, type CoreLogger, type ConntrackRunner, type IptablesManager, type IptablesRunner, type IpRunner, type IpsetRunner } from "@chainwarden/core";
import { conntrackCommands, type ConntrackDeletion } from "./conntrack-cleanup.js";
import { deletionMayMatch, parseConntrackListing } from "./conntrack-listing.js";
import { ConntrackZones } from "./conntrack-zones.js";
import { DeviceWatch, type LinkEvent } from "./device-watch.js";
import type { FirewallFlavor } from "./firewall-flavor.js";
import { IpsetManager } from "./ipset-manager.js";
import { IptablesFirewallDriver, SHARED_FILTER_CHAINS, type HeldPortSpec, type SyncSummary } from "./iptables-firewall-driver.js";
import { IpsetError } from "./ipset-error.js";
import type { KernelCopy } from "./kernel-port-rules.js";
import type { L2Resource, PortFilterResource } from "./l2-state.js";
import type { IpVersion } from "./neutron-constants.js";

/** The tools a namespace's firewall runs. */
export type FirewallRunner = IptablesRunner & IpsetRunner & ConntrackRunner & IpRunner;

/** Options of `FirewallNamespace`: the tools and namespace (the host's when undefined), the firewall layout, and whether remote groups use ipsets. */
export interface FirewallNamespaceOptions {
  /** iptables for the rules, ipset for remote groups, conntrack for cleanups, ip for the devices. */
  readonly runner: FirewallRunner;
  readonly namespace: string | undefined;
  readonly flavor: FirewallFlavor;
  readonly enableIpset: boolean;
  /** Filter a port only once its tap device exists (default true). */
  readonly waitForDevices?: boolean;
  readonly logger?: CoreLogger;
  /** Conntrack deletions run this many at a time (Neutron runs 8 workers). */
  readonly conntrackConcurrency?: number;
}

/**
 * What `FirewallNamespace.reconcile` did: the driver's counts, the ports still waiting for their device, the sets changed before the apply,
 * the held ports and how each is kept, and (dry runs) the ipset plan.
 */
export interface NamespaceReconcileResult extends SyncSummary {
  /** Ports (ids) and trusted devices whose device does not exist yet, with that device. */
  readonly waitingForDevice: readonly string[];
  readonly waitingDevices: ReadonlyMap<string, string>;
  /** Sets created or refreshed before the apply. */
  readonly ipsetsChanged: readonly string[];
  /** The held ports, and per family whether they are kept as the kernel has them or closed. */
  readonly heldPorts: ReadonlyMap<string, Readonly<Record<IpVersion, "kernel" | "closed">>>;
  /** Dry runs: the sets an apply would create, and destroy after it. */
  readonly ipsetPlan?: { readonly create: readonly string[]; readonly destroy: readonly string[] };
}

/** Options of one `FirewallNamespace.reconcile`; by default a live, complete reconcile without a device monitor. */
export interface NamespaceReconcileOptions {
  readonly dryRun?: boolean;
  /** The agent's waker: with it (and `waitForDevices`, not a dry run) a device monitor runs and calls it when a tap of a wanted port or trusted device comes or goes. */
  readonly wake?: (() => void) | undefined;
  /**
   * Ids to keep as the kernel has them (`ReconcileRequest.held`): stand-ins of invalid ports and
   * ports whose apply failed. They are never left unfiltered: what the kernel has of them is taken
   * over, and where it has nothing, they are filtered closed.
   */
  readonly held?: ReadonlySet<string>;
  /** False while the input is incomplete: whatever else the kernel has of this layout is kept. */
  readonly complete?: boolean;
}

/** What `FirewallNamespace.afterApply` did after a successful apply: the unused ipsets it destroyed, and the conntrack deletions planned and run. */
export interface AfterApplyResult {
  readonly ipsetsDestroyed: readonly string[];
  /** The `conntrack -D` argument lists the change calls for (Neutron's commands, as it runs them). */
  readonly conntrack: readonly (readonly string[])[];
  /** Those of them that ran: the others could not match anything (`conntrack -L` of their zone said so). */
  readonly conntrackRun: readonly (readonly string[])[];
}

/**
 * Deletions in one zone from which the zone is listed first (see `liveDeletions`): the listing is
 * one walk of the conntrack table, and each deletion it spares is another.
 */
const LIST_FROM = 3;

/** New ports from which a reconcile streams their chains to the restore (a cold add, not a port or two). */
const STREAM_MIN_PORTS = 64;

/**
 * The security-group firewall of one network namespace around its driver: per-manager drivers, conntrack zones kept for the namespace's life,
 * ipsets, device checks, and the work after an apply. A change is `reconcile` → the caller applies the manager → `afterApply`.
 */
export class FirewallNamespace {
  readonly namespace: string | undefined;
  readonly ipsets: IpsetManager;
  private readonly runner: FirewallRunner;
  private readonly flavor: FirewallFlavor;
  private readonly enableIpset: boolean;
  private readonly waitForDevices: boolean;
  private readonly logger: CoreLogger;
  private readonly concurrency: number;
  private readonly drivers = new WeakMap<IptablesManager, IptablesFirewallDriver>();
  private zones: ConntrackZones | undefined;
  /** The driver of the last live (not dry-run) reconcile: what the kernel holds once applied. */
  private live: IptablesFirewallDriver | undefined;
  private pending: ConntrackDeletion[] = [];
  private readonly devices: DeviceWatch;
  /** What wakes the namespace when a device it cares about comes or goes (the latest reconcile's). */
  private wake: (() => void) | undefined;
  /** The taps of the desired ports and trusted devices, as of the latest device check. */
  private wanted = new Set<string>();
  /** Those of them present, as of the latest device check or monitor event. */
  private present = new Set<string>();
  private waiting = 0;

  constructor(options: FirewallNamespaceOptions) {
    this.runner = options.runner;
    this.namespace = options.namespace;
    this.flavor = options.flavor;
    this.enableIpset = options.enableIpset;
    this.waitForDevices = options.waitForDevices ?? true;
    this.logger = options.logger ?? silentLogger;
    this.concurrency = options.conntrackConcurrency ?? 8;
    this.ipsets = new IpsetManager({ runner: this.runner, namespace: this.namespace, logger: this.logger });
    this.devices = new DeviceWatch({ runner: this.runner, namespace: this.namespace, logger: this.logger, onEvent: (e) => this.deviceEvent(e) });
  }

  /** Ports and trusted devices whose tap did not exist at the last live reconcile. */
  get waitingForDevice(): number {
    return this.waiting;
  }

  /** Whether a device monitor runs for this namespace. */
  get watchingDevices(): boolean {
    return this.devices.running;
  }

  /** Stops the device monitor (the agent stops); the next reconcile with a waker starts it again. */
  stopWatching(): void {
    this.wake = undefined;
    this.devices.stop();
  }

  /** The driver that programs `manager` (created on first use). */
  async driverFor(manager: IptablesManager, dryRun = false): Promise<IptablesFirewallDriver> {
    let driver = this.drivers.get(manager);
    if (!driver) {
      const zones = await this.liveZones();
      // A dry run numbers zones in a copy, so it never shifts what the next live apply hands out.
      driver = new IptablesFirewallDriver({ manager, flavor: this.flavor, enableIpset: this.enableIpset, zones: dryRun ? zones.clone() : zones });
      this.drivers.set(manager, driver);
    }
    return driver;
  }

  /**
   * Puts the desired ports and trusted devices into the manager (already deferred by the caller) and,
   * unless `dryRun`, prepares the ipsets the rules will name. It may start restores itself: the first
   * family's of a large change once that family is written (`IptablesManager.applyEarly`), and, for
   * a cold add of 64+ ports, each family's as a stream fed port by port (`openStream`). The caller's
   * end of the deferred apply finishes them and sends the rest.
   */
  async reconcile(manager: IptablesManager, resources: Iterable<L2Resource>, options: NamespaceReconcileOptions = {}): Promise<NamespaceReconcileResult> {
    const dryRun = options.dryRun ?? false;
    const heldIds = options.held ?? new Set<string>();
    const complete = options.complete ?? true;
    const driver = await this.driverFor(manager, dryRun);
    if (this.waitForDevices && !dryRun && options.wake) {
      // Started before the device list is read, so that a tap appearing after the list was read
      // is reported (one that appears while the monitor subscribes is left to the poll).
      this.wake = options.wake;
      await this.devices.ensure();
    }
    const present = this.waitForDevices ? await this.presentDevices(dryRun) : undefined;
    const ports: PortFilterResource[] = [];
    const trusted: string[] = [];
    const held: HeldPortSpec[] = [];
    const waiting: string[] = [];
    const waitingDevices = new Map<string, string>();
    const wanted = new Set<string>();
    for (const r of resources) {
      if (r.type === "held_port") {
        held.push({ id: r.id, naming: { device: r.device } });
        continue;
      }
      // A held valid port (its apply failed) is kept like a stand-in; a held trusted device is not
      // trusted until it applies again (closed).
      if (r.type === "port" && heldIds.has(r.port.id)) {
        held.push({ id: r.port.id, naming: r.port });
        continue;
      }
      if (r.type === "trusted_device" && heldIds.has(`trusted_device:${r.device}`)) continue;
      const device = r.type === "port" ? r.port.device : r.device;
      const tap = this.flavor.tapDevice({ device });
      wanted.add(tap);
      if (present && !present.has(tap)) {
        const id = r.type === "port" ? r.port.id : device;
        waiting.push(id);
        waitingDevices.set(id, tap);
        continue;
      }
      if (r.type === "port") ports.push(r);
      else trusted.push(r.device);
    }
    // What the kernel has, for held ports this driver has not taken over yet and for incomplete input.
    const kernel = !complete || held.some((h) => !driver.programs(h.id)) ? await this.kernelCopy(manager) : undefined;
    // What the monitor compares its events with, from now on: a tap that appears while the rules
    // below are computed wakes the namespace again.
    if (present && !dryRun) {
      this.wanted = wanted;
      this.present = present;
      this.waiting = waiting.length;
    }
    let ipsetsChanged: string[] | undefined;
    let streaming = false;
    const ensureIpsets = async (): Promise<string[]> => {
      try {
        return await this.ipsets.ensure(driver.ipsetsInUse());
      } catch (err) {
        // The ports whose rules name a set that cannot be made are held and retried alone.
        if (err instanceof IpsetError) {
          const ports = driver.portsUsingIpsets(new Set(err.sets)).map((id) => `port/${id}`);
          throw new IpsetError(err.failures, { namespace: this.namespace, resources: ports });
        }
        throw err;
      }
    };
    if (!complete) {
      // Rare (the state has a problem no port owns): no streaming, the kernel's leftovers taken over.
      const summary = driver.sync(ports, trusted, held, kernel);
      await driver.keepUnknown();
      if (!dryRun) {
        this.live = driver;
        this.pending.push(...driver.takeConntrackDeletions());
        if (this.enableIpset) ipsetsChanged = await ensureIpsets();
      }
      return { ...summary, waitingForDevice: waiting, waitingDevices, heldPorts: driver.heldPorts, ipsetsChanged: ipsetsChanged ?? [], ...(dryRun ? { ipsetPlan: await this.ipsetPlan(driver) } : {}) };
    }
    // Family by family: a large change's first family starts its restore while the second is
    // computed, and a cold add of many ports streams each port's chains to its family's restore as
    // they are written (see IptablesManager.applyEarly and openStream). The sets the rules name
    // exist before either.
    const summary = await driver.syncByFamily(ports, trusted, {
      before: async (v, sync, first) => {
        if (dryRun) return;
        if (first && this.enableIpset) ipsetsChanged = await ensureIpsets();
        if (sync.added >= STREAM_MIN_PORTS) streaming = await manager.openStream(v, "filter");
      },
      chainsWritten: (v, chains) => {
        if (streaming) manager.streamChains(v, "filter", chains);
      },
      // The shared chains' jumps to the ports written so far go too, then one turn of the event
      // loop: the restore's pipe is fed (never waiting for the tool).
      pause: (v) => {
        if (!streaming) return Promise.resolve();
        manager.streamGrowth(v, "filter", SHARED_FILTER_CHAINS);
        return new Promise<void>((resolve) => setImmediate(resolve));
      },
      after: async (v, last) => {
        if (!dryRun && !last) await manager.applyEarly(v);
      },
    }, held, kernel);
    if (!dryRun) {
      this.live = driver;
      this.pending.push(...driver.takeConntrackDeletions());
      if (this.enableIpset) ipsetsChanged ??= await ensureIpsets();
    }
    if (waiting.length) this.logger.debug({ namespace: this.namespace, waiting: waiting.length }, "ports wait for their devices");
    return { ...summary, waitingForDevice: waiting, waitingDevices, heldPorts: driver.heldPorts, ipsetsChanged: ipsetsChanged ?? [], ...(dryRun ? { ipsetPlan: await this.ipsetPlan(driver) } : {}) };
  }

  /** The kernel's filter and raw tables of every family the manager has (one iptables-save each, as the apply would run). */
  private async kernelCopy(manager: IptablesManager): Promise<KernelCopy> {
    const copy = new Map<IpVersion, Map<"filter" | "raw", ReadonlyMap<string, readonly string[]>>>();
    for (const v of (manager.useIpv6 ? [4, 6] : [4]) as IpVersion[]) {
      copy.set(v, new Map([
        ["filter", await manager.kernelChains(v, "filter")],
        ["raw", await manager.kernelChains(v, "raw")],
      ]));
    }
    return copy;
  }

  private async ipsetPlan(driver: IptablesFirewallDriver): Promise<{ create: string[]; destroy: string[] }> {
    if (!this.enableIpset) return { create: [], destroy: [] };
    try {
      return await this.ipsets.planChanges(driver.ipsetsInUse(), driver.keptIpsets());
    } catch (err) {
      // A namespace that is not there yet has no sets.
      if (err instanceof NamespaceGoneError) return { create: [...driver.ipsetsInUse().keys()], destroy: [] };
      throw err;
    }
  }

  /** After a successful apply: destroys sets no rule names any more, deletes the queued conntrack entries. */
  async afterApply(): Promise<AfterApplyResult> {
    const live = this.live;
    let ipsetsDestroyed: string[] = [];
    if (live && this.enableIpset) ipsetsDestroyed = await this.ipsets.destroyUnused(live.ipsetsInUse(), live.keptIpsets());
    const seen = new Set<string>();
    const commands: string[][] = [];
    for (const d of this.pending) {
      for (const args of conntrackCommands(d)) {
        const key = args.join(" ");
        if (seen.has(key)) continue;
        seen.add(key);
        commands.push(args);
      }
    }
    this.pending = [];
    const run = await this.liveDeletions(commands);
    await this.inPool(run, async (args) => {
      const r = await this.runner.exec("conntrack", args, { namespace: this.namespace, reject: false });
      // 1 is "0 flow entries have been deleted".
      if (r.exitCode !== 0 && r.exitCode !== 1) this.logger.warn({ namespace: this.namespace, args, stderr: r.stderr.trim() }, "conntrack delete failed");
    });
    if (commands.length > 0) this.logger.debug({ namespace: this.namespace, planned: commands.length, run: run.length }, "conntrack entries deleted");
    return { ipsetsDestroyed, conntrack: commands, conntrackRun: run };
  }

  /**
   * The deletions that can delete something. Every `conntrack -D` walks the host's whole conntrack
   * table (~10 ms at 262,144 buckets; deletions side by side take as long as in turn), so a change
   * that removes 200 ports (400 of Neutron's commands) spent ~4 s in them, nearly always finding
   * nothing. A zone with
   * `LIST_FROM` or more deletions is listed once (`conntrack -L -w ZONE`, one walk) and only the
   * deletions that may match a listed entry run; fewer run as they are (a listing that finds
   * something would cost a walk more than it saves). The listing is taken after the apply: an
   * entry it misses was created under the new rules. Anything unexpected (the listing fails or
   * reads oddly) runs the zone's deletions as they are. The listing's output grows with the zone's
   * connections (~150 bytes each): on a network with 100k of them it costs more than a few walks,
   * which is why a zone with one port's two deletions is not listed.
   */
  private async liveDeletions(commands: readonly string[][]): Promise<string[][]> {
    const byZone = new Map<string, string[][]>();
    for (const args of commands) {
      const w = args.indexOf("-w");
      const zone = w === -1 ? "" : (args[w + 1] ?? "");
      const list = byZone.get(zone);
      if (list) list.push(args);
      else byZone.set(zone, [args]);
    }
    const run: string[][] = [];
    const listed: [string, string[][]][] = [];
    for (const [zone, list] of byZone) {
      if (zone !== "" && list.length >= LIST_FROM) listed.push([zone, list]);
      else run.push(...list);
    }
    await this.inPool(listed, async ([zone, list]) => {
      const r = await this.runner.exec("conntrack", ["-L", "-w", zone], { namespace: this.namespace, reject: false });
      const entries = r.exitCode === 0 ? parseConntrackListing(r.stdout) : undefined;
      if (!entries) this.logger.warn({ namespace: this.namespace, zone, exitCode: r.exitCode, stderr: r.stderr.trim() }, "conntrack listing unusable; deleting without it");
      for (const args of list) if (!entries || deletionMayMatch(args, entries)) run.push(args);
    });
    return run;
  }

  /** Runs `fn` on every item, `concurrency` at a time. */
  private async inPool<T>(items: readonly T[], fn: (item: T) => Promise<void>): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < items.length) await fn(items[next++]!);
    };
    await Promise.all(Array.from({ length: Math.min(this.concurrency, items.length) }, worker));
  }

  /** Conntrack deletions waiting for a successful apply. */
  get pendingConntrackDeletions(): readonly ConntrackDeletion[] {
    return this.pending;
  }

  private async liveZones(): Promise<ConntrackZones> {
    if (this.zones) return this.zones;
    const zones = new ConntrackZones();
    try {
      zones.recover(await this.runner.save({ namespace: this.namespace, family: 4 }, { table: "raw" }));
    } catch (err) {
      // A namespace that is not there yet has no zones to recover; the apply will say the rest.
      if (!(err instanceof NamespaceGoneError)) throw err;
    }
    this.zones ??= zones;
    return this.zones;
  }

  /**
   * A monitor event: a tap of a desired port or trusted device that appeared (not present at the
   * last check) or went (present then) wakes the namespace. Anything else (other devices, a carrier
   * change of a tap already filtered) does not.
   */
  private deviceEvent(event: LinkEvent): void {
    if (!this.wanted.has(event.name)) return;
    if (event.deleted === this.present.has(event.name)) {
      if (event.deleted) this.present.delete(event.name);
      else this.present.add(event.name);
      this.logger.debug({ namespace: this.namespace ?? null, device: event.name, event: event.deleted ? "deleted" : "appeared" }, "device event wakes the namespace");
      this.wake?.();
    }
  }

  /**
   * Interface names in the namespace: the runner's `listLinks` when it has it (a namespace's
   * `/sys/class/net`), else `ip -o link show` (`tap1@if5` is `tap1`), 4–5× the cost at thousands
   * of devices, paid on every reconcile.
   */
  private async presentDevices(dryRun: boolean): Promise<Set<string>> {
    const out = new Set<string>();
    let r;
    try {
      if (this.runner.listLinks) return new Set(await this.runner.listLinks(this.namespace));
      r = await this.runner.exec("ip", ["-o", "link", "show"], { namespace: this.namespace });
    } catch (err) {
      // A plan for a namespace that does not exist yet: no device exists there.
      if (dryRun && err instanceof NamespaceGoneError) return out;
      // A namespace deleted under us: a monitor still in it would keep it alive, unseen, until the
      // agent stops. The retry starts a new one once the namespace is back.
      if (err instanceof NamespaceGoneError) this.devices.stop();
      throw err;
    }
    for (const line of r.stdout.split("\n")) {
      const m = /^\d+:\s+([^:@\s]+)/.exec(line);
      if (m) out.add(m[1]!);
    }
    return out;
  }
}
