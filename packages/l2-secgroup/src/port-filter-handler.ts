/**
 * The agent's `port` resource handler: it reads the l2 state document (`devices`, `security_groups`,
 * `sg_member_ips`, `trusted_devices`), and on each reconcile puts every changed port of the namespace
 * into the namespace's stateless manager in one batch (the loop applies that manager once). Its apply
 * observer then does the work that must follow an apply: destroying unused ipsets and deleting
 * conntrack entries the change made illegal.
 *
 * Resources carry everything that shapes a port's rules, so the loop reconciles exactly the ports a
 * change touches; a full pass (start, resync, retry) skips ports whose fingerprint is unchanged in a
 * manager that still holds them, and rebuilds everything in a fresh manager.
 *
 * Devices: while the agent runs, each namespace has a device monitor that calls the handler again
 * as soon as a tap it cares about appears or goes; while a port waits for its tap, the handler also
 * asks to be called again every `polling_interval` (Neutron's 2 s), the safety net for an event the
 * monitor missed. Neither re-reads the kernel: a port whose fingerprint is unchanged costs a lookup.
 */
import type { AgentMetrics, ApplyEvent, ApplyObserver, ManagerNeeds, ParsedResources, ReconcileContext, ReconcileRequest, ResourceHandler, StateDocument } from "@chainwarden/agent";
import type { FirewallRunner } from "./firewall-namespace.js";
import type { FirewallFlavor } from "./firewall-flavor.js";
import { FirewallNamespace, type NamespaceReconcileResult } from "./firewall-namespace.js";
import type { L2SecgroupSettings } from "./l2-secgroup-settings.js";
import { L2ParseCache, parseL2State, type L2Limits, type L2Resource } from "./l2-state.js";

/** How often ports waiting for their tap device are looked at again (Neutron's `polling_interval`). */
export const DEVICE_POLL_INTERVAL_MS = 2_000;

/** Options of `PortFilterHandler`: the plugin's resolved settings, and optionally a logger and the agent's metrics. */
export interface PortFilterHandlerOptions {
  /** The plugin's resolved settings (driver flavor, ipsets, device wait and poll, wrap name, limits). */
  readonly settings: L2SecgroupSettings;
  /**
   * For the namespaces' own logs, which name their namespace themselves (so not the reconcile
   * context's, which is bound to it); default: the first context's.
   */
  readonly logger?: ReconcileContext["logger"];
  /**
   * The agent's metrics, to serve the handler's own with them: `chainwarden_l2_ports_waiting_for_device`
   * and `chainwarden_l2_device_monitor_up` (per namespace, "" for the host's own, read at scrape
   * time) and `chainwarden_l2_device_wakes_total`.
   */
  readonly metrics?: AgentMetrics;
}

type NsKey = string | undefined;

/**
 * The `port` resource handler: Neutron's security group agent (`SecurityGroupAgentRpc` with `IptablesFirewallDriver`) for the l2 document's
 * ports and trusted devices, all in the agent's namespace. Its `observer` must be registered too: it runs the ipset and conntrack work after each apply.
 */
export class PortFilterHandler implements ResourceHandler<L2Resource> {
  readonly kind = "port";
  readonly documentKeys = ["devices", "security_groups", "sg_member_ips", "trusted_devices"];
  /**
   * The agent's namespace is reconciled on every full pass, ports or not: a complete state without
   * ports removes what an earlier run left (Neutron's agent starts from an empty firewall too).
   */
  readonly homeNamespaces = [undefined];
  /**
   * A stateless manager for the firewall's wrap name, as Neutron's `IptablesFirewallDriver` makes
   * it (`IptablesManager(state_less=True)`): filter and raw only. Declared, so that a plugin's
   * handler in the same namespace gets the same manager from `context.manager()`, whichever runs
   * first, and one that needs nat there is refused when the agent starts.
   */
  readonly managers: readonly ManagerNeeds[];
  readonly flavor: FirewallFlavor;
  readonly enableIpset: boolean;
  readonly waitForDevices: boolean;
  readonly wrapName: string | undefined;
  readonly devicePollIntervalMs: number;
  readonly limits: L2Limits;
  private readonly logger: ReconcileContext["logger"] | undefined;
  private readonly namespaces = new Map<NsKey, FirewallNamespace>();
  private readonly deviceWakes: { inc(): void } | undefined;
  /** Documents usually repeat most ports: only what changed is validated again. */
  private readonly parseCache = new L2ParseCache();

  /** Runs the post-apply work of the namespace that was just applied (register it with the handler). */
  readonly observer: ApplyObserver = {
    onApply: (event: ApplyEvent) => this.onApply(event),
  };

  constructor(options: PortFilterHandlerOptions) {
    const settings = options.settings;
    this.flavor = settings.flavor;
    this.enableIpset = settings.enableIpset;
    this.waitForDevices = settings.waitForDevices;
    this.wrapName = settings.wrapName;
    this.managers = [{ stateless: true, ...(this.wrapName !== undefined ? { wrapName: this.wrapName } : {}) }];
    this.devicePollIntervalMs = settings.devicePollIntervalMs;
    this.limits = settings.limits;
    this.logger = options.logger;
    const metrics = options.metrics;
    if (metrics && this.waitForDevices) {
      metrics.gauge({
        name: "chainwarden_l2_ports_waiting_for_device",
        help: "Ports (and trusted devices) in the state whose tap does not exist yet, by namespace",
        labelNames: ["namespace"],
        collect: (g) => {
          for (const [key, ns] of this.namespaces) g.set({ namespace: key ?? "" }, ns.waitingForDevice);
        },
      });
      metrics.gauge({
        name: "chainwarden_l2_device_monitor_up",
        help: "1 while the device monitor (ip -o monitor link) of the namespace runs",
        labelNames: ["namespace"],
        collect: (g) => {
          for (const [key, ns] of this.namespaces) g.set({ namespace: key ?? "" }, ns.watchingDevices ? 1 : 0);
        },
      });
      this.deviceWakes = metrics.counter({ name: "chainwarden_l2_device_wakes_total", help: "Reconciles asked for by a device event (a tap of a desired port appeared or went)" });
    }
  }

  parse(document: StateDocument, origin: string): ParsedResources<L2Resource> {
    return parseL2State(document, origin, { flavor: this.flavor, enableIpset: this.enableIpset, limits: this.limits }, this.parseCache);
  }

  /** Every port lives in the agent's namespace (the l2 agent's `--netns`, or the host's own). */
  namespaceOf(): string | undefined {
    return undefined;
  }

  equals(a: L2Resource, b: L2Resource): boolean {
    return a.type === b.type && a.fingerprint === b.fingerprint;
  }

  /**
   * Puts the namespace's changed ports into its stateless manager in one batch (the loop applies it) and creates the ipsets they name first;
   * ports whose tap does not exist yet wait, and the handler asks to be called again. A set that cannot be made throws `IpsetError` (`COMMAND_FAILED`) naming the ports that use it.
   */
  async reconcile(context: ReconcileContext, request: ReconcileRequest<L2Resource>): Promise<void> {
    const ns = this.namespace(context.namespace, context.runner, this.logger ?? context.logger);
    const manager = context.manager({ stateless: true, ...(this.wrapName !== undefined ? { wrapName: this.wrapName } : {}) });
    const waker = context.waker?.();
    const wakes = this.deviceWakes;
    const wake = waker && wakes ? () => (wakes.inc(), waker()) : waker;
    const result = await ns.reconcile(manager, request.desired.values(), { dryRun: context.dryRun, wake, held: request.held, complete: request.complete });
    // The context's logger names the namespace already.
    context.logger.debug(
      {
        full: request.full,
        added: result.added,
        updated: result.updated,
        removed: result.removed,
        unchanged: result.unchanged,
        held: result.held,
        waitingForDevice: result.waitingForDevice.length,
        ipsetsChanged: result.ipsetsChanged.length,
      },
      "security groups reconciled",
    );
    this.report(context, request, result);
    // A port is filtered once its tap exists; nothing in the state announces that. The device
    // monitor wakes us when it appears; the poll (Neutron's, every 2 s) is there for what it misses.
    if (result.waitingForDevice.length > 0) context.requeue(this.devicePollIntervalMs);
  }

  /** What `plan` shows besides the rules: ports waiting for their tap, held ports, ipsets. */
  private report(context: ReconcileContext, request: ReconcileRequest<L2Resource>, result: NamespaceReconcileResult): void {
    if (!context.report) return;
    for (const [id, tap] of result.waitingDevices) {
      context.report({ verb: "wait", object: "port", name: id, resource: `port/${id}`, detail: `device ${tap} does not exist yet; filtered once it appears` });
    }
    for (const id of request.held) {
      const modes = result.heldPorts.get(id);
      // A held port the driver already had is left as it was (what the kernel has).
      const how = modes !== undefined && Object.values(modes).includes("closed") ? "filtered closed: the kernel had nothing of it, so its traffic is dropped" : "kept as the kernel has it";
      context.report({ verb: "keep", object: "port", name: id, resource: `port/${id}`, detail: how });
    }
    for (const set of result.ipsetPlan?.create ?? []) context.report({ verb: "create", object: "ipset", name: set });
    for (const set of result.ipsetPlan?.destroy ?? []) context.report({ verb: "remove", object: "ipset", name: set });
  }

  /** The agent stopped: the device monitors end (rules stay). */
  async stop(): Promise<void> {
    for (const ns of this.namespaces.values()) ns.stopWatching();
  }

  /** The namespace's state (for tests and status). */
  firewallNamespace(namespace: string | undefined): FirewallNamespace | undefined {
    return this.namespaces.get(namespace);
  }

  private namespace(key: NsKey, runner: FirewallRunner, logger: ReconcileContext["logger"]): FirewallNamespace {
    let ns = this.namespaces.get(key);
    if (!ns) {
      ns = new FirewallNamespace({ runner, namespace: key, flavor: this.flavor, enableIpset: this.enableIpset, waitForDevices: this.waitForDevices, logger });
      this.namespaces.set(key, ns);
    }
    return ns;
  }

  private async onApply(event: ApplyEvent): Promise<void> {
    // A failed apply changed nothing: the queued work waits for the retry's apply.
    if (event.error) return;
    const ns = this.namespaces.get(event.namespace);
    if (!ns) return;
    await ns.afterApply();
  }
}
