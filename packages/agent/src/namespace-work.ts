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
  /**
   * Kinds whose handler is skipped here after failing (`FailingHandlers`): not called, and every
   * desired resource of theirs counts as held.
   */
  benched?: ReadonlySet<string>;
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
 * pass changes every desired resource. A benched handler is not called: its resources are all
 * held, and what it last applied stays its last applied (`appliedAfter`).
 */
export function namespaceWork(input: NamespaceWorkInput): NamespaceWork {
  const { desired, full } = input;
  const recheck = input.recheck ?? new Set<string>();
  const always = input.always ?? new Set<string>();
  const home = input.home ?? new Set<ResourceHandler>();
  const benched = input.benched ?? new Set<string>();
  const work: Work[] = [];
  const resources: string[] = [];
  const heldList: string[] = [];
  const heldByKind = new Map<string, ReadonlySet<string>>();
  for (const handler of input.handlers) {
    const want = desired.get(handler.kind) ?? new Map<string, unknown>();
    const had = input.applied?.get(handler.kind) ?? new Map<string, unknown>();
    if (benched.has(handler.kind)) {
      heldByKind.set(handler.kind, new Set(want.keys()));
      for (const id of want.keys()) heldList.push(`${handler.kind}/${id}`);
      continue;
    }
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

/**
 * What a namespace has applied once a run succeeds: the desired state it reconciled, except that a
 * benched kind keeps what its handler last applied (and held), so that it is asked to remove what is
 * gone once it is called again.
 */
export function appliedAfter(
  run: { desired: ByKind; heldByKind: ReadonlyMap<string, ReadonlySet<string>> },
  before: { applied: ByKind; appliedHeld: ReadonlyMap<string, ReadonlySet<string>> },
  benched: ReadonlySet<string>,
): { applied: ByKind; appliedHeld: Map<string, ReadonlySet<string>> } {
  const applied: ByKind = new Map(run.desired);
  const appliedHeld = new Map(run.heldByKind);
  for (const kind of benched) {
    const had = before.applied.get(kind);
    if (had) applied.set(kind, had);
    else applied.delete(kind);
    const wasHeld = before.appliedHeld.get(kind);
    if (wasHeld) appliedHeld.set(kind, wasHeld);
    else appliedHeld.delete(kind);
  }
  return { applied, appliedHeld };
}
