import type { Firewall } from "./firewall.js";

/** What decides which v1 firewalls cover a router. */
export interface RouterIdentity {
  readonly id: string;
  /** `tenant_id` (or `project_id`) of the router. */
  readonly tenantId: string | undefined;
}

/**
 * A v1 firewall covers the routers it names (router insertion, Kilo and later) or, without a list,
 * every router of its tenant (the seed's Havana model: "creating a firewall configures the iptables
 * of all the tenant's routers").
 */
export function firewallCoversRouter(firewall: Firewall, router: RouterIdentity): boolean {
  if (firewall.routerIds !== undefined) return firewall.routerIds.includes(router.id);
  return firewall.tenantId !== undefined && firewall.tenantId === router.tenantId;
}
