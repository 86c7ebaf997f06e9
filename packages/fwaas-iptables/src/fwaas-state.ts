import type { ParsedResources, Problem, StateDocument } from "@chainwarden/agent";
import { firewallCoversRouter, type RouterIdentity } from "./firewall-coverage.js";
import { parseFirewallGroup, type FirewallGroup } from "./firewall-group.js";
import { parseFirewall, type Firewall } from "./firewall.js";
import { firewallChainKey } from "./fwaas-chains.js";
import { RESOURCE_ID } from "./rule-list.js";

/**
 * A firewall as it applies to one router: the unit the reconcile loop schedules. Its id is
 * `<firewall id>@<router id>` and it lives in the router's namespace, so a firewall covering three
 * routers is three resources and a change reaches exactly the routers it covers, each inside that
 * router's own deferred apply (with the l3 agent's rules, one restore).
 */
export interface RouterBoundFirewall {
  readonly kind: "firewall";
  readonly routerId: string;
  readonly namespace: string;
  /** The router's interface port ids as the document gives them (dry runs of a router l3 has not set up). */
  readonly routerPorts: readonly string[];
  readonly firewall: Firewall;
  /** The input and the binding as JSON: equal fingerprints mean nothing to do. */
  readonly fingerprint: string;
}

/**
 * A v2 firewall group as it applies to one router (`<group id>@<router id>`, in the router's namespace): the v2 twin of `RouterBoundFirewall`;
 * its `group.ports` are only this router's, none of them bound by another group.
 */
export interface RouterBoundGroup {
  readonly kind: "firewall_group";
  readonly routerId: string;
  readonly namespace: string;
  readonly routerPorts: readonly string[];
  /** The group, with only the ports this router has (in the group's order). */
  readonly group: FirewallGroup;
  readonly fingerprint: string;
}

/**
 * The stand-in of an invalid firewall (or group) on one router: what could be read of it, enough to
 * keep what the kernel has of it or, where the kernel has nothing, to close its interfaces (its
 * default-policy jumps without its own chains: everything through them is dropped, as for a
 * firewall that is administratively down).
 */
export interface HeldFirewallStandIn {
  readonly kind: "firewall" | "firewall_group";
  readonly standIn: true;
  /** The firewall's (or group's) id. */
  readonly id: string;
  readonly routerId: string;
  readonly namespace: string;
  readonly routerPorts: readonly string[];
  /** A group's ports on this router (as far as they could be read); a v1 firewall covers `qr-+`. */
  readonly ports: readonly string[];
  readonly fingerprint: string;
}

/** Any resource `parseFwaasState` binds to a router: a v1 firewall, a v2 group, or the stand-in of an invalid one (`standIn: true`). */
export type RouterBoundResource = RouterBoundFirewall | RouterBoundGroup | HeldFirewallStandIn;

/** What `parseFwaasState` read: the v1 firewalls and the v2 groups, each as router-bound resources keyed `<id>@<router id>`, with their problems and held stand-ins. */
export interface FwaasState {
  readonly firewalls: ParsedResources<RouterBoundFirewall | HeldFirewallStandIn>;
  readonly groups: ParsedResources<RouterBoundGroup | HeldFirewallStandIn>;
}

/** Options of `parseFwaasState`. */
export interface FwaasStateOptions {
  /** The l3 agent's `namespace_prefix` (router namespaces are `<prefix><router id>`). */
  namespacePrefix: string;
}

interface RouterView extends RouterIdentity {
  readonly ports: readonly string[];
  readonly namespace: string;
}

/**
 * Reads `firewalls` (v1) and `firewall_groups` (v2) from the desired-state document, next to the
 * `routers` they apply to, and binds each valid firewall to the routers it covers.
 *
 * Each firewall is validated on its own: a bad one is a Problem naming the firewall, the rule and
 * the field, and the others still apply. Its problem names the router-bound resources it would have
 * (`<id>@<router>`), so the reconcile loop keeps their last good version, and each has a stand-in
 * (`HeldFirewallStandIn`) for a process that never had one. Conflicts that Neutron's
 * server would have refused are resolved here, the firewall with the smaller id winning, and
 * reported (naming the losing firewall only, so it is not kept): two v1 firewalls on one router, a
 * port in two groups, two firewalls on one router whose ids share the 8 characters chain names keep.
 */
export function parseFwaasState(document: StateDocument, origin: string, options: FwaasStateOptions): FwaasState {
  const routers = readRouters(document, options.namespacePrefix);
  const fwProblems: Problem[] = [];
  const groupProblems: Problem[] = [];
  const firewalls = new Map<string, RouterBoundFirewall>();
  const groups = new Map<string, RouterBoundGroup>();
  const heldFirewalls = new Map<string, HeldFirewallStandIn>();
  const heldGroups = new Map<string, HeldFirewallStandIn>();

  const v1 = readList(document, "firewalls", origin, fwProblems, "firewall", (raw) => {
    const { firewall, issues } = parseFirewall(raw);
    return { value: firewall, issues };
  });
  const v2 = readList(document, "firewall_groups", origin, groupProblems, "firewall group", (raw) => {
    const { group, issues } = parseFirewallGroup(raw);
    return { value: group, issues };
  });

  // Problems of invalid entries name the router-bound resources they would have had.
  const standIn = (kind: HeldFirewallStandIn["kind"], id: string, router: RouterView, ports: readonly string[]): HeldFirewallStandIn => ({
    kind,
    standIn: true,
    id,
    routerId: router.id,
    namespace: router.namespace,
    routerPorts: router.ports,
    ports,
    fingerprint: JSON.stringify(["held", id, router.id, ports, router.ports]),
  });
  for (const bad of v1.invalid) {
    const covered = routers.filter((r) => rawCovers(bad.raw, r));
    pushPerRouter(fwProblems, bad.problems, covered, bad.id);
    if (bad.id !== undefined && RESOURCE_ID.test(bad.id)) for (const r of covered) heldFirewalls.set(`${bad.id}@${r.id}`, standIn("firewall", bad.id, r, []));
  }
  for (const bad of v2.invalid) {
    const ports = rawPorts(bad.raw);
    const covered = routers.filter((r) => r.ports.some((p) => ports.includes(p)));
    pushPerRouter(groupProblems, bad.problems, covered, bad.id);
    if (bad.id !== undefined && RESOURCE_ID.test(bad.id)) {
      for (const r of covered) heldGroups.set(`${bad.id}@${r.id}`, standIn("firewall_group", bad.id, r, ports.filter((p) => r.ports.includes(p) && RESOURCE_ID.test(p))));
    }
  }

  for (const router of routers) {
    // Chain-name keys taken on this router (v2 groups first: they are ordered first in FORWARD too).
    const keys = new Map<string, string>();
    const clash = (id: string, what: string, problems: Problem[], path: string): boolean => {
      const key = firewallChainKey(id);
      const owner = keys.get(key);
      if (owner !== undefined && owner !== id) {
        problems.push({
          source: origin,
          path,
          resource: id,
          message: `${what} ${id}: its chains would be the same as those of ${owner} on router ${router.id} (ids share "${key}"); not applied there`,
        });
        return true;
      }
      keys.set(key, id);
      return false;
    };

    const portOwner = new Map<string, string>();
    for (const { value: group, index, raw } of [...v2.valid].sort((a, b) => compare(a.value.id, b.value.id))) {
      let ports = group.ports.filter((p) => router.ports.includes(p));
      if (ports.length === 0) continue;
      const taken = ports.filter((p) => portOwner.has(p));
      for (const p of taken) {
        groupProblems.push({
          source: origin,
          path: `firewall_groups.${index}.ports`,
          resource: group.id,
          message: `firewall group ${group.id}: port ${p} already has firewall group ${portOwner.get(p)} (a port has at most one); not applied to it`,
        });
      }
      ports = ports.filter((p) => !portOwner.has(p));
      if (ports.length === 0) continue;
      if (clash(group.id, "firewall group", groupProblems, `firewall_groups.${index}.id`)) continue;
      for (const p of ports) portOwner.set(p, group.id);
      const bound: RouterBoundGroup = {
        kind: "firewall_group",
        routerId: router.id,
        namespace: router.namespace,
        routerPorts: router.ports,
        group: { ...group, ports },
        fingerprint: JSON.stringify([raw, router.id, ports, router.ports]),
      };
      groups.set(`${group.id}@${router.id}`, bound);
    }

    let v1Owner: string | undefined;
    for (const { value: fw, index, raw } of [...v1.valid].sort((a, b) => compare(a.value.id, b.value.id))) {
      if (!firewallCoversRouter(fw, router)) continue;
      if (v1Owner !== undefined) {
        fwProblems.push({
          source: origin,
          path: `firewalls.${index}`,
          resource: fw.id,
          message: `firewall ${fw.id}: router ${router.id} already has firewall ${v1Owner} (one v1 firewall per router); not applied there`,
        });
        continue;
      }
      if (clash(fw.id, "firewall", fwProblems, `firewalls.${index}.id`)) continue;
      v1Owner = fw.id;
      firewalls.set(`${fw.id}@${router.id}`, {
        kind: "firewall",
        routerId: router.id,
        namespace: router.namespace,
        routerPorts: router.ports,
        firewall: fw,
        fingerprint: JSON.stringify([raw, router.id, router.ports]),
      });
    }
  }
  // A duplicate id's entry "is" the valid first one: no stand-in where a valid binding exists.
  for (const id of firewalls.keys()) heldFirewalls.delete(id);
  for (const id of groups.keys()) heldGroups.delete(id);
  return {
    firewalls: { resources: firewalls, problems: fwProblems, held: heldFirewalls },
    groups: { resources: groups, problems: groupProblems, held: heldGroups },
  };
}

// --- reading the document -----------------------------------------------------------------------------

interface ListResult<T> {
  valid: { value: T; index: number; raw: unknown }[];
  invalid: { id: string | undefined; raw: unknown; problems: Omit<Problem, "resource">[] }[];
}

function readList<T extends { id: string }>(
  document: StateDocument,
  key: "firewalls" | "firewall_groups",
  origin: string,
  problems: Problem[],
  what: string,
  parse: (raw: unknown) => { value: T | undefined; issues: { path: string; message: string }[] },
): ListResult<T> {
  const out: ListResult<T> = { valid: [], invalid: [] };
  const list = document[key];
  if (list === undefined || list === null) return out;
  if (!Array.isArray(list)) {
    problems.push({ source: origin, path: key, message: `expected a list of ${what}s` });
    return out;
  }
  const seen = new Set<string>();
  list.forEach((raw: unknown, index) => {
    const rawId = typeof raw === "object" && raw !== null ? (raw as { id?: unknown }).id : undefined;
    const id = typeof rawId === "string" && rawId !== "" ? rawId : undefined;
    const name = id !== undefined ? `${what} ${id}` : `${what} #${index}`;
    const issueProblems = (issues: { path: string; message: string }[]) =>
      issues.map((i) => ({ source: origin, path: i.path ? `${key}.${index}.${i.path}` : `${key}.${index}`, message: `${name}: ${i.message}` }));
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
      out.invalid.push({ id, raw, problems: issueProblems([{ path: "", message: `expected a ${what} object` }]) });
      return;
    }
    const { value, issues } = parse(raw);
    if (!value) {
      out.invalid.push({ id, raw, problems: issueProblems(issues) });
      return;
    }
    if (seen.has(value.id)) {
      // Named by id: the first entry with it is valid and applies; this one only reports.
      out.invalid.push({ id: value.id, raw: {}, problems: issueProblems([{ path: "id", message: `duplicate ${what} id` }]) });
      return;
    }
    seen.add(value.id);
    out.valid.push({ value, index, raw });
  });
  return out;
}

/**
 * The routers FWaaS can apply to, read as leniently as the binding needs (the l3 plugin validates
 * and reports routers; a router it leaves out has no namespace, and then nothing is programmed).
 * Routers with `admin_state_up: false` are left out as the l3 plugin leaves them out.
 */
function readRouters(document: StateDocument, prefix: string): RouterView[] {
  const list = document["routers"];
  if (!Array.isArray(list)) return [];
  const out: RouterView[] = [];
  const seen = new Set<string>();
  for (const entry of list as unknown[]) {
    if (typeof entry !== "object" || entry === null) continue;
    const r = entry as Record<string, unknown>;
    const id = r["id"];
    if (typeof id !== "string" || !RESOURCE_ID.test(id) || seen.has(id) || r["admin_state_up"] === false) continue;
    seen.add(id);
    const tenant = typeof r["tenant_id"] === "string" ? r["tenant_id"] : typeof r["project_id"] === "string" ? r["project_id"] : undefined;
    const interfaces = Array.isArray(r["_interfaces"]) ? (r["_interfaces"] as unknown[]) : [];
    const ports = interfaces
      .map((p) => (typeof p === "object" && p !== null ? (p as { id?: unknown }).id : undefined))
      .filter((p): p is string => typeof p === "string");
    out.push({ id, tenantId: tenant, ports, namespace: `${prefix}${id}` });
  }
  return out;
}

/** Which routers an invalid v1 firewall would cover, from what of it is readable. */
function rawCovers(raw: unknown, router: RouterView): boolean {
  if (typeof raw !== "object" || raw === null) return false;
  const r = raw as Record<string, unknown>;
  if (Array.isArray(r["router_ids"])) return (r["router_ids"] as unknown[]).includes(router.id);
  const tenant = r["tenant_id"] ?? r["project_id"];
  return typeof tenant === "string" && tenant === router.tenantId;
}

function rawPorts(raw: unknown): string[] {
  if (typeof raw !== "object" || raw === null) return [];
  const ports = (raw as Record<string, unknown>)["ports"];
  return Array.isArray(ports) ? ports.filter((p): p is string => typeof p === "string") : [];
}

function pushPerRouter(out: Problem[], problems: Omit<Problem, "resource">[], routers: RouterView[], id: string | undefined): void {
  for (const p of problems) {
    if (id === undefined) out.push(p);
    else if (routers.length === 0) out.push({ ...p, resource: id });
    else for (const r of routers) out.push({ ...p, resource: `${id}@${r.id}` });
  }
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
