/**
 * IP address text as iptables 1.8.9 reads and prints it. Literal addresses only: iptables would
 * also resolve host names, expand `a,b` lists into several rules and read `10.1` or `010.0.0.1`
 * the way inet_aton does (10.1.0.0, 8.0.0.1); none of that can be kept in one canonical rule, so
 * those spellings are refused rather than guessed. IPv6 is printed the way glibc's inet_ntop
 * prints it (longest zero run compressed, embedded IPv4 for ::a.b.c.d and ::ffff:a.b.c.d).
 */

/** A parsed address: 4 bytes (IPv4) or 8 16-bit words (IPv6), plus a prefix length. */
export interface ParsedPrefix {
  readonly words: number[];
  readonly prefix: number;
  /** True when the input had no /mask (a host address). */
  readonly host: boolean;
}

const DECIMAL_OCTET = /^(?:0|[1-9][0-9]{0,2})$/;

/** Four dotted decimal octets, no leading zeros. Returns the 4 bytes or undefined. */
export function parseIpv4(text: string): number[] | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const out = new Array<number>(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!DECIMAL_OCTET.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    out[i] = n;
  }
  return out;
}

const HEX_WORD = /^[0-9A-Fa-f]{1,4}$/;

/** RFC 4291 text form, with `::` and an optional trailing dotted IPv4. No zone index. */
export function parseIpv6(text: string): number[] | undefined {
  if (text.length < 2 || text.length > 45) return undefined;
  let tail: number[] = [];
  let body = text;
  const lastColon = text.lastIndexOf(":");
  if (text.indexOf(".", lastColon) !== -1) {
    const v4 = parseIpv4(text.slice(lastColon + 1));
    if (v4 === undefined) return undefined;
    tail = [(v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!];
    body = text.slice(0, lastColon + 1);
    // "::1.2.3.4" leaves "::", "1::1.2.3.4" leaves "1::"; a lone trailing ":" needs a word after it
    if (body.endsWith(":") && !body.endsWith("::")) body = body.slice(0, -1);
  }
  const dbl = body.indexOf("::");
  if (dbl !== -1 && body.indexOf("::", dbl + 1) !== -1) return undefined;
  const parseGroups = (s: string): number[] | undefined => {
    if (s === "") return [];
    const groups = s.split(":");
    const out: number[] = [];
    for (const g of groups) {
      if (!HEX_WORD.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  let words: number[];
  if (dbl === -1) {
    const g = parseGroups(body);
    if (g === undefined) return undefined;
    words = g.concat(tail);
    if (words.length !== 8) return undefined;
  } else {
    const head = parseGroups(body.slice(0, dbl));
    const rest = parseGroups(body.slice(dbl + 2));
    if (head === undefined || rest === undefined) return undefined;
    const known = head.length + rest.length + tail.length;
    if (known > 7) return undefined;
    words = head.concat(new Array<number>(8 - known).fill(0), rest, tail);
  }
  return words;
}

/** glibc inet_ntop(AF_INET6) output for 8 words. */
export function formatIpv6(words: readonly number[]): string {
  let bestBase = -1;
  let bestLen = 0;
  let curBase = -1;
  let curLen = 0;
  for (let i = 0; i < 8; i++) {
    if (words[i] === 0) {
      if (curBase === -1) {
        curBase = i;
        curLen = 1;
      } else curLen++;
    } else if (curBase !== -1) {
      if (bestBase === -1 || curLen > bestLen) {
        bestBase = curBase;
        bestLen = curLen;
      }
      curBase = -1;
    }
  }
  if (curBase !== -1 && (bestBase === -1 || curLen > bestLen)) {
    bestBase = curBase;
    bestLen = curLen;
  }
  if (bestBase !== -1 && bestLen < 2) bestBase = -1;
  let out = "";
  for (let i = 0; i < 8; i++) {
    if (bestBase !== -1 && i >= bestBase && i < bestBase + bestLen) {
      if (i === bestBase) out += ":";
      continue;
    }
    if (i !== 0) out += ":";
    if (i === 6 && bestBase === 0 && (bestLen === 6 || (bestLen === 5 && words[5] === 0xffff))) {
      const a = words[6]!;
      const b = words[7]!;
      out += `${a >> 8}.${a & 0xff}.${b >> 8}.${b & 0xff}`;
      return out;
    }
    out += words[i]!.toString(16);
  }
  if (bestBase !== -1 && bestBase + bestLen === 8) out += ":";
  return out;
}

export function formatIpv4(bytes: readonly number[]): string {
  return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
}

const PREFIX_LEN = /^(?:0|[1-9][0-9]{0,2})$/;

/** Length of a contiguous netmask given as address words, or -1 when the mask has holes. */
function maskLength(words: readonly number[], bitsPerWord: number): number {
  let len = 0;
  let ended = false;
  for (const w of words) {
    for (let b = bitsPerWord - 1; b >= 0; b--) {
      const set = ((w >> b) & 1) === 1;
      if (set) {
        if (ended) return -1;
        len++;
      } else ended = true;
    }
  }
  return len;
}

/**
 * `addr[/len|/mask]` for the family. Masks must be contiguous (iptables would print a hole-y mask
 * in dotted form, which no Neutron rule uses). Returns undefined when the text is not an address.
 */
export function parsePrefix(text: string, family: 4 | 6): ParsedPrefix | undefined {
  const slash = text.indexOf("/");
  const addrText = slash === -1 ? text : text.slice(0, slash);
  const words = family === 4 ? parseIpv4(addrText) : parseIpv6(addrText);
  if (words === undefined) return undefined;
  const bits = family === 4 ? 32 : 128;
  if (slash === -1) return { words, prefix: bits, host: true };
  const maskText = text.slice(slash + 1);
  let prefix: number;
  if (PREFIX_LEN.test(maskText)) {
    prefix = Number(maskText);
    if (prefix > bits) return undefined;
  } else {
    const maskWords = family === 4 ? parseIpv4(maskText) : parseIpv6(maskText);
    if (maskWords === undefined) return undefined;
    prefix = maskLength(maskWords, family === 4 ? 8 : 16);
    if (prefix < 0) return undefined;
  }
  return { words, prefix, host: false };
}

/** Clears the host bits below `prefix`, as the kernel stores `-s`/`-d`. */
export function maskWords(words: readonly number[], prefix: number, family: 4 | 6): number[] {
  const width = family === 4 ? 8 : 16;
  const out = words.slice();
  for (let i = 0; i < out.length; i++) {
    const start = i * width;
    if (prefix >= start + width) continue;
    const keep = Math.max(0, prefix - start);
    const mask = keep === 0 ? 0 : ((0xffff << (width - keep)) & ((1 << width) - 1));
    out[i] = out[i]! & mask;
  }
  return out;
}

export function formatAddress(words: readonly number[], family: 4 | 6): string {
  return family === 4 ? formatIpv4(words) : formatIpv6(words);
}
