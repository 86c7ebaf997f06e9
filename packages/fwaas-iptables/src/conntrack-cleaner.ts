import { CommandError, silentLogger, type ConntrackRunner, type CoreLogger } from "@chainwarden/core";
import { deleteEntryArgs, parseConntrackEntries, type ConntrackEntry } from "./conntrack-entry.js";
import type { FirewallRule, IpVersion, PortRange } from "./firewall-rule.js";
import { networkContains, type IpNetwork } from "./ip-network.js";

/** The connections one rule can decide: what a new or changed rule makes stale. */
export interface ConntrackFilter {
  readonly family: IpVersion;
  readonly protocolNumber: number | undefined;
  readonly sourcePort: PortRange | undefined;
  readonly destinationPort: PortRange | undefined;
  readonly source: IpNetwork | undefined;
  readonly destination: IpNetwork | undefined;
}

/**
 * What to remove from a router namespace's connection tracking after a firewall change was applied.
 * A connection the firewall accepted once stays accepted (`RELATED,ESTABLISHED -j ACCEPT` comes
 * first), so without this a new deny rule would not stop a flow already running.
 */
export interface ConntrackPlan {
  /** Families whose every entry goes (a firewall newly enforced: neutron-fwaas' `flush_entries`). */
  readonly flush: readonly IpVersion[];
  /** Entries matching any of these go (a firewall whose rules changed). */
  readonly filters: readonly ConntrackFilter[];
}

/** The plan that removes nothing (what a sync that changed no enforcement returns); `ConntrackCleaner.apply` runs no command for it. */
export const EMPTY_CONNTRACK_PLAN: ConntrackPlan = { flush: [], filters: [] };

/** True when the plan would remove nothing (no family to flush, no filter), so the caller can skip running it. */
export function isEmptyConntrackPlan(plan: ConntrackPlan): boolean {
  return plan.flush.length === 0 && plan.filters.length === 0;
}

/** Joins plans (several firewalls changing on one router in one pass). */
export function mergeConntrackPlans(plans: readonly ConntrackPlan[]): ConntrackPlan {
  const flush = [...new Set(plans.flatMap((p) => p.flush))].sort();
  const filters = plans.flatMap((p) => p.filters).filter((f) => !flush.includes(f.family));
  return { flush, filters };
}

/** The filter for the connections a firewall rule decides: its family, protocol, ports and addresses; an absent field matches any. */
export function conntrackFilterOf(rule: FirewallRule): ConntrackFilter {
  return {
    family: rule.ipVersion,
    protocolNumber: rule.protocolNumber,
    sourcePort: rule.sourcePort,
    destinationPort: rule.destinationPort,
    source: rule.source,
    destination: rule.destination,
  };
}

/**
 * True when the filter's rule would see the connection's first packet. The rules run in FORWARD,
 * after DNAT and before SNAT: the source is the original one, the destination the original one or,
 * for a DNATed connection (a floating IP), the reply's source.
 */
export function conntrackFilterMatches(filter: ConntrackFilter, entry: ConntrackEntry): boolean {
  if (entry.family !== filter.family) return false;
  if (filter.protocolNumber !== undefined && entry.protocolNumber !== filter.protocolNumber) return false;
  const inRange = (range: PortRange | undefined, port: number | undefined) =>
    range === undefined || (port !== undefined && port >= range.min && port <= range.max);
  if (!inRange(filter.sourcePort, entry.sourcePort) || !inRange(filter.destinationPort, entry.destinationPort)) return false;
  if (filter.source && !networkContains(filter.source, entry.source)) return false;
  if (filter.destination) {
    const dnat = entry.replySource !== undefined && networkContains(filter.destination, entry.replySource);
    if (!networkContains(filter.destination, entry.destination) && !dnat) return false;
  }
  return true;
}

/** What `ConntrackCleaner.apply` removed: the families flushed, and how many entries the filters deleted. */
export interface ConntrackResult {
  flushed: IpVersion[];
  /** Entries deleted one by one for the filters. */
  deleted: number;
}

/**
 * Runs a `ConntrackPlan` in a namespace with `conntrack` (argument arrays through the runner, never a
 * shell). Unlike neutron-fwaas it flushes IPv6 as well as IPv4 (`conntrack -D` alone is IPv4 only),
 * and its filters match port ranges and addresses, not just the protocol and the range ends.
 */
export class ConntrackCleaner {
  constructor(
    private readonly runner: ConntrackRunner,
    private readonly logger: CoreLogger = silentLogger,
  ) {}

  /**
   * Runs the plan in the namespace (the host's when undefined): flushes its families, then deletes each listed entry a filter
   * matches in the others. An entry gone meanwhile is not an error; any other failed `conntrack` throws `CommandError` (`NamespaceGoneError` when the listing finds the namespace gone).
   */
  async apply(namespace: string | undefined, plan: ConntrackPlan): Promise<ConntrackResult> {
    const result: ConntrackResult = { flushed: [], deleted: 0 };
    for (const family of plan.flush) {
      await this.deleteOrNothing(["-D", "-f", familyArg(family)], namespace);
      result.flushed.push(family);
    }
    const families = [...new Set(plan.filters.map((f) => f.family))].filter((f) => !plan.flush.includes(f)).sort();
    for (const family of families) {
      const filters = plan.filters.filter((f) => f.family === family);
      const listed = await this.runner.exec("conntrack", ["-L", "-f", familyArg(family)], { namespace });
      for (const entry of parseConntrackEntries(listed.stdout, family)) {
        if (!filters.some((f) => conntrackFilterMatches(f, entry))) continue;
        if (await this.deleteOrNothing(deleteEntryArgs(entry), namespace)) result.deleted++;
      }
    }
    if (result.flushed.length || result.deleted) this.logger.debug({ namespace, ...result }, "conntrack entries removed");
    return result;
  }

  /** `conntrack -D` exits 1 when nothing matched (the connection ended meanwhile): not an error. */
  private async deleteOrNothing(args: string[], namespace: string | undefined): Promise<boolean> {
    const r = await this.runner.exec("conntrack", args, { namespace, reject: false });
    if (r.exitCode === 0) return true;
    if (r.exitCode === 1 && /0 flow entries|No such file or directory|not found/i.test(r.stderr)) return false;
    throw new CommandError(["conntrack", ...args], r.exitCode, r.stderr, namespace === undefined ? {} : { namespace });
  }
}

function familyArg(family: IpVersion): string {
  return family === 4 ? "ipv4" : "ipv6";
}
