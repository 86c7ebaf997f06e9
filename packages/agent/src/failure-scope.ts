import type { ByKind } from "./desired-state.js";
import { resourcesOf } from "./error-fields.js";

/**
 * Whose a failure in a namespace's run is (DESIGN §5a, failure isolation), from narrowest to widest:
 * - `resources`: the error names resources (`resource`/`resources`, `kind/id`: a refused restore
 *   line of theirs, an ipset of theirs), or a handler threw naming none while some of its resources
 *   were not held yet: those resources are held (kept as the kernel has them) and the namespace runs
 *   again at once without them; each is retried alone;
 * - `handler`: a handler threw naming no resource, and every one of its resources in the namespace
 *   was held already (or it has none there): the handler itself is benched in the namespace
 *   (`FailingHandlers`), and the namespace runs again at once without it;
 * - `namespace`: anything else (the namespace is gone, the kernel cannot be read or refused a
 *   restore no resource is named in, the xtables lock): the namespace is retried whole with backoff.
 * A handler's failure is thus its own: the other handlers' resources in its namespace still apply.
 */
export type FailureScope =
  | { readonly scope: "resources"; readonly resources: readonly { kind: string; id: string }[]; readonly named: boolean }
  | { readonly scope: "handler"; readonly kind: string }
  | { readonly scope: "namespace" };

/**
 * Errors that are the namespace's or the kernel's, not a handler's, even when a handler's call
 * raised them: with them every handler of the namespace would fail alike. A restore a handler sent
 * early carries the other handlers' changes in its manager too, so it is the namespace's unless it
 * names resources.
 */
const NAMESPACE_CODES: ReadonlySet<string> = new Set(["NAMESPACE_GONE", "SAVE_FAILED", "XTABLES_LOCK", "BACKEND_UNAVAILABLE", "RESTORE_FAILED", "RESOURCE_PROBLEM"]);

/** How deep along `cause` to look for such a code. */
const CAUSE_DEPTH = 8;

export interface FailureScopeInput {
  readonly error: unknown;
  /** The handler whose `reconcile` threw (undefined: the failure came after the handlers, in the apply). */
  readonly failingKind: string | undefined;
  /** The resources the error names that can be held (desired here, not held yet: `FailedResources.culprits`). */
  readonly culprits: readonly { kind: string; id: string }[];
  /** The namespace's desired resources, by kind. */
  readonly desired: ByKind;
  /** The ids held in the run, by kind. */
  readonly held: ReadonlyMap<string, ReadonlySet<string>>;
}

export function failureScope(input: FailureScopeInput): FailureScope {
  if (input.culprits.length > 0) return { scope: "resources", resources: input.culprits, named: true };
  const kind = input.failingKind;
  if (kind === undefined || isNamespaceError(input.error)) return { scope: "namespace" };
  const held = input.held.get(kind);
  const unheld = [...(input.desired.get(kind)?.keys() ?? [])].filter((id) => !held?.has(id));
  if (unheld.length > 0) return { scope: "resources", resources: unheld.map((id) => ({ kind, id })), named: false };
  return { scope: "handler", kind };
}

function isNamespaceError(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; typeof e === "object" && e !== null && depth < CAUSE_DEPTH; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && NAMESPACE_CODES.has(code)) return true;
  }
  return false;
}

/**
 * The resources an error names (`resource` or `resources`, `kind/id`, along the `cause` chain) that
 * can be held: desired in the namespace and not held already.
 */
export function resourcesNamedBy(error: unknown, desired: ByKind, held: ReadonlyMap<string, ReadonlySet<string>>): { kind: string; id: string }[] {
  const out: { kind: string; id: string }[] = [];
  const seen = new Set<string>();
  for (const name of resourcesOf(error)) {
    const slash = name.indexOf("/");
    if (slash <= 0 || seen.has(name)) continue;
    seen.add(name);
    const kind = name.slice(0, slash);
    const id = name.slice(slash + 1);
    if (!desired.get(kind)?.has(id) || held.get(kind)?.has(id)) continue;
    out.push({ kind, id });
  }
  return out;
}
