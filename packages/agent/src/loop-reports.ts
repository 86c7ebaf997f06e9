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

export interface SyncReport {
  /** Namespaces in the pass. */
  namespaces: number;
  /** Namespaces applied successfully (resources held in them included). */
  applied: number;
  failed: { namespace: string | undefined; error: Error }[];
  /** Resources whose apply failed: the rest of their namespace applied; they are retried alone. */
  failedResources: FailedResource[];
  /**
   * The invalid resources of the current desired state, plus the problems state sources reported
   * since the previous report.
   */
  problems: Problem[];
  /** False when no state source has delivered a document: nothing was changed. */
  stateRead: boolean;
}

export interface NamespacePlan {
  namespace: string | undefined;
  /** `kind/id` of every desired resource in the namespace. */
  resources: string[];
  /** `kind/id` of the resources kept as the kernel has them (invalid input). */
  held: string[];
  /** One entry per manager and IP family; `input` is exactly what would be sent. */
  families: FamilyPlan[];
  /** What handlers would change on the host besides iptables (namespaces, ipsets, proxies), and ports waiting. */
  actions: HostAction[];
  /** Left by an earlier run and no longer desired: the stale cleanup would remove it. */
  stale?: boolean;
  /** Set when a handler (or reading the kernel) failed; `families` is then empty. */
  error?: string;
}

export interface PlanReport {
  namespaces: NamespacePlan[];
  /** Problems of the desired state (invalid resources, unknown keys, an unreadable source). */
  problems: Problem[];
  stateRead: boolean;
}

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

export interface StatusReport {
  namespaces: NamespaceStatus[];
  problems: Problem[];
  stateRead: boolean;
}
