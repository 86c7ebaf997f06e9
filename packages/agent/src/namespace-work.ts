import { same, type ByKind } from "./desired-state.js";
import type { ReconcileRequest, ResourceHandler } from "./extension-points.js";

/** One handler's call in a run. */
export interface Work {
  handler: ResourceHandler;
  request: ReconcileRequest<unknown>;
}

export interface NamespaceWorkInput {
  /** In registration order. */
  handlers: readonly ResourceHandler[];
  /** The namespace's desired resources now, by kind. */
  desired: ByKind;
  /** What the namespace's last successful run reconciled (none: nothing, as in a dry run). */
  applied?: ByKind;
  /** The ids that run held, by kind. */
  appliedHeld?: ReadonlyMap<string, ReadonlySet<string>>;
  full: boolean;
  /** Kinds that asked to look again (requeue, waker): called even with nothing changed. */
  recheck?: ReadonlySet<string>;
  /** Kinds called even with nothing to do here: their input is incomplete, or just turned complete. */
  always?: ReadonlySet<string>;
  /** Handlers whose home the namespace is: called on a full pass even with nothing desired. */
  home?: ReadonlySet<ResourceHandler>;
  /** The ids held for a kind among its desired ones (stand-ins and failed resources). */
  heldIn(kind: string, desired: ReadonlyMap<string, unknown>): ReadonlySet<string>;
  complete(kind: string): boolean;
}

export interface NamespaceWork {
  /** The handlers to call, in registration order. */
  work: Work[];
  /** `kind/id` of every resource changed or removed (all desired ones on a full pass). */
  resources: string[];
  /** `kind/id` of every held resource. */
  held: string[];
  heldByKind: Map<string, ReadonlySet<string>>;
  /** The desired state the run reconciles (what it has applied once it succeeds). */
  desired: ByKind;
}

/**
 * What each handler has to do in a namespace: the desired state now against what the last
 * successful run reconciled. A resource is changed when it is new, differs (`handler.equals`), or
 * went into or out of being held; removed when it was applied and is no longer desired. A full
 * pass changes every desired resource.
 */
export function namespaceWork(input: NamespaceWorkInput): NamespaceWork {
  const { desired, full } = input;
  const recheck = input.recheck ?? new Set<string>();
  const always = input.always ?? new Set<string>();
  const home = input.home ?? new Set<ResourceHandler>();
  const work: Work[] = [];
  const resources: string[] = [];
  const heldList: string[] = [];
  const heldByKind = new Map<string, ReadonlySet<string>>();
  for (const handler of input.handlers) {
    const want = desired.get(handler.kind) ?? new Map<string, unknown>();
    const had = input.applied?.get(handler.kind) ?? new Map<string, unknown>();
    const held = input.heldIn(handler.kind, want);
    const wasHeld = input.appliedHeld?.get(handler.kind) ?? new Set<string>();
    heldByKind.set(handler.kind, held);
    for (const id of held) heldList.push(`${handler.kind}/${id}`);
    const changed = new Set<string>();
    const removed = new Map<string, unknown>();
    for (const [id, r] of want) {
      if (full || !had.has(id) || !same(handler, had.get(id), r) || held.has(id) !== wasHeld.has(id)) changed.add(id);
    }
    for (const [id, r] of had) if (!want.has(id)) removed.set(id, r);
    if (changed.size === 0 && removed.size === 0 && !recheck.has(handler.kind) && !(full && home.has(handler)) && !always.has(handler.kind)) continue;
    for (const id of changed) resources.push(`${handler.kind}/${id}`);
    for (const id of removed.keys()) resources.push(`${handler.kind}/${id}`);
    work.push({ handler, request: { desired: want, changed, removed, full, held, complete: input.complete(handler.kind) } });
  }
  return { work, resources, held: heldList, heldByKind, desired };
}
