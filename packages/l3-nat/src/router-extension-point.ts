import type { ReconcileContext } from "@chainwarden/agent";
import { createExtensionPoint } from "@chainwarden/agent";
import type { HostRunner, IptablesManager } from "@chainwarden/core";
import type { Router } from "./router.js";

/** The agent's pino logger type, without importing pino. */
type Logger = ReconcileContext["logger"];

/** What a router extension sees: the router, its namespace and that namespace's IptablesManager. */
export interface RouterExtensionContext {
  readonly router: Router;
  readonly namespace: string;
  /**
   * The router's manager (wrap name `neutron-l3-agent`), inside the deferred apply of this reconcile:
   * what the extension changes is applied together with the router's own rules, in one restore.
   */
  readonly iptables: IptablesManager;
  readonly runner: HostRunner;
  /** Bound to `{ router, namespace, extension }`. */
  readonly logger: Logger;
  /** `plan`/`status`: compute rules, change nothing else on the host. */
  readonly dryRun: boolean;
}

/**
 * A router extension (Neutron's `L3AgentExtension`: FWaaS, port forwarding, third parties). The
 * callbacks run in the router's reconcile, after its own rules are written and before they are
 * applied. An error names the extension and fails the router's apply (it is retried).
 *
 * `addRouter` means "program this router into this manager from nothing": it runs when the router
 * is new and whenever its manager is new (after a failed apply the agent starts from fresh managers,
 * and a dry run always uses fresh ones). `updateRouter` runs for later changes and resyncs on the same
 * manager. `deleteRouter` runs before the router's namespace is deleted.
 */
export interface L3RouterExtension {
  readonly name: string;
  /** Neutron's `add_router`: program the router into the (new) manager from nothing. Throwing fails the router's apply with `RouterExtensionError` (retried). */
  addRouter?(context: RouterExtensionContext): void | Promise<void>;
  /** Neutron's `update_router`: the router changed or is resynced, on the manager `addRouter` programmed. Throwing fails the apply with `RouterExtensionError`. */
  updateRouter?(context: RouterExtensionContext): void | Promise<void>;
  /** Neutron's `delete_router`: the router goes; runs before its namespace is deleted. Throwing stops the removal before the namespace goes (`RouterExtensionError`, retried). */
  deleteRouter?(context: RouterExtensionContext): void | Promise<void>;
}

/** Where a plugin registers an `L3RouterExtension` (FWaaS, third parties); every registered extension runs in each router's reconcile. */
export const l3AgentRouterExtensionPoint = createExtensionPoint<L3RouterExtension>({ id: "l3-nat.router" });
