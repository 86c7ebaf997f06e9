/**
 * Small value readers shared by the module specs. Each returns the text iptables-save 1.8.9 prints
 * for a value, or undefined when the input is not a spelling we accept; the caller turns that into
 * an InvalidRuleError naming the option. Where iptables is more liberal than this (octal `010`,
 * service names, abbreviations) we refuse rather than reproduce a lookup that depends on the host.
 */

/** Plain decimal without leading zeros (iptables reads `010` as octal 8 and `0x10` as 16). */
const DECIMAL = /^(?:0|[1-9][0-9]*)$/;
const HEX = /^0[xX][0-9a-fA-F]+$/;

export function parseDecimal(text: string, max: number): number | undefined {
  if (!DECIMAL.test(text) || text.length > 10) return undefined;
  const n = Number(text);
  return n <= max ? n : undefined;
}

/** Decimal or 0x-hex, as marks and masks are usually written. Leading-zero octal is refused. */
export function parseU32(text: string): number | undefined {
  if (HEX.test(text)) {
    const digits = text.slice(2).replace(/^0+(?=.)/, "");
    return digits.length <= 8 ? parseInt(digits, 16) : undefined;
  }
  return parseDecimal(text, 0xffffffff);
}

export function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** A port number 0-65535 (decimal only: a service name depends on /etc/services). */
export function parsePort(text: string): number | undefined {
  return parseDecimal(text, 65535);
}

export interface PortRange {
  readonly min: number;
  readonly max: number;
}

/** `N`, `N:M`, `:M` (from 0) or `N:` (to 65535), with min <= max. */
export function parsePortRange(text: string, separator = ":"): PortRange | undefined {
  const sep = text.indexOf(separator);
  if (sep === -1) {
    const p = parsePort(text);
    return p === undefined ? undefined : { min: p, max: p };
  }
  const a = text.slice(0, sep);
  const b = text.slice(sep + 1);
  const min = a === "" ? 0 : parsePort(a);
  const max = b === "" ? 65535 : parsePort(b);
  if (min === undefined || max === undefined || min > max) return undefined;
  return { min, max };
}

export function formatPortRange(r: PortRange, separator = ":"): string {
  return r.min === r.max ? String(r.min) : `${r.min}${separator}${r.max}`;
}

/**
 * Protocol numbers to the names iptables-save prints. iptables asks getprotobynumber() first, so
 * the names come from /etc/protocols: this table is Debian's netbase 6.4 file, the one the
 * fixtures were probed with. A number not listed prints as the number.
 */
const PROTOCOL_NAMES: ReadonlyMap<number, string> = new Map([
  [1, "icmp"], [2, "igmp"], [3, "ggp"], [4, "ipencap"], [5, "st"], [6, "tcp"], [8, "egp"], [9, "igp"],
  [12, "pup"], [17, "udp"], [20, "hmp"], [22, "xns-idp"], [27, "rdp"], [29, "iso-tp4"], [33, "dccp"],
  [36, "xtp"], [37, "ddp"], [38, "idpr-cmtp"], [41, "ipv6"], [43, "ipv6-route"], [44, "ipv6-frag"],
  [45, "idrp"], [46, "rsvp"], [47, "gre"], [50, "esp"], [51, "ah"], [57, "skip"], [58, "ipv6-icmp"],
  [59, "ipv6-nonxt"], [60, "ipv6-opts"], [73, "rspf"], [81, "vmtp"], [88, "eigrp"], [89, "ospf"],
  [93, "ax.25"], [94, "ipip"], [97, "etherip"], [98, "encap"], [103, "pim"], [108, "ipcomp"],
  [112, "vrrp"], [115, "l2tp"], [124, "isis"], [132, "sctp"], [133, "fc"], [135, "mobility-header"],
  [136, "udplite"], [137, "mpls-in-ip"], [138, "manet"], [139, "hip"], [140, "shim6"], [141, "wesp"],
  [142, "rohc"], [143, "ethernet"],
]);

/** Names iptables accepts for `-p`: /etc/protocols names plus xtables' own aliases. */
const PROTOCOL_NUMBERS: ReadonlyMap<string, number> = (() => {
  const m = new Map<string, number>();
  for (const [num, name] of PROTOCOL_NAMES) m.set(name, num);
  m.set("all", 0);
  m.set("ip", 0);
  m.set("hopopt", 0);
  m.set("icmpv6", 58);
  m.set("mh", 135);
  return m;
})();

/**
 * `-p` value (case-insensitive, as iptables lowercases it) to its number, or undefined when
 * unknown. Numbers are plain decimal 0-255.
 */
export function protocolNumber(text: string): number | undefined {
  const n = parseDecimal(text, 255);
  if (n !== undefined) return n;
  return PROTOCOL_NUMBERS.get(text.toLowerCase());
}

/** The name iptables-save prints for a protocol number (0 prints nothing: it means "all"). */
export function protocolName(num: number): string {
  return PROTOCOL_NAMES.get(num) ?? String(num);
}

/**
 * Interface names as the kernel allows them (at most 15 bytes, IFNAMSIZ - 1) in the characters
 * Linux tools use; `+` is the iptables wildcard. `/`, `:`, `!` and whitespace are refused.
 */
const INTERFACE = /^[A-Za-z0-9_.@+-]{1,15}$/;

export function isInterfaceName(text: string): boolean {
  return INTERFACE.test(text) && text !== "." && text !== "..";
}

/** Characters iptables-save prints without quotes in a string value (xtables_save_string). */
const SAVE_PLAIN = /^[A-Za-z0-9_-]+$/;

/**
 * A string option value (`--comment`, `--log-prefix`) as iptables-save prints it: bare when it is
 * non-empty and only [A-Za-z0-9_-], otherwise in double quotes with `"`, `\` and `'` escaped.
 */
export function saveString(value: string): string {
  if (SAVE_PLAIN.test(value)) return value;
  let out = '"';
  for (const ch of value) {
    if (ch === '"' || ch === "\\" || ch === "'") out += "\\";
    out += ch;
  }
  return out + '"';
}

/**
 * Free text we are willing to carry in a quoted value: no control characters (C0, DEL, C1), no
 * quote or backslash (iptables-save escapes them with a backslash, which we refuse to parse).
 * Returns the reason it is refused, or undefined.
 */
export function unsafeTextReason(value: string): string | undefined {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20 || c === 0x7f || (c >= 0x80 && c <= 0x9f)) {
      return c === 0x0a || c === 0x0d ? "contains a line break" : "contains a control character";
    }
    if (c === 0x22) return "contains a double quote";
    if (c === 0x27) return "contains a single quote (iptables-save escapes it as \\')";
    if (c === 0x5c) return "contains a backslash";
  }
  return undefined;
}

export function utf8Length(value: string): number {
  return Buffer.byteLength(value, "utf8");
}

/** Longest comment the kernel keeps: XT_MAX_COMMENT_LEN is 256 bytes with the NUL; iptables
 * silently cuts a longer one, and a cut comment would never match our text again. */
export const MAX_COMMENT_BYTES = 255;

/**
 * Why a comment cannot be carried in rule text, or undefined when it can. Shared by the comment
 * match spec and `validateComment`, so both refuse exactly the same comments.
 */
export function commentProblem(comment: string): string | undefined {
  if (utf8Length(comment) > MAX_COMMENT_BYTES) {
    return `comment is ${utf8Length(comment)} bytes; the kernel keeps at most ${MAX_COMMENT_BYTES}`;
  }
  const unsafe = unsafeTextReason(comment);
  if (unsafe !== undefined) return `comment ${unsafe}`;
  // A restore script is line based and COMMIT ends a table; we never want that word in rule text.
  if (/\bCOMMIT\b/.test(comment)) return "comment contains the word COMMIT";
  return undefined;
}
