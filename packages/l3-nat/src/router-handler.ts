import type { ApplyEvent, HostAction, ParsedResources, ReconcileContext, ReconcileRequest, ResourceHandler, StaleCleanupContext, StateDocument } from "@chainwarden/agent";
import { listNamespaces, NamespaceGoneError, type IpRunner, type IptablesManager, type IptablesRunner, type IptablesVersion, type TableName } from "@chainwarden/core";
import { AddressScopeMarks } from "./address-scope-marks.js";
import { EXTERNAL_DEV_PREFIX, externalDeviceName, INTERNAL_DEV_PREFIX, internalDeviceName, routerNamespaceName } from "./device-names.js";
import type { InterfaceDriver } from "./interface-driver.js";
import { InterfaceDriverUnknownError, RouterDevicesMissingError, RouterExtensionError } from "./l3-nat-errors.js";
import type { L3NatSettings } from "./l3-nat-settings.js";
import { MetadataProxyProcess, removeMetadataProxyFiles, type MetadataProxyFactory, type MetadataProxyHandle } from "./metadata-proxy-process.js";
import { parseRouters, RouterParseCache } from "./parse-routers.js";
import { isHeldRouter, type HeldRouter, type Router } from "./router.js";
import { syncRouterDevices, type PostApplyTask } from "./router-devices.js";
import type { L3RouterExtension, RouterExtensionContext } from "./router-extension-point.js";
import { deleteRouterNamespace, ensureRouterNamespace, routerNamespaceExists } from "./router-namespace.js";
import { RouterRules } from "./router-rules.js";

const ROUTER_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** What a held router's namespace keeps of the kernel's rules, until the router is valid again. */
const KEPT_TAG = "kept-for-held-router";

/** The agent's pino logger type, without importing pino. */
type Logger = ReconcileContext["logger"];

/** Options of `RouterHandler`: the resolved settings and the registered drivers and extensions (read lazily). */
export interface RouterHandlerOptions {
  settings: L3NatSettings;
  /** Every registered interface driver; read on first use (extension points close after registration). */
  drivers: () => readonly InterfaceDriver[];
  /** Every registered router extension, in registration order; read on first use. */
  extensions: () => readonly L3RouterExtension[];
  /** Default: a `MetadataProxyProcess` per router. */
  proxyFactory?: MetadataProxyFactory;
}

/** What the handler keeps about a router it has set up on this host (never touched by dry runs). */
interface RouterState {
  readonly namespace: string;
  readonly marks: AddressScopeMarks;
  /** The router whose devices, floating IP addresses and conntrack cleanup are done. */
  settled: Router | undefined;
  /** The router whose post-apply work waits in `pending`. */
  pendingRouter: Router | undefined;
  pending: PostApplyTask[];
  proxy: MetadataProxyHandle | undefined;
  /** Bound to the router, for the post-apply work that runs outside its reconcile. */
  logger: Logger;
}

/**
 * The `router` resource handler: Neutron's l3 agent for legacy routers, one network namespace
 * (`<namespace_prefix><router id>`) per router.
 *
 * A reconcile of a router, in Neutron's order (`_process_added_router` / `_process_updated_router`):
 * 1. add only: the namespace, with forwarding on;
 * 2. its iptables rules on the namespace's manager (`RouterRules`, incremental), then the router
 *    extensions' `addRouter`/`updateRouter` on the same manager: the loop applies them together;
 * 3. devices (interface driver), addresses and default routes;
 * 4. the metadata proxy;
 * 5. after the apply (`afterApply`, from the plugin's apply observer): floating IP addresses and the
 *    conntrack cleanup, which must follow the NAT rules (see `syncRouterDevices`).
 * Removal: extensions' `deleteRouter`, the proxy stopped, the namespace deleted (with its devices,
 * rules and connections), the loop told to forget the namespace.
 *
 * Dry runs (`plan`, `status`) do step 2 only, on the loop's fresh managers, and leave the handler's
 * state alone.
 */
export class RouterHandler implements ResourceHandler<Router | HeldRouter> {
  readonly kind = "router";
  readonly documentKeys = ["routers"];
  /**
   * The agent's manager, stateful with nat, as Neutron's l3 agent makes it: SNAT, floating IPs and
   * the metadata redirect are nat rules, address scopes mangle marks. Router extensions (FWaaS)
   * write into the same one. Declared, so that a plugin needing it stateless is refused at start.
   */
  readonly managers = [{ stateless: false, nat: true }];
  private readonly settings: L3NatSettings;
  private readonly routers = new Map<string, RouterState>();
  private readonly byNamespace = new Map<string, string>();
  /** One `RouterRules` per manager: a new manager (after a failure, or a dry run) starts from nothing. */
  private readonly rules = new WeakMap<IptablesManager, RouterRules>();
  private readonly versions = new WeakMap<IptablesRunner, Promise<IptablesVersion>>();
  private driver: InterfaceDriver | undefined;
  /** Parse results by router JSON: a document re-read after one change re-validates one router. */
  private readonly parsed = new RouterParseCache();
  /** Per manager: the kernel chains taken over for a held router (`holdRouter`), given back when it is valid again. */
  private readonly kept = new WeakMap<IptablesManager, readonly { family: 4 | 6; table: TableName; chain: string }[]>();

  constructor(private readonly options: RouterHandlerOptions) {
    this.settings = options.settings;
  }

  parse(document: StateDocument, origin: string): ParsedResources<Router | HeldRouter> {
    return parseRouters(document, origin, { namespacePrefix: this.settings.namespacePrefix, cache: this.parsed });
  }

  /** The router's namespace, `<namespace_prefix><router id>` (Neutron's `build_ns_name`); the same for a held router's stand-in. */
  namespaceOf(router: Router | HeldRouter): string {
    return routerNamespaceName(this.settings.namespacePrefix, router.id);
  }

  /**
   * Removes the removed routers, then sets up each changed one (all on a full pass) in Neutron's order; a held router is kept as the kernel has it.
   * Throws `RouterExtensionError`, `InterfaceDriverUnknownError` or `RouterDevicesMissingError` (rules applied, devices retried) naming the router.
   */
  async reconcile(context: ReconcileContext, request: ReconcileRequest<Router | HeldRouter>): Promise<void> {
    for (const [id, router] of request.removed) await this.removeRouter(context, id, router);
    const ids = request.full ? [...request.desired.keys()] : [...request.changed].filter((id) => request.desired.has(id));
    for (const id of ids) {
      const router = request.desired.get(id)!;
      if (isHeldRouter(router) || request.held.has(id)) await this.holdRouter(context, id);
      else await this.processRouter(context, router, request.full);
    }
  }

  /**
   * Neutron's namespace cleanup: a `<prefix><router id>` namespace no desired router claims and this
   * process does not know (the router was deleted while no agent ran) goes, with its rules, devices and
   * any proxy left in it. Its `qr-`/`qg-` devices are unplugged through the interface driver first, as
   * on a router's removal (a standalone linuxbridge driver deletes a bridge of its own with its last
   * port). Then the driver's `sweep` removes what earlier runs left outside the namespaces and marked
   * as theirs (bridges). Routers this process knows leave through `reconcile`'s removal path.
   */
  async cleanupStale(context: StaleCleanupContext, desired: ReadonlyMap<string, Router | HeldRouter>): Promise<HostAction[]> {
    const prefix = this.settings.namespacePrefix;
    const wanted = new Set([...desired.values()].map((r) => this.namespaceOf(r)));
    const removed: HostAction[] = [];
    // An unknown interface_driver fails the routers (each one names it); the namespaces still go.
    const driver = this.interfaceDriverIfKnown();
    for (const namespace of await listNamespaces(context.runner)) {
      if (!namespace.startsWith(prefix) || wanted.has(namespace) || this.byNamespace.has(namespace)) continue;
      // Only names a router of ours could have: Neutron's router ids are UUIDs.
      const id = namespace.slice(prefix.length);
      if (!ROUTER_UUID.test(id)) continue;
      const resource = `router/${id}`;
      const devices = driver ? await routerDevicesIn(context.runner, namespace) : [];
      const driverContext = { runner: context.runner, namespace, logger: context.logger.child({ router: id, namespace }) };
      const deviceActions: HostAction[] = [];
      if (!context.dryRun) {
        for (const device of devices) {
          try {
            await driver!.unplug(driverContext, device);
          } catch (err) {
            // The namespace goes regardless (and the veth with it); the sweep finds what stays.
            context.logger.warn({ err, device, namespace }, "unplugging a stale router device failed");
          }
        }
        // The namespace's processes (a metadata proxy) go with it; their files here.
        await deleteRouterNamespace(context.runner, namespace);
        removeMetadataProxyFiles(this.settings.statePath, id);
      } else if (driver?.planUnplug) {
        for (const device of devices) deviceActions.push(...(await driver.planUnplug(driverContext, device)));
      }
      const veths = deviceActions.filter((a) => a.object === "device").map((a) => `${a.name} (${a.detail})`);
      const others = deviceActions.filter((a) => a.object !== "device").map((a) => ({ ...a, resource }));
      removed.push({ verb: "remove", object: "namespace", name: namespace, resource, ...(veths.length ? { detail: `with its devices ${veths.join(", ")}` } : {}) });
      removed.push(...others);
    }
    if (driver?.sweep) removed.push(...(await driver.sweep({ runner: context.runner, logger: context.logger, dryRun: context.dryRun })));
    return removed;
  }

  /**
   * The plugin's apply observer calls this after every apply of a namespace. After a failed apply
   * the pending work is dropped: the retry computes it again from the kernel.
   */
  async afterApply(event: ApplyEvent): Promise<void> {
    if (event.namespace === undefined) return;
    const id = this.byNamespace.get(event.namespace);
    const state = id === undefined ? undefined : this.routers.get(id);
    if (!state) return;
    const tasks = state.pending;
    state.pending = [];
    if (event.error) {
      cancelTasks(tasks);
      state.pendingRouter = undefined;
      return;
    }
    await this.runPostApply(state, tasks);
  }

  /** Stops every metadata proxy this handler started (agent shutdown, tests). Rules and namespaces stay. */
  async stopProxies(): Promise<void> {
    await Promise.all([...this.routers.values()].map((s) => s.proxy?.stop()));
    for (const s of this.routers.values()) s.proxy = undefined;
  }

  /**
   * The loop stopped (the agent stops, `apply --once` ends): the metadata proxies run on, unwatched,
   * as Neutron's l3 agent leaves haproxy; the next reconcile (or agent) adopts them by pid file.
   */
  async stop(): Promise<void> {
    for (const s of this.routers.values()) s.proxy?.release?.();
  }

  /** The routers this handler has set up on the host, with their namespaces and proxy pids. */
  liveRouters(): { id: string; namespace: string; proxyPid: number | undefined }[] {
    return [...this.routers].map(([id, s]) => ({ id, namespace: s.namespace, proxyPid: s.proxy?.pid }));
  }

  // ---- one router ---------------------------------------------------------------------------------------

  /**
   * A router held as the kernel has it (its input is invalid, or its apply failed): nothing is
   * created, changed or removed for it. Its namespace's manager takes over everything the kernel
   * holds of the l3 agent's chains, so that no apply in the namespace (another plugin's included)
   * removes any of it. A router whose namespace does not exist is not set up until it is valid.
   */
  private async holdRouter(context: ReconcileContext, id: string): Promise<void> {
    const namespace = context.namespace ?? routerNamespaceName(this.settings.namespacePrefix, id);
    const resource = `router/${id}`;
    if (!(await routerNamespaceExists(context.runner, namespace))) {
      context.report?.({ verb: "keep", object: "router", name: id, resource, detail: "its namespace does not exist; nothing is set up until its input is valid" });
      return;
    }
    const manager = context.manager();
    if (!this.kept.has(manager)) {
      const kept = await manager.keepKernelState({ tag: KEPT_TAG });
      this.kept.set(manager, kept.chains);
    }
    context.report?.({ verb: "keep", object: "router", name: id, resource, detail: "kept as the kernel has it: rules, devices and metadata proxy" });
  }

  /** Gives back what `holdRouter` took over in this manager: the router's own rules replace it. */
  private releaseKept(manager: IptablesManager): void {
    const chains = this.kept.get(manager);
    if (chains === undefined) return;
    const prefix = `${manager.wrapName}-`;
    for (const family of (manager.useIpv6 ? [4, 6] : [4]) as (4 | 6)[]) for (const table of Object.values(manager.tables(family))) table.clearRulesByTag(KEPT_TAG);
    for (const { family, table, chain } of chains) manager.table(family, table).removeChain(chain.slice(prefix.length));
    this.kept.delete(manager);
  }

  private async processRouter(context: ReconcileContext, router: Router, full: boolean): Promise<void> {
    const namespace = context.namespace ?? this.namespaceOf(router);
    const logger = context.logger.child({ router: router.id });
    let state = this.routers.get(router.id);
    if (state && state.namespace !== namespace) state = undefined;
    const isNew = state === undefined;
    let created = false;
    if (!context.dryRun) {
      if (isNew || (full && !(await routerNamespaceExists(context.runner, namespace)))) {
        // Deleted under us: a metadata proxy still in it holds it, and its devices, alive.
        await state?.proxy?.namespaceGone?.();
        ({ created } = await ensureRouterNamespace(context.runner, namespace, { useIpv6: this.settings.useIpv6 }));
        // Nothing to adopt in a namespace made just now: the first apply need not read iptables-save.
        if (created) context.manager().assumeEmptyKernel();
        logger.info({ created }, isNew ? "router namespace ready" : "router namespace recreated");
      }
      if (!state) {
        state = { namespace, marks: new AddressScopeMarks(), settled: undefined, pendingRouter: undefined, pending: [], proxy: undefined, logger };
        this.routers.set(router.id, state);
        this.byNamespace.set(namespace, router.id);
      }
    }

    const manager = context.manager();
    this.releaseKept(manager);
    let rules = this.rules.get(manager);
    const freshManager = rules === undefined;
    if (!rules) {
      const version = await this.version(context.runner);
      rules = new RouterRules(manager, `router/${router.id}`, {
        enableMetadataProxy: this.settings.enableMetadataProxy,
        metadataPort: this.settings.metadataPort,
        metadataAccessMark: this.settings.metadataAccessMark,
        externalIngressMark: this.settings.externalIngressMark,
        randomFully: this.settings.useRandomFully && version.supportsRandomFully,
        // A dry run must not allocate marks on the live router.
        marks: context.dryRun ? (this.routers.get(router.id)?.marks.clone() ?? new AddressScopeMarks()) : state!.marks,
      });
      this.rules.set(manager, rules);
    }
    const change = rules.update(router);
    await this.callExtensions(isNew || freshManager ? "addRouter" : "updateRouter", context, router, namespace, manager);
    logger.debug({ groups: change.groups.length, rulesAdded: change.rulesAdded, rulesRemoved: change.rulesRemoved, dryRun: context.dryRun }, "router rules computed");
    if (context.dryRun) {
      if (!(await routerNamespaceExists(context.runner, namespace))) {
        context.report?.({ verb: "create", object: "namespace", name: namespace, resource: `router/${router.id}` });
        if (this.settings.runMetadataProxy) context.report?.({ verb: "start", object: "metadata proxy", name: namespace, resource: `router/${router.id}` });
      }
      return;
    }

    const driver = this.interfaceDriver();
    const devices = await syncRouterDevices({ runner: context.runner, namespace, logger, driver, router, settled: state!.settled, full: full || isNew, created });
    // Work of an earlier reconcile that was never applied: this one recomputed it from the same settled router.
    cancelTasks(state!.pending);
    state!.pending = devices.postApply;
    state!.pendingRouter = router;

    if (this.settings.runMetadataProxy) {
      state!.proxy ??= (this.options.proxyFactory ?? defaultProxyFactory)({
        namespace,
        routerId: router.id,
        port: this.settings.metadataPort,
        upstream: this.settings.metadataUpstream,
        logger: logger.child({ component: "metadata-proxy" }),
        runner: context.runner,
        statePath: this.settings.statePath,
      });
      try {
        await state!.proxy.ensureRunning();
      } catch (err) {
        // Neutron does not hold a router back for its proxy either; the next resync tries again.
        logger.error({ err }, "metadata proxy failed to start");
      }
    }

    if (devices.missing.length > 0) {
      // The rules go in now regardless (the loop would not apply them after an error), then the
      // error makes the loop retry the devices with backoff.
      await manager.deferApplyOff();
      manager.deferApplyOn();
      const tasks = state!.pending;
      state!.pending = [];
      await this.runPostApply(state!, tasks, false);
      logger.warn({ devices: devices.missing, driver: driver.name }, "router devices missing; rules applied, retrying");
      throw new RouterDevicesMissingError(devices.missing, router.id);
    }
  }

  private async removeRouter(context: ReconcileContext, id: string, router: Router | HeldRouter): Promise<void> {
    const namespace = context.namespace ?? this.namespaceOf(router);
    const logger = context.logger.child({ router: id });
    // A stand-in was never set up here: no extension knows it.
    if (!isHeldRouter(router)) await this.callExtensions("deleteRouter", context, router, namespace, context.manager());
    if (context.dryRun) {
      context.report?.({ verb: "remove", object: "namespace", name: namespace, resource: `router/${id}` });
      if (this.settings.runMetadataProxy) context.report?.({ verb: "stop", object: "metadata proxy", name: namespace, resource: `router/${id}` });
      const driver = this.interfaceDriverIfKnown();
      if (driver?.planUnplug && !isHeldRouter(router)) {
        for (const device of routerDevices(router)) {
          for (const action of await driver.planUnplug({ runner: context.runner, namespace, logger }, device)) context.report?.({ ...action, resource: `router/${id}` });
        }
      }
      return;
    }
    const state = this.routers.get(id);
    if (state) {
      cancelTasks(state.pending);
      state.pending = [];
    }
    await state?.proxy?.stop();
    // Unplug first, as Neutron's RouterNamespace.delete: a driver's ports may live outside the
    // namespace (an OVS bridge), and the kernel tears a deleted namespace's veths down only later.
    if (state) {
      const driver = this.interfaceDriver();
      const devices = [...new Set([...routerDevices(state.settled), ...routerDevices(state.pendingRouter), ...(isHeldRouter(router) ? [] : routerDevices(router))])];
      for (const device of devices) await driver.unplug({ runner: context.runner, namespace, logger }, device);
    }
    // The namespace takes the router's rules and conntrack entries with it (and any process in it).
    await deleteRouterNamespace(context.runner, namespace);
    if (this.settings.runMetadataProxy) removeMetadataProxyFiles(this.settings.statePath, id);
    context.forgetNamespace();
    this.routers.delete(id);
    this.byNamespace.delete(namespace);
    // The context's logger names the namespace.
    logger.info({}, "router removed");
  }

  private async runPostApply(state: RouterState, tasks: readonly PostApplyTask[], settle = true): Promise<void> {
    for (const task of tasks) {
      try {
        await task.run();
        state.logger.debug({ task: task.description }, "post-apply task done");
      } catch (err) {
        // The next full pass recomputes addresses from the kernel and tries again.
        state.logger.error({ err, task: task.description }, "post-apply task failed");
      }
    }
    if (settle && state.pendingRouter) {
      state.settled = state.pendingRouter;
      state.pendingRouter = undefined;
    }
  }

  private async callExtensions(
    callback: "addRouter" | "updateRouter" | "deleteRouter",
    context: ReconcileContext,
    router: Router,
    namespace: string,
    iptables: IptablesManager,
  ): Promise<void> {
    for (const extension of this.options.extensions()) {
      const fn = extension[callback];
      if (!fn) continue;
      const extContext: RouterExtensionContext = {
        router,
        namespace,
        iptables,
        runner: context.runner,
        // The context's logger names the namespace.
        logger: context.logger.child({ router: router.id, extension: extension.name }),
        dryRun: context.dryRun,
      };
      try {
        await fn.call(extension, extContext);
      } catch (err) {
        throw new RouterExtensionError(extension.name, callback, router.id, err);
      }
    }
  }

  private interfaceDriver(): InterfaceDriver {
    if (this.driver) return this.driver;
    const drivers = this.options.drivers();
    const found = drivers.find((d) => d.name === this.settings.interfaceDriver);
    if (!found) throw new InterfaceDriverUnknownError(this.settings.interfaceDriver, drivers.map((d) => d.name));
    this.driver = found;
    return found;
  }

  /** The driver, or undefined when `interface_driver` names none (the routers fail with that error). */
  private interfaceDriverIfKnown(): InterfaceDriver | undefined {
    try {
      return this.interfaceDriver();
    } catch (err) {
      if (err instanceof InterfaceDriverUnknownError) return undefined;
      throw err;
    }
  }

  private version(runner: IptablesRunner): Promise<IptablesVersion> {
    let v = this.versions.get(runner);
    if (!v) this.versions.set(runner, (v = runner.version()));
    return v;
  }
}

const defaultProxyFactory: MetadataProxyFactory = (params) => new MetadataProxyProcess(params);

/** The qr-/qg- devices a router has. */
function routerDevices(router: Router | undefined): string[] {
  if (!router) return [];
  return [...router._interfaces.map((p) => internalDeviceName(p.id)), ...(router.gw_port ? [externalDeviceName(router.gw_port.id)] : [])];
}

/** The `qr-`/`qg-` devices a router namespace has (a namespace that is gone has none). */
async function routerDevicesIn(runner: IpRunner, namespace: string): Promise<string[]> {
  let names: readonly string[];
  try {
    if (runner.listLinks) names = await runner.listLinks(namespace);
    else {
      const r = await runner.exec("ip", ["-o", "link", "show"], { namespace });
      names = r.stdout.split("\n").flatMap((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1] ?? []);
    }
  } catch (err) {
    if (err instanceof NamespaceGoneError) return [];
    throw err;
  }
  return names.filter((n) => n.startsWith(INTERNAL_DEV_PREFIX) || n.startsWith(EXTERNAL_DEV_PREFIX));
}

/** Drops post-apply work that will not run (its prepared processes stop). */
function cancelTasks(tasks: readonly PostApplyTask[]): void {
  for (const task of tasks) task.cancel?.();
}
