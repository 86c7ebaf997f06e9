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

  /** The namespace of the router the resource is bound to (`<namespace_prefix><router id>`): it is reconciled, and applied, with that router. */
  namespaceOf(resource: R): string {
    return resource.namespace;
  }

  /** Rules hold no functions or cycles, but the fingerprint already says it all and is cheaper. */
  equals(a: R, b: R): boolean {
    return a.fingerprint === b.fingerprint;
  }

  /**
   * Records the kind's resources of the namespace and, when the l3 plugin has set up that router, writes every firewall on it into the router's manager
   * (the loop applies it); otherwise they wait for the router's `addRouter`. Held resources are kept as the kernel has them.
   */
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

  /** The FWaaS state of the document (`parseFwaasState`): parsed once per document and origin, the same object for both handlers. */
  parse(document: StateDocument, origin: string): FwaasState {
    if (this.last?.document === document && this.last.origin === origin) return this.last.state;
    const state = parseFwaasState(document, origin, { namespacePrefix: this.namespacePrefix });
    this.last = { document, origin, state };
    return state;
  }
}

/** The handler of kind `firewall` (FWaaS v1, the document's `firewalls`). */
export type FirewallHandler = FwaasResourceHandler<RouterBoundFirewall>;
/** The handler of kind `firewall_group` (FWaaS v2, the document's `firewall_groups`). */
export type FirewallGroupHandler = FwaasResourceHandler<RouterBoundGroup>;
