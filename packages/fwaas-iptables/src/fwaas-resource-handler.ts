import type { ParsedResources, ReconcileContext, ReconcileRequest, ResourceHandler, StateDocument } from "@chainwarden/agent";
import type { FwaasCoordinator } from "./fwaas-coordinator.js";
import { parseFwaasState, type FwaasState, type RouterBoundResource, type RouterBoundFirewall, type RouterBoundGroup } from "./fwaas-state.js";

/**
 * The resource handler of one FWaaS kind: `firewall` (v1, the document's `firewalls`) or
 * `firewall_group` (v2, `firewall_groups`). Resources are firewalls bound to routers
 * (`<firewall id>@<router id>`, in the router's namespace); the coordinator writes them into the
 * router's manager.
 */
export class FwaasResourceHandler<R extends RouterBoundResource> implements ResourceHandler<R> {
  /** Each kind reads its list; both read `routers` to bind firewalls to routers (the l3 plugin owns that key too). */
  readonly documentKeys: readonly string[];

  constructor(
    readonly kind: R["kind"],
    private readonly coordinator: FwaasCoordinator,
    private readonly parser: FwaasStateParser,
  ) {
    this.documentKeys = [kind === "firewall" ? "firewalls" : "firewall_groups", "routers"];
  }

  parse(document: StateDocument, origin: string): ParsedResources<R> {
    const state = this.parser.parse(document, origin);
    return (this.kind === "firewall" ? state.firewalls : state.groups) as unknown as ParsedResources<R>;
  }

  namespaceOf(resource: R): string {
    return resource.namespace;
  }

  /** Rules hold no functions or cycles, but the fingerprint already says it all and is cheaper. */
  equals(a: R, b: R): boolean {
    return a.fingerprint === b.fingerprint;
  }

  reconcile(context: ReconcileContext, request: ReconcileRequest<R>): Promise<void> {
    return this.coordinator.reconcile(this.kind, context, request);
  }
}

/**
 * Both handlers read the same document (firewalls, groups and the routers they apply to, with
 * conflicts across them): it is parsed once, for the first handler that asks.
 */
export class FwaasStateParser {
  private last: { document: StateDocument; origin: string; state: FwaasState } | undefined;

  constructor(private readonly namespacePrefix: string) {}

  parse(document: StateDocument, origin: string): FwaasState {
    if (this.last?.document === document && this.last.origin === origin) return this.last.state;
    const state = parseFwaasState(document, origin, { namespacePrefix: this.namespacePrefix });
    this.last = { document, origin, state };
    return state;
  }
}

export type FirewallHandler = FwaasResourceHandler<RouterBoundFirewall>;
export type FirewallGroupHandler = FwaasResourceHandler<RouterBoundGroup>;
