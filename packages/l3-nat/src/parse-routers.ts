import type { ParsedResources, Problem, StateDocument } from "@chainwarden/agent";
import { parseRouter, type ParseRouterResult, type Router } from "./router.js";

export interface ParseRoutersOptions {
  /** Router namespaces are `<prefix><id>`; ids that would make the name too long are refused. */
  namespacePrefix: string;
  /**
   * Results of earlier parses by the router's JSON text. An unchanged router is not validated again
   * and keeps its object identity (the reconcile loop then sees "unchanged" without a deep compare).
   * Entries not seen in this parse are dropped.
   */
  cache?: Map<string, ParseRouterResult>;
}

/** `ip netns` keeps names under /run/netns, and core refuses names longer than 64 characters. */
const MAX_NAMESPACE = 64;

/**
 * Reads `{ "routers": [ router, ... ] }` (Neutron's `sync_routers` shape). Each router is validated
 * on its own: an invalid one becomes a Problem naming the router (`resource`) and the field
 * (`routers.<index>.<field>`), and the others still apply. A router with `admin_state_up: false` is
 * left out, as the server leaves it out of what it sends an agent: its namespace is removed.
 */
export function parseRouters(document: StateDocument, origin: string, options: ParseRoutersOptions): ParsedResources<Router> {
  const resources = new Map<string, Router>();
  const problems: Problem[] = [];
  const list = document["routers"];
  if (list === undefined || list === null) return { resources, problems };
  if (!Array.isArray(list)) {
    problems.push({ source: origin, path: "routers", message: "expected a list of routers" });
    return { resources, problems };
  }
  const maxId = MAX_NAMESPACE - options.namespacePrefix.length;
  const cache = options.cache;
  const seen = new Map<string, ParseRouterResult>();
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
      const key = JSON.stringify(entry);
      result = options.cache!.get(key) ?? parseRouter(entry);
      seen.set(key, result);
    } else {
      result = parseRouter(entry);
    }
    const { router, issues } = result;
    for (const issue of issues) problem(issue.path, issue.message);
    if (!router) return;
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
    cache.clear();
    for (const [k, v] of seen) cache.set(k, v);
  }
  return { resources, problems };
}
