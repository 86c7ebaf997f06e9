import type { HostAction } from "@chainwarden/agent";
import { CommandError, validateNamespaceName, type IpRunner } from "@chainwarden/core";
import { bridgeName, tapDeviceName } from "./device-names.js";
import type { InterfaceDriver, InterfaceDriverContext, InterfaceDriverSweepContext, PlugRequest } from "./interface-driver.js";

/**
 * Who owns the networks' bridges (`brq<network id[:11]>`):
 * - `neutron`: `neutron-linuxbridge-agent` does (a Neutron control plane). The driver makes and
 *   removes the veth only, exactly as Neutron's `BridgeInterfaceDriver`: the l2 agent sees the tap
 *   and puts it into its network's bridge, and deletes the bridge with its last port.
 * - `standalone`: nobody else does (the file state source, no l2 agent). The driver also creates a
 *   missing bridge, marks it as its own (the device's alias, `bridgeMark`), puts the tap into it, and
 *   deletes a bridge of its own once its last port is gone. A bridge it did not create (no mark, or
 *   another agent's) is used, never deleted.
 */
export type BridgeMode = "neutron" | "standalone";

/** Options of `LinuxbridgeInterfaceDriver`, all optional; the constructor throws on an invalid `bridgeNamespace` (`InvalidNamespaceNameError`) or `bridgeMark`. */
export interface LinuxbridgeInterfaceDriverOptions {
  /**
   * Where the bridges and the outer veth ends live: the host's namespace when undefined (as with
   * Neutron's linuxbridge agent). A namespace of its own isolates a lab or a test from the host.
   */
  bridgeNamespace?: string | undefined;
  /**
   * The mode, or a function that tells it on first use (`auto` is decided by the state source, known
   * only once every plugin has registered). Default `standalone`.
   */
  mode?: BridgeMode | (() => BridgeMode);
  /**
   * The alias that marks a bridge as this agent's (`bridgeMark(namespace_prefix)`): no spaces or
   * quotes (it goes into an `ip -batch` line).
   */
  bridgeMark?: string;
}

/** The mark of an agent that does not say which (`bridgeMark("qrouter-")`). */
const DEFAULT_MARK = "chainwarden:l3-nat:qrouter-";

/** A device as `ip -j link show` reports it (the fields read here). */
interface LinkInfo {
  readonly ifname?: string;
  readonly master?: string;
  readonly ifalias?: string;
}

/**
 * Neutron's `BridgeInterfaceDriver`: a veth pair per port, the inner end (`qr-…`/`qg-…`, with the
 * port's MAC and MTU) in the router namespace, the outer end `tap<port id[:11]>` beside the
 * network's bridge `brq<network id[:11]>`. Who puts the tap into the bridge, and who makes and
 * deletes the bridge, is the `BridgeMode`'s.
 *
 * Bridges of our own (standalone). A bridge is created with its mark in one `ip -batch` (`link add`,
 * then `link set dev … alias <mark> up`: `ip link add` ignores an alias), so a bridge without the
 * mark was made by someone else: an l2 agent, an operator, a lab. Removing a router port looks up its
 * tap's bridge before deleting the veth, and deletes that bridge once it has no port left (a VM's
 * tap keeps it) if it carries our mark. `sweep` (at every full pass, from the stale cleanup) deletes
 * marked bridges without ports that earlier runs left (a crash between a router's removal and its
 * bridge's, a tap deleted by hand), and nothing else. Per bridge, plugs, unplugs and the sweep run one
 * at a time in this process, so a bridge is never deleted between its creation and its first port.
 */
export class LinuxbridgeInterfaceDriver implements InterfaceDriver {
  readonly name = "linuxbridge";
  private readonly bridgeNamespace: string | undefined;
  private readonly modeOption: BridgeMode | (() => BridgeMode);
  private resolvedMode: BridgeMode | undefined;
  /** The alias our bridges carry. */
  readonly bridgeMark: string;
  /** Bridges this driver made sure of (many routers share the external network's). */
  private readonly bridges = new Set<string>();
  /** The tail of each bridge's queue of plugs, unplugs and sweeps. */
  private readonly queues = new Map<string, Promise<unknown>>();
  /** Dry runs: the taps and bridges an earlier plan step of this process already counted as gone. */
  private readonly plannedGone = new Set<string>();

  constructor(options: LinuxbridgeInterfaceDriverOptions = {}) {
    if (options.bridgeNamespace !== undefined) validateNamespaceName(options.bridgeNamespace);
    this.bridgeNamespace = options.bridgeNamespace;
    this.modeOption = options.mode ?? "standalone";
    this.bridgeMark = options.bridgeMark ?? DEFAULT_MARK;
    if (!/^[A-Za-z0-9_.:-]{1,255}$/.test(this.bridgeMark)) throw new Error(`bridge mark ${JSON.stringify(this.bridgeMark)}: letters, digits, _ . : - only`);
  }

  /** The mode in force (decided on first use). */
  get mode(): BridgeMode {
    this.resolvedMode ??= typeof this.modeOption === "function" ? this.modeOption() : this.modeOption;
    return this.resolvedMode;
  }

  async plug(context: InterfaceDriverContext, request: PlugRequest): Promise<"ready" | "missing"> {
    if (request.existing.has(request.device)) return "ready";
    const { runner, namespace } = context;
    const tap = tapDeviceName(request.port.id);
    const mtu = request.port.mtu ? [`link set ${tap} mtu ${request.port.mtu}`] : [];
    const add = `link add ${tap} type veth peer name ${request.device} netns ${namespace}`;
    if (this.mode === "neutron") {
      // The l2 agent puts the tap into its bridge (it watches for taps of its ports).
      await this.addVeth(runner, [add, ...mtu, `link set ${tap} up`], tap);
    } else {
      const bridge = bridgeName(request.port.network_id);
      await this.serialized(bridge, async () => {
        const created = this.bridges.has(bridge) ? false : await this.ensureBridge(context, bridge);
        try {
          await this.addVeth(runner, [add, ...mtu, `link set ${tap} master ${bridge} up`], tap);
        } catch (err) {
          // The bridge may have gone behind us: ensure it again next time. One made just now for
          // this port must not stay empty.
          this.bridges.delete(bridge);
          if (created) await this.removeIfUnused(context.runner, bridge, context.logger).catch(() => undefined);
          throw err;
        }
      });
    }
    const innerLines = [
      ...(request.port.mac_address ? [`link set ${request.device} address ${request.port.mac_address}`] : []),
      ...(request.port.mtu ? [`link set ${request.device} mtu ${request.port.mtu}`] : []),
      `link set ${request.device} up`,
    ];
    if (request.linkSetup) request.linkSetup.push(...innerLines);
    else await runner.exec("ip", ["-batch", "-"], { namespace, input: `${innerLines.join("\n")}\n` });
    return "ready";
  }

  /**
   * Deleting the inner end deletes the pair. Standalone: the tap's bridge, when it is ours and that
   * was its last port, goes too.
   */
  async unplug(context: InterfaceDriverContext, device: string): Promise<void> {
    const bridge = this.mode === "standalone" ? (await this.readTap(context.runner, outerName(device)))?.master : undefined;
    const r = await context.runner.exec("ip", ["link", "del", device], { namespace: context.namespace, reject: false });
    if (r.exitCode !== 0 && !/Cannot find device|does not exist/i.test(r.stderr)) {
      throw new CommandError(["ip", "link", "del", device], r.exitCode, r.stderr, { namespace: context.namespace });
    }
    if (bridge !== undefined) await this.serialized(bridge, () => this.removeIfUnused(context.runner, bridge, context.logger));
  }

  /**
   * What `unplug` would remove, changing nothing: the veth (when its tap exists) and, standalone, its
   * bridge when ours and left without ports (taps this process already planned to remove count as gone).
   */
  async planUnplug(context: InterfaceDriverContext, device: string): Promise<HostAction[]> {
    const tap = outerName(device);
    const info = await this.readTap(context.runner, tap);
    if (!info) return [];
    const actions: HostAction[] = [{ verb: "remove", object: "device", name: device, detail: `veth, with ${tap}${info.master ? ` in ${info.master}` : ""}${this.bridgeNamespace ? ` (namespace ${this.bridgeNamespace})` : ""}` }];
    this.plannedGone.add(tap);
    if (this.mode === "standalone" && info.master !== undefined && !this.plannedGone.has(info.master)) {
      if (await this.unusedAndOurs(context.runner, info.master, this.plannedGone)) {
        this.plannedGone.add(info.master);
        actions.push({ verb: "remove", object: "bridge", name: info.master, detail: `made by this agent (alias ${this.bridgeMark}); its last port goes` });
      }
    }
    return actions;
  }

  /**
   * Standalone: deletes (in a dry run, lists) the bridges that carry our mark and have no port: what
   * earlier runs left. Unmarked bridges are never looked at twice. Neutron mode: nothing (the l2
   * agent owns every bridge).
   */
  async sweep(context: InterfaceDriverSweepContext): Promise<HostAction[]> {
    if (this.mode !== "standalone") return [];
    const { runner, logger, dryRun } = context;
    const marked = (await this.links(runner, ["type", "bridge"])).filter((l) => l.ifalias === this.bridgeMark && l.ifname !== undefined).map((l) => l.ifname!);
    if (marked.length === 0) return [];
    const ports = new Map<string, string[]>();
    for (const l of await this.links(runner, [])) {
      if (l.master !== undefined && l.ifname !== undefined) ports.set(l.master, [...(ports.get(l.master) ?? []), l.ifname]);
    }
    const actions: HostAction[] = [];
    for (const bridge of marked) {
      const left = (ports.get(bridge) ?? []).filter((p) => !(dryRun && this.plannedGone.has(p)));
      if (left.length > 0 || (dryRun && this.plannedGone.has(bridge))) continue;
      // Checked again under the bridge's queue: a plug may have taken it meanwhile.
      if (!dryRun && !(await this.serialized(bridge, () => this.removeIfUnused(runner, bridge, logger, "bridge left by an earlier run removed")))) continue;
      actions.push({ verb: "remove", object: "bridge", name: bridge, detail: `made by this agent (alias ${this.bridgeMark}), without ports` });
    }
    return actions;
  }

  // ---- bridges ------------------------------------------------------------------------------------

  /**
   * Creates the bridge with our mark, up; one that exists is someone else's (or ours from before) and
   * is only set up. Returns whether it was created now.
   */
  private async ensureBridge(context: InterfaceDriverContext, bridge: string): Promise<boolean> {
    const outer = { namespace: this.bridgeNamespace };
    const lines = [`link add ${bridge} type bridge`, `link set dev ${bridge} alias ${this.bridgeMark} up`];
    // Without -force the batch stops at the first failing line: an existing bridge is not marked.
    const r = await context.runner.exec("ip", ["-batch", "-"], { ...outer, input: `${lines.join("\n")}\n`, reject: false });
    let created = r.exitCode === 0;
    if (!created) {
      if (!(/exists/i.test(r.stderr) && /^Command failed -:1$/m.test(r.stderr))) throw new CommandError(["ip", "-batch", "-", ...lines], r.exitCode, r.stderr, outer);
      await context.runner.exec("ip", ["link", "set", bridge, "up"], outer);
      created = false;
    } else {
      context.logger.info({ bridge, bridgeNamespace: this.bridgeNamespace ?? null }, "bridge created");
    }
    this.bridges.add(bridge);
    return created;
  }

  /** Deletes the bridge if it carries our mark and has no port; returns whether it did. */
  private async removeIfUnused(runner: IpRunner, bridge: string, logger: InterfaceDriverContext["logger"], message = "bridge removed: its last port went"): Promise<boolean> {
    if (!(await this.unusedAndOurs(runner, bridge))) return false;
    const r = await runner.exec("ip", ["link", "del", bridge], { namespace: this.bridgeNamespace, reject: false });
    this.bridges.delete(bridge);
    if (r.exitCode !== 0) {
      if (/Cannot find device/i.test(r.stderr)) return false;
      throw new CommandError(["ip", "link", "del", bridge], r.exitCode, r.stderr, { namespace: this.bridgeNamespace });
    }
    logger.info({ bridge, bridgeNamespace: this.bridgeNamespace ?? null }, message);
    return true;
  }

  /** Whether the bridge carries our mark and has no port (`gone`: ports that count as gone already). */
  private async unusedAndOurs(runner: IpRunner, bridge: string, gone: ReadonlySet<string> = new Set()): Promise<boolean> {
    const [info] = await this.links(runner, ["dev", bridge]);
    if (info?.ifalias !== this.bridgeMark) return false;
    const ports = await this.links(runner, ["master", bridge]);
    return ports.every((p) => p.ifname !== undefined && gone.has(p.ifname));
  }

  // ---- helpers ------------------------------------------------------------------------------------

  private async addVeth(runner: IpRunner, lines: string[], tap: string): Promise<void> {
    const outer = { namespace: this.bridgeNamespace };
    const added = await runner.exec("ip", ["-batch", "-"], { ...outer, input: `${lines.join("\n")}\n`, reject: false });
    if (added.exitCode === 0) return;
    // A veth pair lives and dies as one: deleting the router namespace deletes the tap too, so an
    // existing tap of this name belongs to another live port (one whose id shares the first 11
    // characters). It is never deleted here.
    const why = /exists/i.test(added.stderr) ? `${added.stderr.trim()} (device ${tap} is another port's: port ids must differ in their first 11 characters)` : added.stderr;
    throw new CommandError(["ip", "-batch", "-", ...lines], added.exitCode, why, outer);
  }

  /** The tap as `ip -j link show dev` reports it; undefined when it does not exist. */
  private async readTap(runner: IpRunner, tap: string): Promise<LinkInfo | undefined> {
    return (await this.links(runner, ["dev", tap]))[0];
  }

  /** `ip -j link show ARGS` in the bridges' namespace; a device or master that does not exist lists nothing. */
  private async links(runner: IpRunner, args: string[]): Promise<LinkInfo[]> {
    const r = await runner.exec("ip", ["-j", "link", "show", ...args], { namespace: this.bridgeNamespace, reject: false });
    if (r.exitCode !== 0) {
      if (/does not exist/i.test(r.stderr)) return [];
      throw new CommandError(["ip", "-j", "link", "show", ...args], r.exitCode, r.stderr, { namespace: this.bridgeNamespace });
    }
    const text = r.stdout.trim();
    const value: unknown = text === "" ? [] : JSON.parse(text);
    return Array.isArray(value) ? (value as LinkInfo[]) : [];
  }

  /** Runs `fn` after everything queued for the bridge before it. */
  private serialized<T>(bridge: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.queues.get(bridge) ?? Promise.resolve();
    const run = previous.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.queues.set(bridge, tail);
    void tail.then(() => {
      if (this.queues.get(bridge) === tail) this.queues.delete(bridge);
    });
    return run;
  }
}

/** The veth's outer end for a router device: `qr-<id[:11]>` / `qg-<id[:11]>` → `tap<id[:11]>`. */
function outerName(device: string): string {
  return tapDeviceName(device.slice(3));
}
