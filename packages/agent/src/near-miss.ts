/**
 * Spelling help for keys: which known key a mistyped one probably meant. Used for our own config
 * (unknown keys are errors with a suggestion) and for the desired-state documents, whose resource
 * dicts come from Neutron and carry many keys we do not read: there, only a key we expect that is
 * missing while a near miss of it is present is worth naming (`floating_ip_adress`, `_interfacs`).
 */

/**
 * The known key closest to `key` within a typo's distance (about one edit per three characters,
 * at most `maxDistance`), if any.
 */
export function closestKey(key: string, known: Iterable<string>, maxDistance = Infinity): string | undefined {
  const wanted = key.toLowerCase().replaceAll("-", "_");
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = editDistance(wanted, k.toLowerCase());
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best !== undefined && best !== key && bestDistance <= Math.min(maxDistance, Math.max(1, Math.floor(key.length / 3))) ? best : undefined;
}

/** `; did you mean X?` for an unknown key, or "". */
export function didYouMean(key: string, known: Iterable<string>): string {
  const best = closestKey(key, known);
  return best !== undefined ? `; did you mean ${best}?` : "";
}

/** A key we expect that is absent while a near miss of it is present. */
export interface NearMissKey {
  /** The key as given (`floating_ip_adress`). */
  readonly given: string;
  /** The key we expect (`floating_ip_address`). */
  readonly expected: string;
}

/**
 * The expected keys absent from `object` for which a present key is a near miss (two edits at
 * most: a server's own keys, such as `gw_port_id` beside `gw_port`, are further apart). Keys that
 * are present as expected, and unknown keys that resemble nothing we read, are not reported: a
 * server sends many keys an agent does not use.
 */
export function nearMissKeys(object: Readonly<Record<string, unknown>>, expected: Iterable<string>): NearMissKey[] {
  const present = Object.keys(object);
  const presentSet = new Set(present);
  const wanted = new Set(expected);
  const missing = [...wanted].filter((k) => !presentSet.has(k));
  if (missing.length === 0) return [];
  const out: NearMissKey[] = [];
  for (const given of present) {
    // A key we read is no typo of another one (`port_range_min` beside a missing `port_range_max`).
    if (wanted.has(given)) continue;
    const expectedKey = closestKey(given, missing, 2);
    if (expectedKey !== undefined) out.push({ given, expected: expectedKey });
  }
  return out;
}

/**
 * The near misses of a Neutron dict (see `nearMissKeys`) as messages, one per misspelled key:
 * `unknown key "floating_ip_adress": did you mean floating_ip_address? (floating_ip_address is
 * missing)`. Nothing for a value that is not a mapping.
 */
export function misspelledKeys(value: unknown, expected: Iterable<string>): { key: string; message: string }[] {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return [];
  return nearMissKeys(value as Record<string, unknown>, expected).map((m) => ({
    key: m.given,
    message: `unknown key ${JSON.stringify(m.given)}: did you mean ${m.expected}? (${m.expected} is missing)`,
  }));
}

/** Levenshtein distance. */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}
