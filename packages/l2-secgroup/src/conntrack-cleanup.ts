/**
 * Conntrack entries a change makes illegal, as Neutron's `IpConntrackManager` deletes them: the
 * commands are the same `conntrack -D ...` argument lists Neutron runs (flags in its order), built
 * from validated addresses only. They run after the iptables change is applied — deleting an entry
 * earlier would let the next packet re-create it under the old rules.
 */
import type { Direction, Ethertype } from "./neutron-constants.js";

/** One deletion request: a device's addresses in its zone, optionally narrowed to a protocol or remote addresses. */
export interface ConntrackDeletion {
  readonly ethertype: Ethertype;
  readonly direction: Direction;
  /** `conntrack -p` value (Neutron passes the rule's protocol as the API gave it). */
  readonly protocol?: string | undefined;
  /** The port's fixed IPs (only those of `ethertype` are used). */
  readonly deviceIps: readonly string[];
  readonly zone: number;
  /** Remote addresses (a prefix, if any, is dropped as Neutron drops it). Absent: every remote. */
  readonly remoteIps?: readonly string[] | undefined;
}

/**
 * The argument lists (after `conntrack`) for a deletion: `-D [-p P] -f ipv4|ipv6 -d|-s DEVICE_IP -w
 * ZONE [-s|-d REMOTE_IP]`, one per device address and remote address.
 */
export function conntrackCommands(d: ConntrackDeletion): string[][] {
  const family = d.ethertype === "IPv4" ? "ipv4" : "ipv6";
  const v6 = d.ethertype === "IPv6";
  const head = ["-D", ...(d.protocol !== undefined ? ["-p", d.protocol] : []), "-f", family, d.direction === "ingress" ? "-d" : "-s"];
  const out: string[][] = [];
  for (const ip of d.deviceIps) {
    if (ip.includes(":") !== v6) continue;
    const base = [...head, ip, "-w", String(d.zone)];
    if (d.remoteIps === undefined) {
      out.push(base);
      continue;
    }
    for (const remote of d.remoteIps) {
      const address = remote.split("/")[0]!;
      if (address.includes(":") !== v6) continue;
      out.push([...base, d.direction === "ingress" ? "-s" : "-d", address]);
    }
  }
  return out;
}

/** Neutron's `delete_conntrack_state_by_remote_ips`: both directions for the given remotes (or all). */
export function deletionsByRemoteIps(ethertype: Ethertype, deviceIps: readonly string[], zone: number, remoteIps?: readonly string[]): ConntrackDeletion[] {
  return (["ingress", "egress"] as const).map((direction) => ({ ethertype, direction, deviceIps, zone, remoteIps }));
}
