/**
 * The router steps of `l3` (and `fwaas`) reference scenarios (`test-fixtures/reference/README.md`):
 * `add_router` / `update_router` with `router` or `routers`, `remove_router` with `router_id` or
 * `router_ids`.
 */
export type RouterStep<Router = unknown> =
  | { op: "add_router" | "update_router"; routers: Router[] }
  | { op: "remove_router"; routerIds: string[] };

/**
 * Reads a router step; `undefined` when `raw` is another op (for kinds that add their own, like
 * FWaaS). A router op without its router(s) or id(s) throws, naming `where`.
 */
export function parseRouterStep<Router = unknown>(raw: unknown, where: string): RouterStep<Router> | undefined {
  const s = raw as { op?: unknown; router?: Router; routers?: Router[]; router_id?: string; router_ids?: string[] };
  if (s.op === "add_router" || s.op === "update_router") {
    const routers = s.routers ?? (s.router !== undefined ? [s.router] : undefined);
    if (!routers) throw new Error(`${where}: ${s.op} without router(s)`);
    return { op: s.op, routers };
  }
  if (s.op === "remove_router") {
    const ids = s.router_ids ?? (s.router_id !== undefined ? [s.router_id] : undefined);
    if (!ids) throw new Error(`${where}: remove_router without router_id(s)`);
    return { op: "remove_router", routerIds: ids };
  }
  return undefined;
}
