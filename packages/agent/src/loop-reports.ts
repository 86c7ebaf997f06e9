import type { FamilyPlan } from "@chainwarden/core";
import type { Problem } from "./agent-errors.js";
import type { HostAction } from "./extension-points.js";

/** A resource whose apply failed: held as the kernel has it and retried alone. */
export interface FailedResource {
  namespace: string | undefined;
  /** `kind/id`. */
  resource: string;
  error: Error;
}

/**
 * A resource handler that failed in a namespace even with all its resources held: skipped there
 * until its retry, what the kernel has of its chains kept as it is (the rest of the namespace applied).
 */
export interface FailedHandler {
  namespace: string | undefined;
  /** The handler's kind. */
  kind: string;
  /** The plugin that registered it, when known. */
  plugin?: string;
  error: Error;
}

/** What a full pass (`start`, `syncOnce`, `apply --once`) did. */
export interface SyncReport {
  /** Namespaces in the pass. */
  namespaces: number;
  /** Namespaces applied successfully (resources held in them included). */
  applied: number;
  failed: { namespace: string | undefined; error: Error }[];
  /** Resources whose apply failed: the rest of their namespace applied; they are retried alone. */
  failedResources: FailedResource[];
  /** Handlers skipped in a namespace after failing there: the rest of the namespace applied. */
  failedHandlers: FailedHandler[];
  /**
   * The invalid resources of the current desired state, plus the problems state sources reported
   * since the previous report.
   */
  problems: Problem[];
  /** False when no state source has delivered a document: nothing was changed. */
  stateRead: boolean;
}

/** What a dry run of one namespace would send, remove and do (`plan`). */
export interface NamespacePlan {
  namespace: string | undefined;
  /** `kind/id` of every desired resource in the namespace. */
  resources: string[];
  /** `kind/id` of the resources kept as the kernel has them (invalid input, a failed apply or handler). */
  held: string[];
  /** One entry per manager and IP family; `input` is exactly what would be sent. */
  families: FamilyPlan[];
  /** What handlers would change on the host besides iptables (namespaces, ipsets, proxies), and ports waiting. */
  actions: HostAction[];
  /** Left by an earlier run and no longer desired: the stale cleanup would remove it. */
  stale?: boolean;
  /**
   * Set when the namespace cannot be planned (the kernel cannot be read, a failure no handler or
   * resource is to blame for); `families` is then empty.
   */
  error?: string;
  /**
   * Handlers that threw in the dry run, handled as a live run would: their resources held, or, if
   * they throw with all of them held, they are skipped and what the kernel has of their chains is
   * kept. `families` is the rest of the namespace.
   */
  failedHandlers?: { kind: string; plugin?: string; error: string }[];
}

/** What `plan` says: per namespace, what an apply would send and do. */
export interface PlanReport {
  namespaces: NamespacePlan[];
  /** Problems of the desired state (invalid resources, unknown keys, an unreadable source). */
  problems: Problem[];
  stateRead: boolean;
}

/** One namespace's row of `status`. */
export interface NamespaceStatus {
  namespace: string | undefined;
  resources: string[];
  /** `kind/id` of the resources kept as the kernel has them (invalid input). */
  held: string[];
  /** The namespace exists (`ip netns list`); always true for the host's own. */
  exists: boolean;
  /** Nothing would be sent, nothing would be removed, nothing is held, and nothing failed. */
  inSync: boolean;
  /** Edit lines a pass would send now. */
  pendingLines: number;
  /** Left by an earlier run and no longer desired: the stale cleanup would remove it. */
  stale?: boolean;
  /** Rules and chains the agent wants there (all managers, tables and families). */
  rules: number;
  chains: number;
  error?: string;
}

/** What `status` says: per namespace, whether the kernel is as desired. */
export interface StatusReport {
  namespaces: NamespaceStatus[];
  problems: Problem[];
  stateRead: boolean;
}
