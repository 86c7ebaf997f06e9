import type { IpFamily } from "./iptables-runner.js";

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

  /** One map per (family, strictness): indexed, as every rule of every manager looks one up. */
  private readonly maps: (Map<string, string> | undefined)[] = [];

  constructor(readonly limit = 200_000) {}

  /** The canonical text stored for `rule` (+ `comment`), if any. */
  get(family: IpFamily, strict: boolean, rule: string, comment: string | undefined): string | undefined {
    return this.map(family, strict).get(comment === undefined ? rule : `${rule}\u0000${comment}`);
  }

  /** Stores the canonical text of `rule` (+ `comment`). */
  set(family: IpFamily, strict: boolean, rule: string, comment: string | undefined, text: string): void {
    this.store(this.map(family, strict), comment === undefined ? rule : `${rule}\u0000${comment}`, text);
  }

  /**
   * The stored text, or `compute()`'s, stored (a throw stores nothing). One key built and hashed
   * where `get` then `set` would build it twice: a cold add of 2,000 ports looks up ~110k rules,
   * nearly all new.
   */
  resolve(family: IpFamily, strict: boolean, rule: string, comment: string | undefined, compute: () => string): string {
    const map = this.map(family, strict);
    const key = comment === undefined ? rule : `${rule}\u0000${comment}`;
    const hit = map.get(key);
    if (hit !== undefined) return hit;
    const text = compute();
    this.store(map, key, text);
    return text;
  }

  /** Entries held, all maps. */
  get size(): number {
    let n = 0;
    for (const m of this.maps) n += m?.size ?? 0;
    return n;
  }

  /** Forgets every entry. */
  clear(): void {
    this.maps.length = 0;
  }

  private store(map: Map<string, string>, key: string, text: string): void {
    if (map.size >= this.limit) map.clear();
    map.set(key, text);
  }

  private map(family: IpFamily, strict: boolean): Map<string, string> {
    const at = (family === 6 ? 2 : 0) + (strict ? 1 : 0);
    return (this.maps[at] ??= new Map());
  }
}
