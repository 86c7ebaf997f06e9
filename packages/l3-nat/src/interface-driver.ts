import type { HostAction, ReconcileContext } from "@chainwarden/agent";
import { createExtensionPoint } from "@chainwarden/agent";
import type { IpRunner } from "@chainwarden/core";
import type { RouterPort } from "./router.js";

/** The agent's pino logger type, without importing pino. */
type Logger = ReconcileContext["logger"];

/** What a driver gets to plug or unplug one router port. */
export interface InterfaceDriverContext {
  readonly runner: IpRunner;
  /** The router's namespace, where the port's device must end up. */
  readonly namespace: string;
  readonly logger: Logger;
}

/** What `InterfaceDriver.plug` is asked for (Neutron's `plug`): the device a router port needs in the router namespace, the port, and what is there already. */
export interface PlugRequest {
  /** `qr-<port id[:11]>` or `qg-<port id[:11]>`. */
  readonly device: string;
  readonly port: RouterPort;
  readonly kind: "internal" | "external";
  /** The devices the router namespace has right now (read once per reconcile). */
  readonly existing: ReadonlySet<string>;
  /**
   * `ip -batch` lines for the router namespace, run right after every port is plugged and before
   * the addresses are set: a driver may leave the inner end's link settings (MAC, MTU, up) here
   * instead of starting a command of its own (each costs milliseconds when hundreds of routers are
   * added). Optional: a driver may also set the device up itself.
   */
  readonly linkSetup?: string[];
}

/** What a driver gets to find and remove what earlier runs left (`sweep`). */
export interface InterfaceDriverSweepContext {
  readonly runner: IpRunner;
  readonly logger: Logger;
  /** List what would be removed; remove nothing. */
  readonly dryRun: boolean;
}

/**
 * Neutron's interface driver (`LinuxInterfaceDriver`): makes a router port's device exist in the
 * router namespace, joined to its network. Addresses and routes are not the driver's business; the
 * router sets them once the device is there.
 */
export interface InterfaceDriver {
  /** The name `interface_driver` selects it by (`linuxbridge`, `noop`, or a third party's). */
  readonly name: string;
  /** `ready`: the device exists now. `missing`: it does not and the driver cannot make it (retried later). */
  plug(context: InterfaceDriverContext, request: PlugRequest): Promise<"ready" | "missing">;
  /** Removes a device this router no longer has (and what the driver made for it alone). A missing device is fine. */
  unplug(context: InterfaceDriverContext, device: string): Promise<void>;
  /**
   * Dry runs (`plan`, `status`): what `unplug` would remove, changing nothing. Without it a dry run
   * lists no device removals for the driver.
   */
  planUnplug?(context: InterfaceDriverContext, device: string): Promise<HostAction[]>;
  /**
   * Removes (in a dry run: lists) what earlier runs of this agent left outside the router namespaces
   * and marked as theirs: never anything without the driver's mark. Called by the stale cleanup at
   * every full pass, after the stale namespaces are gone; each action is logged by the loop.
   */
  sweep?(context: InterfaceDriverSweepContext): Promise<HostAction[]>;
}

/**
 * Interface drivers, by name. `@chainwarden/l3-nat` adds `linuxbridge` and `noop`; another plugin can
 * add its own (an OVS one, say) and the `l3-nat` option `interface_driver` picks one.
 */
export const l3InterfaceDriverExtensionPoint = createExtensionPoint<InterfaceDriver>({ id: "l3-nat.interface-driver" });
