import type { IpFamily } from "./runner.js";

/**
 * Canonical rule text by rule and comment, per IP family and strictness.
 *
 * Agents add the same rule text many times — every port's DHCP and state rules, one firewall policy
 * on every router — so managers share one cache, by default the process-wide `CanonicalCache.shared`.
 * Canonicalization is a pure function of the text, the comment, the family and strictness; a rule
 * that fails is never stored, so every manager still reports its own resource in the error. Each map
 * starts over past `limit` entries, so a long-lived agent's churn cannot grow it without bound.
 * Benchmarks give their managers a fresh cache to measure what a freshly started agent pays.
 */
export class CanonicalCache {
  static readonly shared = new CanonicalCache();

  private readonly maps = new Map<string, Map<string, string>>();

  constructor(readonly limit = 200_000) {}

  /** The canonical text stored for `rule` (+ `comment`), if any. */
  get(family: IpFamily, strict: boolean, rule: string, comment: string | undefined): string | undefined {
    return this.map(family, strict).get(comment === undefined ? rule : `${rule}\u0000${comment}`);
  }

  set(family: IpFamily, strict: boolean, rule: string, comment: string | undefined, text: string): void {
    const map = this.map(family, strict);
    if (map.size >= this.limit) map.clear();
    map.set(comment === undefined ? rule : `${rule}\u0000${comment}`, text);
  }

  /** Entries held, all maps. */
  get size(): number {
    let n = 0;
    for (const m of this.maps.values()) n += m.size;
    return n;
  }

  clear(): void {
    this.maps.clear();
  }

  private map(family: IpFamily, strict: boolean): Map<string, string> {
    const key = `${family}${strict ? "strict" : ""}`;
    let map = this.maps.get(key);
    if (!map) this.maps.set(key, (map = new Map()));
    return map;
  }
}
