import type { ApplyResult, IptablesManager, IptablesManagerOptions, HostRunner } from "@chainwarden/core";
import type { Logger } from "pino";
import { createExtensionPoint } from "./extension-point.js";
import type { Problem } from "./agent-errors.js";
import type { ManagerNeeds } from "./manager-flavours.js";

/** The desired-state document as read: JSON/YAML values in Neutron's shapes (DESIGN §5). */
export type StateDocument = Record<string, unknown>;

/** How complete a delivered document is. */
export interface StateUpdateOptions {
  /**
   * Top-level keys this source cannot deliver (neutron-server's RPC without neutron-fwaas has no
   * `firewall_groups`): a missing key then means "unknown", not "none". The kinds that read them stay
   * incomplete: nothing of theirs is removed, handlers keep what the kernel has.
   */
  notDelivered?: readonly string[];
}

/** Where a state source delivers: the reconcile loop. */
export interface StateSink {
  /**
   * A complete new desired state. `origin` names where it came from (file path, "etcd", ...).
   * Sources deliver whole documents; the loop works out what changed.
   */
  update(document: StateDocument, origin: string, options?: StateUpdateOptions): void;
  /** A file that does not parse, or other trouble; the last good state stays in force. */
  problem(problem: Problem): void;
}

/** How a state source is doing, for `/readyz`. */
export interface StateSourceHealth {
  /** It has delivered a complete desired state at least once (a file read, a full sync). */
  readonly delivered: boolean;
  /**
   * Whether it is connected to where its state comes from (the RPC sources: the message broker).
   * Absent for a source without a connection (files).
   */
  readonly connected?: boolean;
  /** Why it is not ready, for `/readyz` (`not connected to the message broker`, `no full sync from neutron-server yet`). */
  readonly detail?: string;
}

/** Where desired state comes from. The default watches a JSON/YAML file or a directory of them. */
export interface StateSource {
  readonly name: string;
  /** Starts delivering; resolves once the first document (or problem) was delivered. */
  start(sink: StateSink): Promise<void>;
  /** Stops delivering (closes watchers, connections); the last delivered state stays in force. */
  stop(): Promise<void>;
  /**
   * For `/readyz`: ready once `delivered` and not `connected: false`. Optional: a source without it
   * counts as ready once `start` resolved.
   */
  health?(): StateSourceHealth;
}

/** Where plugins add `StateSource`s (the agent adds the file source itself when `state` is set). */
export const stateSourceExtensionPoint = createExtensionPoint<StateSource>({ id: "agent.state-source" });

/**
 * One kind's resources as parsed by its handler, with the namespace each lives in.
 *
 * What bad input gets (DESIGN §5a): a resource is removed only when a completely read and
 * validated state no longer contains it. So
 * - a problem in one resource names it (`Problem.resource`, its id): the loop keeps the resource's
 *   last good version in force; where this process never had one, it uses the resource's stand-in
 *   from `held` — a handler must give a stand-in for every invalid resource whose id (and
 *   namespace) it could read, or the kernel's copy of it is not protected;
 * - a problem that names no resource (a broken section, an entry without an id) makes the kind's
 *   input incomplete: nothing of the kind is removed until a complete state arrives.
 */
export interface ParsedResources<R> {
  /** The valid resources, by id. */
  resources: Map<string, R>;
  /** One entry per invalid resource (the valid ones still apply). */
  problems: Problem[];
  /**
   * Stand-ins for invalid resources, by id: as much of each as could be read (enough for
   * `namespaceOf`, and for the handler to find what the kernel holds for it). The handler gets
   * them in `desired` with their ids in `held`, and must keep what the kernel has for them, or
   * fail closed where it has nothing.
   */
  held?: Map<string, R>;
}

/**
 * A change on the host outside iptables that a run makes, or in a dry run would make: namespaces,
 * ipsets, processes, devices; and resources kept as the kernel has them or waiting for something.
 * `plan` prints them; live runs log them at debug level.
 */
export interface HostAction {
  /** `keep`: held as the kernel has it (invalid input); `wait`: waits for something the state does not announce. */
  verb: "create" | "remove" | "start" | "stop" | "keep" | "wait";
  /** `namespace`, `ipset`, `metadata proxy`, `device`, `port`, `chains`, ... */
  object: string;
  name: string;
  /** `kind/id` of the resource it is for, when there is one. */
  resource?: string;
  detail?: string;
}

/**
 * What a resource handler is given for one namespace's run: the namespace, its managers, the host's
 * tools, a logger bound to the namespace, and ways to be called again.
 */
export interface ReconcileContext {
  /** The network namespace (undefined: the agent's default, e.g. the host's own). */
  readonly namespace: string | undefined;
  /**
   * Every tool on the host. Take the narrowest runner you use in your own code (`IpsetRunner`,
   * `ConntrackRunner`, `IpRunner`, `ProcessRunner`, `IptablesRunner`): its tests then need only the
   * fakes of those tools.
   */
  readonly runner: HostRunner;
  readonly logger: Logger;
  /** True for `plan` and `status`: compute rules, change nothing on the host (no namespaces, no processes). */
  readonly dryRun: boolean;
  /**
   * The namespace's IptablesManager for a wrap name (default: the agent's `wrap_name`); created on
   * first use and kept between reconciles so applies stay incremental. Already inside the
   * deferred apply that the loop runs for this namespace. Handlers of one namespace share it.
   *
   * Its flavour (`stateless`, `nat`, `useIpv6`) is the wrap name's, whichever handler asks first:
   * what handlers declare in `ResourceHandler.managers`, else the app's (`managerDefaults`: the l2
   * agent's managers are stateless, as Neutron's l2 firewall makes them, so they have no nat or
   * mangle chains; the l3 agent's are stateful, with nat), else stateful, nat and the agent's
   * `use_ipv6`. So call it without options to share the agent's managers. Options you name must
   * match that flavour: otherwise it throws `MANAGER_CONFLICT` (naming your handler and who set the
   * flavour), which fails your handler alone (its resources here are held; see
   * `ResourceHandler.reconcile`). Declare in `managers` what you need, and a clash with another
   * plugin's needs is refused when the agent starts instead.
   */
  manager(options?: Pick<IptablesManagerOptions, "wrapName" | "stateless" | "nat" | "useIpv6">): IptablesManager;
  /** Forget this namespace's managers after the namespace itself was deleted. */
  forgetNamespace(): void;
  /**
   * Call this handler again in this namespace `afterMs` after this run succeeds (sooner when a change
   * runs the namespace first), even if nothing changed: `changed` and `removed` empty, `full` false,
   * the kernel not re-read. For resources waiting on something the state does not announce, such as
   * a port whose tap device does not exist yet. Ignored in dry runs and after a failure (the retry
   * covers it).
   */
  requeue(afterMs: number): void;
  /**
   * A function that calls this handler again in this namespace soon (as `requeue` does, coalesced
   * like a change), for a handler that watches something the state does not announce (a device
   * appearing). Safe to keep and to call at any time: once the loop has stopped, or when nothing is
   * desired or applied in the namespace any more, it does nothing. Undefined when nothing will run
   * the namespace again (a dry run, `apply --once`): do not start watching then. Optional, so that
   * contexts written before it (plugins' test doubles) still fit: call it as `context.waker?.()`.
   */
  waker?(): (() => void) | undefined;
  /**
   * Reports a change on the host outside iptables that this run makes (or, in a dry run, would
   * make), for `plan` and the logs. Optional, so that contexts written before it still fit: call it
   * as `context.report?.(...)`.
   */
  report?(action: HostAction): void;
}

/** What one handler is asked to do in one namespace's run. */
export interface ReconcileRequest<R> {
  /** Every desired resource of this kind in the namespace. */
  desired: ReadonlyMap<string, R>;
  /** Ids added or changed since the last successful reconcile of this namespace (all on a full pass). */
  changed: ReadonlySet<string>;
  /** Ids gone since then, with their last desired value. */
  removed: ReadonlyMap<string, R>;
  /** A full pass (start, resync, retry after failure): handlers should rebuild, not patch. */
  full: boolean;
  /**
   * Ids in `desired` whose value must not be applied: invalid input this process never had a valid
   * version of (the value is the handler's stand-in), or a resource whose apply failed and that is
   * retried alone later (the value is its desired version). Keep what the kernel has for them;
   * where the kernel has nothing, fail closed (a port's traffic dropped, not left to a policy).
   * An id leaving `held` is in `changed`.
   */
  held: ReadonlySet<string>;
  /**
   * False while the kind's input is incomplete (a problem that names no resource, an unknown
   * top-level key, no state read yet): `desired` may lack resources that still exist, so what the
   * kernel holds and no desired resource explains is kept, not removed.
   */
  complete: boolean;
}

/**
 * Turns one kind of resource into rules. Plugins (l3 NAT, security groups, FWaaS) register one per
 * kind they own.
 */
export interface ResourceHandler<R = unknown> {
  /** `router`, `port`, `firewall_group`, ... */
  readonly kind: string;
  /**
   * The top-level keys of the state document this kind reads (`routers`). A key no handler of the
   * agent reads is an error (a typo such as `router:` would otherwise apply nothing, silently), and
   * makes every kind's input incomplete.
   */
  readonly documentKeys: readonly string[];
  /** Picks this kind's resources out of the document and validates each one on its own. */
  parse(document: StateDocument, origin: string): ParsedResources<R>;
  /**
   * Namespaces this handler reconciles on every full pass even when nothing of its kind is desired
   * or applied there (undefined: the agent's default namespace), so that what an earlier run left
   * is removed once a complete state no longer has it (the l2 agent's last port).
   */
  readonly homeNamespaces?: readonly (string | undefined)[];
  /**
   * The managers this handler uses (`context.manager(...)`), with the options it needs of them
   * (`{ stateless: true }` for the l2 firewall's; `{ nat: true }` for a handler that writes NAT
   * rules; `{ wrapName }` for one of its own). Handlers of one namespace share one manager per wrap
   * name, so two handlers that need one wrap name with different options are refused when the
   * agent starts, with a message naming both plugins, the wrap name and the options; declared
   * options also set the flavour `context.manager()` gives everyone for that wrap name (see
   * `ReconcileContext.manager`). An option left out means "whatever the agent's managers are".
   * Optional: without it nothing is checked at start, and a clash shows at apply time as a failure
   * of the handler that asks. Also where the loop keeps this handler's chains when it fails.
   */
  readonly managers?: readonly ManagerNeeds[];
  /** The namespace a resource's rules live in (undefined: the agent's default namespace, `netns`). */
  namespaceOf(resource: R): string | undefined;
  /** Equal resources are not re-reconciled; default: JSON equality. */
  equals?(a: R, b: R): boolean;
  /**
   * Puts the namespace's desired resources of this kind into its managers (see
   * `ReconcileRequest`); the loop applies them once afterwards. A throw is this handler's failure
   * alone (DESIGN §5a): an error that names resources (`resource`/`resources`, `kind/id`) holds
   * those; one that names none holds every resource of this kind in the namespace, and the
   * namespace runs again at once so the other handlers' resources land; the held ones keep what
   * the kernel has and are retried with backoff. A handler that throws even with all its resources
   * held is skipped in the namespace until its retry, and what the kernel has of its chains is
   * kept as it is (never removed, never a half-built model of it applied). Errors about the
   * namespace itself (it is gone, the kernel cannot be read) retry the whole namespace.
   */
  reconcile(context: ReconcileContext, request: ReconcileRequest<R>): Promise<void>;
  /**
   * Removes what an earlier run left for resources that are no longer desired and that this
   * process never saw (a router deleted while the agent was down): Neutron's stale namespace
   * cleanup. Called before every full pass that changes the host (start, resync, apply --once),
   * and, with `dryRun`, by `plan` and `status` to say what it would remove. Never called while the
   * kind's input is incomplete. `desired` holds stand-ins of invalid resources too: what they name
   * stays. Returns what it removed (or would remove).
   */
  cleanupStale?(context: StaleCleanupContext, desired: ReadonlyMap<string, R>): Promise<HostAction[]>;
  /**
   * The loop stopped (the agent stops, or a one-shot pass ended): end what the handler runs beside
   * the rules (watchers). Rules stay. A later loop may call `reconcile` again.
   */
  stop?(): Promise<void>;
}

/** What `ResourceHandler.cleanupStale` is given: the host's tools, a logger, and whether to change nothing. */
export interface StaleCleanupContext {
  readonly runner: HostRunner;
  readonly logger: Logger;
  /** Say what would be removed; remove nothing. */
  readonly dryRun: boolean;
}

/** Where plugins add their `ResourceHandler`s (one per kind; registration order is the order in which a namespace's handlers run). */
export const resourceHandlerExtensionPoint = createExtensionPoint<ResourceHandler>({ id: "agent.resource-handler" });

/** What happened in one namespace's apply. */
export interface ApplyEvent {
  namespace: string | undefined;
  /** `kind/id` of every resource in this apply. */
  resources: string[];
  /**
   * `kind/id` of the resources of the namespace that are held (invalid input kept as the kernel has
   * it, or a failure waiting for its retry): whatever the apply did, not theirs.
   */
  held?: string[];
  result?: ApplyResult;
  /** Set when the apply failed. */
  error?: Error;
  durationMs: number;
  full: boolean;
}

/** Observes every apply (audit logs, external notifications). Must not throw; errors are logged. */
export interface ApplyObserver {
  /** Called after every run of a namespace, success or failure, in the namespace's worker. */
  onApply(event: ApplyEvent): void | Promise<void>;
}

/** Where plugins add `ApplyObserver`s, which hear of every namespace's run. */
export const applyObserverExtensionPoint = createExtensionPoint<ApplyObserver>({ id: "agent.apply-observer" });
