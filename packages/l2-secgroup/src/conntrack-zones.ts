/**
 * Conntrack zones, handed out as Neutron's `IpConntrackManager` hands them out: from 4097 upward, the
 * next one after the highest in use, gaps reused only when 65535 is reached (then zones of keys no
 * longer in use are freed first). A zone belongs to a key — a network (`iptables`) or a port
 * (`iptables_hybrid`) — for the life of the agent, so a port that comes back gets its old zone.
 *
 * After a restart the map is recovered from the raw table as Neutron recovers it: every
 * `--physdev-in DEV ... -j CT --zone N` rule gives DEV minus its 3-character prefix → N.
 */
import { LINUX_DEV_PREFIX_LEN, MAX_CONNTRACK_ZONES, ZONE_START } from "./neutron-constants.js";

/** Thrown by `ConntrackZones.allocate` when every zone Neutron hands out is taken by a key still in use. A plain `Error` (no `code`); nothing was allocated. */
export class ConntrackZoneExhaustedError extends Error {
  constructor() {
    super(`all conntrack zones ${ZONE_START}-${MAX_CONNTRACK_ZONES} are in use`);
    this.name = "ConntrackZoneExhaustedError";
  }
}

const RECOVER = /--physdev-in ([A-Za-z0-9-]+).* -j CT --zone (\d+)/;

/**
 * The conntrack zone of each key (a network or a port), as Neutron's `IpConntrackManager` hands them out: stable for the life of the agent,
 * recovered after a restart from the raw table's `CT --zone` rules (`recover`). A dry run allocates in a `clone`.
 */
export class ConntrackZones {
  private readonly zones = new Map<string, number>();
  /** The highest zone in use (0 when none), so the common allocation is O(1). */
  private top = 0;

  /** Adopts the zones of existing raw-table rules (`iptables-save -t raw` text). */
  recover(rawTableSave: string): void {
    for (const line of rawTableSave.split("\n")) {
      const m = RECOVER.exec(line);
      if (!m) continue;
      const key = m[1]!.slice(LINUX_DEV_PREFIX_LEN);
      const zone = Number(m[2]);
      if (zone >= 1 && zone <= MAX_CONNTRACK_ZONES && !this.zones.has(key)) this.set(key, zone);
    }
  }

  /** An independent copy (a dry run allocates in a copy, so it never shifts the live numbering). */
  clone(): ConntrackZones {
    const copy = new ConntrackZones();
    for (const [k, z] of this.zones) copy.set(k, z);
    return copy;
  }

  /** The key's zone if it has one; never allocates (see `allocate`). */
  get(key: string): number | undefined {
    return this.zones.get(key);
  }

  /**
   * The key's zone, allocating one when it has none. `inUse` lists the keys of current ports; it is
   * consulted only when the zones run out.
   */
  allocate(key: string, inUse: () => Iterable<string>): number {
    const have = this.zones.get(key);
    if (have !== undefined) return have;
    let zone = this.findOpen();
    if (zone === undefined) {
      const keep = new Set(inUse());
      for (const k of [...this.zones.keys()]) if (!keep.has(k)) this.zones.delete(k);
      this.top = 0;
      for (const z of this.zones.values()) if (z > this.top) this.top = z;
      zone = this.findOpen();
      if (zone === undefined) throw new ConntrackZoneExhaustedError();
    }
    this.set(key, zone);
    return zone;
  }

  get size(): number {
    return this.zones.size;
  }

  private set(key: string, zone: number): void {
    this.zones.set(key, zone);
    if (zone > this.top) this.top = zone;
  }

  private findOpen(): number | undefined {
    if (this.zones.size === 0) return ZONE_START;
    if (this.top < MAX_CONNTRACK_ZONES) return Math.max(this.top + 1, ZONE_START);
    const used = [...new Set(this.zones.values())].sort((a, b) => a - b);
    // The top is taken: the first gap from ZONE_START.
    let expect = ZONE_START;
    for (const z of used) {
      if (z < ZONE_START) continue;
      if (z !== expect) return expect;
      expect++;
    }
    return expect <= MAX_CONNTRACK_ZONES ? expect : undefined;
  }
}
