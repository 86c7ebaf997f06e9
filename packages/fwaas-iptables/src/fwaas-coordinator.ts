import type { ApplyEvent, ReconcileContext, ReconcileRequest } from "@chainwarden/agent";
import { silentLogger, type CoreLogger, type ConntrackRunner, type IptablesManager } from "@chainwarden/core";
import type { L3RouterExtension, Router, RouterExtensionContext } from "@chainwarden/l3-nat";
import { ConntrackCleaner, isEmptyConntrackPlan, mergeConntrackPlans, type ConntrackPlan } from "./conntrack-cleaner.js";
import type { RouterBoundFirewall, RouterBoundGroup, RouterBoundResource } from "./fwaas-state.js";
import { RouterFirewall, type HeldFirewall, type KernelFilter } from "./router-firewall.js";

type Logger = ReconcileContext["logger"];

/** What the FWaaS handlers last reconciled in one router namespace. */
interface RouterFirewalls {
  firewalls: ReadonlyMap<string, RouterBoundFirewall>;
  groups: ReadonlyMap<string, RouterBoundGroup>;
  /** Firewalls (v1) and groups (v2) to keep as the kernel has them, by resource id. */
  heldFirewalls: ReadonlyMap<string, HeldFirewall>;
  heldGroups: ReadonlyMap<string, HeldFirewall>;
  /** The kinds whose input is incomplete: firewall chains no firewall explains stay. */
  incomplete: ReadonlySet<string>;
}

const NONE: RouterFirewalls = { firewalls: new Map(), groups: new Map(), heldFirewalls: new Map(), heldGroups: new Map(), incomplete: new Set() };

interface PendingConntrack {
  runner: ConntrackRunner;
  logger: Logger;
  items: { plan: ConntrackPlan; chains: string[] }[];
}

/** Options of `FwaasCoordinator`; both optional. */
export interface FwaasCoordinatorOptions {
  /** Remove the connections a new or changed firewall forbids (neutron-fwaas does). Default true. */
  conntrackCleanup?: boolean;
  /** For what names its namespace itself (the conntrack cleaner); default: silent. */
  logger?: CoreLogger;
}

/**
 * Where the two ways into a router meet. The rules of a router live in its namespace's
 * IptablesManager, which the l3 plugin owns; FWaaS writes into it
 * - as a router extension (`addRouter` / `updateRouter` from the l3 plugin, on the router's manager,
 *   inside its deferred apply): a new router, a new manager (after a failure, or a dry run), or a
 *   changed router (ports added or removed) gets the firewalls that cover it;
 * - from its own resource handlers (`firewall`, `firewall_group`), whose resources are bound to
 *   routers and live in the router's namespace: a changed firewall is reconciled in the router's
 *   namespace run and written into the same manager (`context.manager()` is the l3 plugin's).
 * Both go through `syncRouter`, so the result does not depend on which came first. A router the l3
 * plugin has not set up (invalid for it, or being deleted) is not touched: its namespace may not
 * exist; when the router arrives, `addRouter` programs what the handlers recorded.
 *
 * Conntrack cleanup runs after the namespace's apply (the apply observer), and only when the apply
 * really changed the firewall's chains or jumps: deleting entries before the new rules are in would
 * let the next packet re-create them under the old rules.
 */
export class FwaasCoordinator {
  /** Per router namespace: what the handlers last reconciled there (live runs only). */
  private readonly desired = new Map<string, RouterFirewalls>();
  /** Routers the l3 plugin has set up (live runs only), by namespace. */
  private readonly routers = new Map<string, Router>();
  /** One driver per manager: a new manager starts from nothing, as the l3 plugin's rules do. */
  private readonly drivers = new WeakMap<IptablesManager, RouterFirewall>();
  private readonly pending = new Map<string, PendingConntrack>();
  private readonly conntrackCleanup: boolean;

  private readonly logger: CoreLogger;

  constructor(options: FwaasCoordinatorOptions = {}) {
    this.conntrackCleanup = options.conntrackCleanup ?? true;
    this.logger = options.logger ?? silentLogger;
  }

  /** The l3 plugin's router extension. */
  readonly routerExtension: L3RouterExtension = {
    name: "fwaas-iptables",
    addRouter: (context) => this.routerChanged(context),
    updateRouter: (context) => this.routerChanged(context),
    deleteRouter: (context) => {
      // The namespace goes with the router, and our rules with it (Neutron does nothing here either).
      if (context.dryRun) return;
      this.routers.delete(context.namespace);
      this.pending.delete(context.namespace);
    },
  };

  /** A FWaaS handler's reconcile, in the router's namespace. */
  async reconcile<R extends RouterBoundResource>(kind: R["kind"], context: ReconcileContext, request: ReconcileRequest<R>): Promise<void> {
    const namespace = context.namespace;
    if (namespace === undefined) return;
    const current = this.desired.get(namespace) ?? NONE;
    // Stand-ins of invalid input, and firewalls whose apply failed, are kept as the kernel has them.
    const valid = new Map<string, RouterBoundResource>();
    const held = new Map<string, HeldFirewall>();
    for (const [key, r] of request.desired) {
      if ("standIn" in r) held.set(key, { kind: r.kind === "firewall" ? "v1" : "v2", id: r.id, ports: r.ports });
      else if (request.held.has(key)) held.set(key, r.kind === "firewall" ? { kind: "v1", id: r.firewall.id, ports: [] } : { kind: "v2", id: r.group.id, ports: r.group.ports });
      else valid.set(key, r);
    }
    const incomplete = new Set(current.incomplete);
    if (request.complete) incomplete.delete(kind);
    else incomplete.add(kind);
    const next: RouterFirewalls =
      kind === "firewall"
        ? { ...current, firewalls: valid as Map<string, RouterBoundFirewall>, heldFirewalls: held, incomplete }
        : { ...current, groups: valid as Map<string, RouterBoundGroup>, heldGroups: held, incomplete };
    if (!context.dryRun) {
      if (isEmpty(next)) this.desired.delete(namespace);
      else this.desired.set(namespace, next);
    }
    const router = this.routers.get(namespace);
    if (!router && !context.dryRun) {
      // The context's logger names the namespace.
      context.logger.debug({ kind }, "router not set up by the l3 plugin; firewalls wait for it");
      return;
    }
    // A dry run of a router this agent has not set up yet uses the ports the document gives.
    const ports = router ? interfacePorts(router) : [...firstRouterPorts([...request.desired.values(), ...next.groups.values(), ...next.firewalls.values()])];
    await this.syncRouter(context.manager(), namespace, ports, next, { dryRun: context.dryRun, runner: context.runner, logger: context.logger, routerId: router?.id });
  }

  /** The apply observer: runs the conntrack cleanup queued for the namespace once its rules are in. */
  async afterApply(event: ApplyEvent): Promise<void> {
    if (event.namespace === undefined) return;
    const queued = this.pending.get(event.namespace);
    if (!queued) return;
    this.pending.delete(event.namespace);
    // After a failure the loop retries with fresh managers, which computes the cleanup again.
    if (event.error) return;
    const changed = new Set<string>();
    for (const f of event.result?.families ?? []) for (const c of f.changes) if (c.table === "filter") changed.add(`${f.family}/${c.chain}`);
    const plans = queued.items.filter((i) => i.chains.some((c) => changed.has(c))).map((i) => i.plan);
    if (plans.length === 0) return;
    const plan = mergeConntrackPlans(plans);
    try {
      // The queued logger is the run's, bound to the namespace; the cleaner names it itself.
      const result = await new ConntrackCleaner(queued.runner, this.logger).apply(event.namespace, plan);
      queued.logger.info({ flushed: result.flushed, deleted: result.deleted }, "firewall conntrack cleanup done");
    } catch (err) {
      // The rules are in; stale connections only live until they end.
      queued.logger.error({ err }, "firewall conntrack cleanup failed");
    }
  }

  private async routerChanged(context: RouterExtensionContext): Promise<void> {
    if (!context.dryRun) this.routers.set(context.namespace, context.router);
    const firewalls = this.desired.get(context.namespace) ?? NONE;
    await this.syncRouter(context.iptables, context.namespace, interfacePorts(context.router), firewalls, {
      dryRun: context.dryRun,
      runner: context.runner,
      logger: context.logger,
      routerId: context.router.id,
    });
  }

  private async syncRouter(
    manager: IptablesManager,
    namespace: string,
    ports: readonly string[],
    firewalls: RouterFirewalls,
    env: { dryRun: boolean; runner: ConntrackRunner; logger: Logger; routerId: string | undefined },
  ): Promise<void> {
    let driver = this.drivers.get(manager);
    if (!driver) {
      driver = new RouterFirewall(manager, env.routerId === undefined ? {} : { resource: `router/${env.routerId}` });
      this.drivers.set(manager, driver);
    }
    const held = [...firewalls.heldGroups.values(), ...firewalls.heldFirewalls.values()];
    const keepUnknown = firewalls.incomplete.size > 0;
    // What the kernel has, for held firewalls the driver has not taken over yet and for incomplete input.
    const kernel = keepUnknown || held.some((h) => !driver.holds(`${h.kind}:${h.id}`)) ? await kernelFilter(manager) : undefined;
    const result = driver.sync({
      ports,
      firewalls: [...firewalls.firewalls.values()].map((r) => r.firewall),
      groups: [...firewalls.groups.values()].map((r) => r.group),
      held,
      ...(kernel ? { kernel } : {}),
      keepUnknown,
    });
    if (result.rewritten.length || result.removed.length) {
      env.logger.debug({ rewritten: result.rewritten, removed: result.removed, dryRun: env.dryRun }, "firewalls programmed");
    }
    if (env.dryRun || !this.conntrackCleanup || isEmptyConntrackPlan(result.conntrack)) return;
    let queued = this.pending.get(namespace);
    if (!queued) this.pending.set(namespace, (queued = { runner: env.runner, logger: env.logger, items: [] }));
    queued.items.push({ plan: result.conntrack, chains: result.chains });
  }
}

function interfacePorts(router: Router): string[] {
  return router._interfaces.map((p) => p.id);
}

function firstRouterPorts(resources: Iterable<RouterBoundResource>): readonly string[] {
  for (const r of resources) return r.routerPorts;
  return [];
}

function isEmpty(f: RouterFirewalls): boolean {
  return f.firewalls.size === 0 && f.groups.size === 0 && f.heldFirewalls.size === 0 && f.heldGroups.size === 0 && f.incomplete.size === 0;
}

/** The kernel's filter table of both families, as the manager's view has them. */
async function kernelFilter(manager: IptablesManager): Promise<KernelFilter> {
  return new Map([
    [4, await manager.kernelChains(4, "filter")],
    [6, await manager.kernelChains(6, "filter")],
  ] as const);
}
