import type { ParsedResources, Problem, StateDocument } from "@chainwarden/agent";
import { parseRouter, RESOURCE_ID, type FloatingIpLookup, type HeldRouter, type ParseFloatingIpResult, type ParseRouterResult, type Router } from "./router.js";

/**
 * Results of earlier parses, by router id: the router's JSON text with its result (an unchanged
 * router is not validated again and keeps its object identity, so the reconcile loop sees
 * "unchanged" without a deep compare), and each floating IP entry's JSON text with its result (a
 * changed router re-validates only the entries whose text changed). Entries the last parse did not
 * use are dropped, so it never outgrows one document.
 */
export class RouterParseCache {
  /** By router id: the JSON text last seen and its result. */
  routers = new Map<string, { readonly key: string; readonly result: ParseRouterResult }>();
  floatingIps = new Map<string, FloatingIpEntries>();
}

/** One router's floating IP entries as last parsed: each entry's JSON text and its result, by position (for `RouterParseCache`). */
interface FloatingIpEntries {
  readonly keys: readonly string[];
  readonly results: readonly ParseFloatingIpResult[];
}

/**
 * Finds an entry's earlier result by position (a floating IP that changed in place, the common
 * update) and, when entries were added or removed, by text.
 */
function floatingIpLookup(before: FloatingIpEntries | undefined, keys: readonly string[], results: ParseFloatingIpResult[]): FloatingIpLookup {
  let byText: Map<string, ParseFloatingIpResult> | undefined;
  return {
    get: (i) => {
      if (!before) return undefined;
      if (before.keys.length === keys.length) return before.keys[i] === keys[i] ? before.results[i] : undefined;
      byText ??= new Map(before.keys.map((k, j) => [k, before.results[j]!]));
      return byText.get(keys[i]!);
    },
    set: (i, result) => void (results[i] = result),
  };
}

/** Options of `parseRouters`: the namespace prefix that bounds a router id's length, and an optional cache of earlier results. */
export interface ParseRoutersOptions {
  /** Router namespaces are `<prefix><id>`; ids that would make the name too long are refused. */
  namespacePrefix: string;
  /** Results of earlier parses, reused and refreshed by this one. */
  cache?: RouterParseCache;
}

/** The valid routers, the problems, and the stand-ins of invalid routers whose id could be read. */
export interface ParsedRouters extends ParsedResources<Router | HeldRouter> {
  resources: Map<string, Router>;
  held: Map<string, HeldRouter>;
}

/** `ip netns` keeps names under /run/netns, and core refuses names longer than 64 characters. */
const MAX_NAMESPACE = 64;

/**
 * Reads `{ "routers": [ router, ... ] }` (Neutron's `sync_routers` shape). Each router is validated
 * on its own: an invalid one becomes a Problem naming the router (`resource`) and the field
 * (`routers.<index>.<field>`), and the others still apply. A router with `admin_state_up: false` is
 * left out, as the server leaves it out of what it sends an agent: its namespace is removed. An
 * invalid router whose id can be read has a stand-in (`HeldRouter`): its namespace stays as the
 * kernel has it.
 */
export function parseRouters(document: StateDocument, origin: string, options: ParseRoutersOptions): ParsedRouters {
  const resources = new Map<string, Router>();
  const held = new Map<string, HeldRouter>();
  const problems: Problem[] = [];
  const list = document["routers"];
  if (list === undefined || list === null) return { resources, problems, held };
  if (!Array.isArray(list)) {
    problems.push({ source: origin, path: "routers", message: "expected a list of routers" });
    return { resources, problems, held };
  }
  const maxId = MAX_NAMESPACE - options.namespacePrefix.length;
  const cache = options.cache;
  const seen = new Map<string, { key: string; result: ParseRouterResult }>();
  const seenFips = new Map<string, FloatingIpEntries>();
  list.forEach((entry: unknown, index) => {
    const rawId = typeof entry === "object" && entry !== null ? (entry as { id?: unknown }).id : undefined;
    const id = typeof rawId === "string" && rawId !== "" ? rawId : undefined;
    const problem = (path: string, message: string) => {
      const p: Problem = {
        source: origin,
        path: path ? `routers.${index}.${path}` : `routers.${index}`,
        message: id !== undefined ? `router ${id}: ${message}` : message,
      };
      if (id !== undefined) p.resource = id;
      problems.push(p);
    };
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      problem("", "expected a router object");
      return;
    }
    let result: ParseRouterResult;
    if (cache) {
      // One stringify per router finds the unchanged ones (nearly all of them); only a changed
      // router's floating IPs are stringified one by one, to re-validate just the changed entries.
      const key = JSON.stringify(entry);
      const before = id === undefined ? undefined : cache.floatingIps.get(id);
      // Compared with the text last seen under the same id: cheaper than hashing every router's text.
      const last = id === undefined ? undefined : cache.routers.get(id);
      const hit = last !== undefined && last.key === key ? last.result : undefined;
      if (hit) {
        result = hit;
        if (id !== undefined && before) seenFips.set(id, before);
      } else {
        const fipsRaw = (entry as { _floatingips?: unknown })._floatingips;
        const fipKeys = Array.isArray(fipsRaw) ? fipsRaw.map((f: unknown) => JSON.stringify(f) ?? "undefined") : undefined;
        const results: ParseFloatingIpResult[] = [];
        result = parseRouter(entry, fipKeys && floatingIpLookup(before, fipKeys, results));
        if (id !== undefined && fipKeys && results.length === fipKeys.length) seenFips.set(id, { keys: fipKeys, results });
      }
      if (id !== undefined) seen.set(id, { key, result });
    } else {
      result = parseRouter(entry);
    }
    const { router, issues } = result;
    for (const issue of issues) problem(issue.path, issue.message);
    if (!router) {
      if (id !== undefined && RESOURCE_ID.test(id) && id.length <= maxId) held.set(id, { id, standIn: true });
      return;
    }
    if (router.id.length > maxId) {
      problem("id", `router id is longer than ${maxId} characters, so its namespace name would pass ${MAX_NAMESPACE}`);
      return;
    }
    if (resources.has(router.id)) {
      problem("id", "duplicate router id");
      return;
    }
    if (!router.admin_state_up) return;
    resources.set(router.id, router);
  });
  if (cache) {
    cache.routers = seen;
    cache.floatingIps = seenFips;
  }
  for (const id of resources.keys()) held.delete(id);
  return { resources, problems, held };
}
