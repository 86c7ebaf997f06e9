import { canonicalizeRule, isNamespaceName, NAMESPACE_NAME, ruleTarget } from "@chainwarden/core";
import type { ParsedResources, Problem, StateDocument } from "@chainwarden/agent";
import { z } from "zod";

/** One desired chain set: a wrapped filter chain `cs-<id>` in `namespace`, jumped to from INPUT. */
export interface ChainSet {
  readonly id: string;
  /** The network namespace; undefined: the agent's default (the host's own, or `--netns`). */
  readonly namespace: string | undefined;
  /** IPv4 filter rules, as given (the core canonicalizes them when they are added). */
  readonly rules: readonly string[];
  /**
   * Set on the stand-in of an invalid entry (`ParsedResources.held`): its id and namespace only;
   * the handler keeps what the kernel has of it.
   */
  readonly standIn?: true;
}

/**
 * Neutron keeps 11 characters of a wrapped chain's own name (`neutron-l3-agent-cs-web`), so `cs-`
 * leaves 8 for the id. Longer ids would be cut, and two ids sharing their first 8 characters would
 * collide in one kernel chain, so they are refused here, per resource, rather than failing the
 * whole namespace at apply time.
 */
export const CHAIN_SET_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,7}$/;
/** Rules may end the packet's walk or log it; jumping to chains this plugin does not own is refused. */
export const ALLOWED_TARGETS: ReadonlySet<string> = new Set(["ACCEPT", "DROP", "REJECT", "RETURN", "LOG"]);

const chainSetSchema = z.strictObject({
  id: z.string().regex(CHAIN_SET_ID, "1 to 8 letters, digits, _ or - (not first)"),
  namespace: z.string().regex(NAMESPACE_NAME, "not a valid network namespace name").optional(),
  rules: z.array(z.string().min(1, "empty rule")).max(10_000),
});

export function chainName(id: string): string {
  return `cs-${id}`;
}

export function resourceName(id: string): string {
  return `chain_set/${id}`;
}

/**
 * Reads `{ "chain_sets": [ { id, namespace, rules } ] }`. Every entry is validated on its own: an
 * invalid one becomes a Problem naming it (file, field path, resource) and the others still apply.
 * A document without `chain_sets` has none (it may hold other kinds' resources). An invalid entry
 * whose id and namespace can be read has a stand-in in `held`, so that an agent that never saw it
 * valid (a restart) keeps what the kernel has of it instead of removing it.
 */
export function parseChainSets(document: StateDocument, origin: string): ParsedResources<ChainSet> {
  const resources = new Map<string, ChainSet>();
  const held = new Map<string, ChainSet>();
  const problems: Problem[] = [];
  const raw = document["chain_sets"];
  if (raw === undefined || raw === null) return { resources, problems };
  if (!Array.isArray(raw)) {
    problems.push({ source: origin, path: "chain_sets", message: "expected an array of chain sets" });
    return { resources, problems };
  }
  const seen = new Set<string>();
  raw.forEach((entry: unknown, index) => {
    const rawId = typeof entry === "object" && entry !== null ? (entry as { id?: unknown }).id : undefined;
    // Problem.resource is the id: the reconcile loop keeps the last good version of a resource whose
    // new version is invalid. Without an id the problem names no resource, and the loop keeps every
    // previous chain set this parse did not return (it cannot tell which one the entry was).
    const id = typeof rawId === "string" && rawId !== "" ? rawId : undefined;
    const before = problems.length;
    const problem = (path: string, message: string) =>
      problems.push({
        source: origin,
        path: path ? `chain_sets.${index}.${path}` : `chain_sets.${index}`,
        message,
        ...(id !== undefined ? { resource: id } : {}),
      });

    const standIn = () => {
      const ns = (entry as { namespace?: unknown }).namespace;
      if (id === undefined || !CHAIN_SET_ID.test(id) || (ns !== undefined && (typeof ns !== "string" || !isNamespaceName(ns)))) return;
      held.set(id, { id, namespace: ns as string | undefined, rules: [], standIn: true });
    };
    const parsed = chainSetSchema.safeParse(entry);
    if (!parsed.success) {
      for (const issue of parsed.error.issues) problem(issue.path.join("."), issue.message);
      standIn();
      return;
    }
    const set = parsed.data;
    if (seen.has(set.id)) problem("id", `duplicate chain set id ${JSON.stringify(set.id)}`);
    seen.add(set.id);
    set.rules.forEach((rule, r) => {
      let text: string;
      try {
        text = canonicalizeRule(rule, { family: 4, resource: resourceName(set.id) });
      } catch (err) {
        problem(`rules.${r}`, err instanceof Error ? err.message : String(err));
        return;
      }
      const target = ruleTarget(text);
      if (target && (target.kind === "goto" || !ALLOWED_TARGETS.has(target.target))) {
        problem(`rules.${r}`, `target ${target.target} is not allowed (use one of ${[...ALLOWED_TARGETS].join(", ")})`);
      }
    });
    if (problems.length === before) resources.set(set.id, { id: set.id, namespace: set.namespace, rules: set.rules });
    else standIn();
  });
  for (const id of resources.keys()) held.delete(id);
  return { resources, problems, held };
}
