/**
 * What the canonicalizer knows about each match module and target: the option spellings it
 * accepts, how many arguments each takes, whether `!` may precede it, how its value prints, and
 * the order iptables-save 1.8.9 prints the options in (the order of `slots`). Every entry was
 * checked against both iptables backends; the cases are in save-normalization.fixtures.ts.
 *
 * A slot is one printed option. Several input spellings may fill the same slot (`--syn` and
 * `--tcp-flags`, or MARK's `--set-mark`/`--and-mark`/... which all print as `--set-xmark`); two
 * spellings for one slot in a rule is the "cannot be used together" error iptables gives too.
 * A slot printed as "" carries its option name in the value (multiport's `--dports X`).
 */
import { formatAddress, parsePrefix } from "./ip-address.js";
import {
  commentProblem,
  formatPortRange,
  hex,
  isInterfaceName,
  parseDecimal,
  parsePortRange,
  parseU32,
  protocolNumber,
  saveString,
  unsafeTextReason,
  utf8Length,
} from "./value-parsers.js";

export interface SpecContext {
  readonly family: 4 | 6;
  /** Protocol number given with `-p`, undefined when there is none (or it is 0, "all"). */
  readonly protocol: number | undefined;
  readonly protocolInverted: boolean;
  fail(reason: string): never;
}

/** A slot value: text to print, null for "given but prints nothing", undefined for "not given". */
export type SlotValue = string | null | undefined;

export interface ExtensionInstance {
  readonly spec: ExtensionSpec;
  readonly values: SlotValue[];
  readonly inverted: boolean[];
  /** One number a parser may keep for the finalizer (limit keeps its period). */
  extra: number;
}

/**
 * Reads an option's arguments (arg2 is "" for one-argument options) and returns the slot value.
 * Throws through ctx.fail when the value cannot be placed.
 */
export type OptionParser = (arg1: string, arg2: string, ctx: SpecContext, inverted: boolean, inst: ExtensionInstance) => SlotValue;

export interface OptionSpec {
  readonly name: string;
  readonly slot: number;
  readonly args: 0 | 1 | 2;
  readonly negatable: boolean;
  readonly parse: OptionParser;
}

export interface ExtensionSpec {
  readonly kind: "match" | "target";
  /** The name iptables-save prints after `-m` / `-j`. */
  readonly name: string;
  readonly family: 4 | 6 | undefined;
  /** Printed option names in print order; "" when the value carries the name. */
  readonly slots: readonly string[];
  /** Every accepted spelling, canonical or not. */
  readonly options: ReadonlyMap<string, OptionSpec>;
  /** False for tcp/udp/sctp/dccp: nft merges two such matches into one, legacy keeps both. */
  readonly repeatable: boolean;
  /** `-p` protocol numbers (not negated) a match requires, e.g. tcp for `-m tcp`. */
  readonly protocols: readonly number[] | undefined;
  /** Cross-option rules, defaults and required options; runs once the rule is read. */
  readonly finalize: ((inst: ExtensionInstance, ctx: SpecContext) => void) | undefined;
}

interface OptionDef {
  readonly names: readonly string[];
  readonly args: 0 | 1 | 2;
  readonly negatable: boolean;
  readonly parse: OptionParser;
}

interface SlotDef {
  readonly print: string;
  readonly options: readonly OptionDef[];
}

interface SpecDef {
  readonly family?: 4 | 6;
  readonly repeatable?: boolean;
  readonly protocols?: readonly number[];
  readonly finalize?: (inst: ExtensionInstance, ctx: SpecContext) => void;
  readonly slots: readonly SlotDef[];
}

function build(kind: "match" | "target", name: string, def: SpecDef): ExtensionSpec {
  const options = new Map<string, OptionSpec>();
  def.slots.forEach((s, slot) => {
    for (const o of s.options) {
      for (const n of o.names) options.set(n, { name: n, slot, args: o.args, negatable: o.negatable, parse: o.parse });
    }
  });
  return {
    kind,
    name,
    family: def.family,
    slots: def.slots.map((s) => s.print),
    options,
    repeatable: def.repeatable ?? true,
    protocols: def.protocols,
    finalize: def.finalize,
  };
}

/**
 * Throws through ctx.fail. A function declaration, so TypeScript narrows after the call (a call
 * through a contextually typed parameter does not count as an assertion).
 */
function bad(ctx: SpecContext, reason: string): never {
  return ctx.fail(reason);
}

const NEG = true;
const opt = (names: string | readonly string[], args: 0 | 1 | 2, parse: OptionParser, negatable = false): OptionDef => ({
  names: typeof names === "string" ? [names] : names,
  args,
  negatable,
  parse,
});
const slot = (print: string, ...options: OptionDef[]): SlotDef => ({ print, options });
/** A flag slot: the option alone, printed under its own name. */
const flag = (name: string, negatable = false): SlotDef => slot(name, opt(name, 0, FLAG, negatable));

const FLAG: OptionParser = () => "";

function requireAny(what: string): (inst: ExtensionInstance, ctx: SpecContext) => void {
  return (inst, ctx) => {
    for (const v of inst.values) if (v !== undefined) return;
    bad(ctx, `${inst.spec.kind === "match" ? "-m" : "-j"} ${inst.spec.name} needs ${what}`);
  };
}

function requireSlot(index: number, what: string): (inst: ExtensionInstance, ctx: SpecContext) => void {
  return (inst, ctx) => {
    if (inst.values[index] === undefined) bad(ctx, `${inst.spec.kind === "match" ? "-m" : "-j"} ${inst.spec.name} needs ${what}`);
  };
}

// ---------------------------------------------------------------- value parsers bound to options

/** tcp/udp/sctp/dccp `--sport`/`--dport`: `N:N` prints as `N`; the full range 0:65535 prints nothing. */
const portMatch: OptionParser = (a, _b, ctx, inverted) => {
  const r = parsePortRange(a);
  if (r === undefined) bad(ctx, `bad port or port range "${a}" (decimal N or N:M with N <= M)`);
  if (r.min === 0 && r.max === 65535) {
    // nft drops the whole tcp match for "! --dport 0:65535", legacy keeps it: no common text.
    if (inverted) bad(ctx, `"! ${a}" matches no port`);
    return null;
  }
  return formatPortRange(r);
};

const TCP_FLAGS: ReadonlyArray<readonly [string, number]> = [
  ["FIN", 0x01], ["SYN", 0x02], ["RST", 0x04], ["PSH", 0x08], ["ACK", 0x10], ["URG", 0x20],
];

function parseTcpFlagList(text: string, ctx: SpecContext): number {
  let bits = 0;
  for (const raw of text.split(",")) {
    const name = raw.toUpperCase();
    if (name === "ALL") bits |= 0x3f;
    else if (name === "NONE") continue;
    else {
      const f = TCP_FLAGS.find(([n]) => n === name);
      if (f === undefined) bad(ctx, `unknown TCP flag "${raw}"`);
      bits |= f[1];
    }
  }
  return bits;
}

function formatTcpFlags(bits: number): string {
  if (bits === 0) return "NONE";
  let out = "";
  for (const [n, b] of TCP_FLAGS) if (bits & b) out += out === "" ? n : `,${n}`;
  return out;
}

const tcpFlags: OptionParser = (mask, comp, ctx) => {
  const m = parseTcpFlagList(mask, ctx);
  const c = parseTcpFlagList(comp, ctx);
  // A zero mask tests nothing and iptables-save drops the option altogether.
  if (m === 0) bad(ctx, "--tcp-flags with an empty mask tests nothing");
  return `${formatTcpFlags(m)} ${formatTcpFlags(c)}`;
};

const tcpOption: OptionParser = (a, _b, ctx) => {
  const n = parseDecimal(a, 255);
  if (n === undefined || n === 0) bad(ctx, `bad TCP option number "${a}" (1-255)`);
  return String(n);
};

interface IcmpName {
  readonly name: string;
  readonly type: number;
  /** undefined: any code. */
  readonly code?: number;
}

/** libxtables' icmp_codes table of iptables 1.8.9 (aliases included). */
const ICMP4_NAMES: readonly IcmpName[] = [
  { name: "any", type: 255 },
  { name: "echo-reply", type: 0 }, { name: "pong", type: 0 },
  { name: "destination-unreachable", type: 3 },
  { name: "network-unreachable", type: 3, code: 0 }, { name: "host-unreachable", type: 3, code: 1 },
  { name: "protocol-unreachable", type: 3, code: 2 }, { name: "port-unreachable", type: 3, code: 3 },
  { name: "fragmentation-needed", type: 3, code: 4 }, { name: "source-route-failed", type: 3, code: 5 },
  { name: "network-unknown", type: 3, code: 6 }, { name: "host-unknown", type: 3, code: 7 },
  { name: "network-prohibited", type: 3, code: 9 }, { name: "host-prohibited", type: 3, code: 10 },
  { name: "tos-network-unreachable", type: 3, code: 11 }, { name: "tos-host-unreachable", type: 3, code: 12 },
  { name: "communication-prohibited", type: 3, code: 13 }, { name: "host-precedence-violation", type: 3, code: 14 },
  { name: "precedence-cutoff", type: 3, code: 15 },
  { name: "source-quench", type: 4 },
  { name: "redirect", type: 5 },
  { name: "network-redirect", type: 5, code: 0 }, { name: "host-redirect", type: 5, code: 1 },
  { name: "tos-network-redirect", type: 5, code: 2 }, { name: "tos-host-redirect", type: 5, code: 3 },
  { name: "echo-request", type: 8 }, { name: "ping", type: 8 },
  { name: "router-advertisement", type: 9 },
  { name: "router-solicitation", type: 10 },
  { name: "time-exceeded", type: 11 }, { name: "ttl-exceeded", type: 11 },
  { name: "ttl-zero-during-transit", type: 11, code: 0 }, { name: "ttl-zero-during-reassembly", type: 11, code: 1 },
  { name: "parameter-problem", type: 12 },
  { name: "ip-header-bad", type: 12, code: 0 }, { name: "required-option-missing", type: 12, code: 1 },
  { name: "timestamp-request", type: 13 },
  { name: "timestamp-reply", type: 14 },
  { name: "address-mask-request", type: 17 },
  { name: "address-mask-reply", type: 18 },
];

/** icmpv6_codes of iptables 1.8.9 (the mld-* names came later and are refused by 1.8.9). */
const ICMP6_NAMES: readonly IcmpName[] = [
  { name: "destination-unreachable", type: 1 },
  { name: "no-route", type: 1, code: 0 }, { name: "communication-prohibited", type: 1, code: 1 },
  { name: "beyond-scope", type: 1, code: 2 }, { name: "address-unreachable", type: 1, code: 3 },
  { name: "port-unreachable", type: 1, code: 4 }, { name: "failed-policy", type: 1, code: 5 },
  { name: "reject-route", type: 1, code: 6 },
  { name: "packet-too-big", type: 2 },
  { name: "time-exceeded", type: 3 }, { name: "ttl-exceeded", type: 3 },
  { name: "ttl-zero-during-transit", type: 3, code: 0 }, { name: "ttl-zero-during-reassembly", type: 3, code: 1 },
  { name: "parameter-problem", type: 4 },
  { name: "bad-header", type: 4, code: 0 }, { name: "unknown-header-type", type: 4, code: 1 },
  { name: "unknown-option", type: 4, code: 2 },
  { name: "echo-request", type: 128 }, { name: "ping", type: 128 },
  { name: "echo-reply", type: 129 }, { name: "pong", type: 129 },
  { name: "router-solicitation", type: 133 },
  { name: "router-advertisement", type: 134 },
  { name: "neighbour-solicitation", type: 135 }, { name: "neighbor-solicitation", type: 135 },
  { name: "neighbour-advertisement", type: 136 }, { name: "neighbor-advertisement", type: 136 },
  { name: "redirect", type: 137 },
];

const ICMP4_BY_NAME = new Map(ICMP4_NAMES.map((n) => [n.name, n]));
const ICMP6_BY_NAME = new Map(ICMP6_NAMES.map((n) => [n.name, n]));

/**
 * `--icmp-type`/`--icmpv6-type`: a full name (iptables also takes unambiguous abbreviations; we do
 * not), `T` or `T/C`. Prints `T` or `T/C`; IPv4 type 255 prints as `any`.
 */
function icmpType(v6: boolean): OptionParser {
  const byName = v6 ? ICMP6_BY_NAME : ICMP4_BY_NAME;
  return (a, _b, ctx) => {
    let type: number | undefined;
    let code: number | undefined;
    const named = byName.get(a.toLowerCase());
    if (named !== undefined) {
      type = named.type;
      code = named.code;
    } else {
      const slash = a.indexOf("/");
      type = parseDecimal(slash === -1 ? a : a.slice(0, slash), 255);
      if (slash !== -1) {
        code = parseDecimal(a.slice(slash + 1), 255);
        if (code === undefined) type = undefined;
      }
      if (type === undefined) bad(ctx, `unknown ${v6 ? "ICMPv6" : "ICMP"} type "${a}" (a full name, N or N/CODE)`);
    }
    if (!v6 && type === 255) return "any";
    return code === undefined ? String(type) : `${type}/${code}`;
  };
}

const MULTIPORT_PROTOCOLS = [6, 17, 136, 132, 33];

/**
 * multiport's list: up to 15 ports, a range `N:M` (N < M) counting as two. libxt_multiport checks
 * the protocol while reading the option, so `-p` must come before it (a later `-p` fails).
 */
function portList(option: string): OptionParser {
  return (a, _b, ctx) => {
    if (ctx.protocol === undefined || !MULTIPORT_PROTOCOLS.includes(ctx.protocol)) {
      bad(ctx, `${option} needs -p tcp, udp, udplite, sctp or dccp before it`);
    }
    let count = 0;
    for (const item of a.split(",")) {
      const colon = item.indexOf(":");
      if (colon === -1) {
        if (parsePortRange(item) === undefined) bad(ctx, `bad port "${item}" in ${option}`);
        count += 1;
      } else {
        const r = parsePortRange(item);
        if (r === undefined || colon === 0 || colon === item.length - 1 || r.min >= r.max) {
          bad(ctx, `bad port range "${item}" in ${option} (N:M with N < M)`);
        }
        count += 2;
      }
    }
    if (count > 15) bad(ctx, `${option} lists more than 15 ports (a range counts as two)`);
    return `${option} ${a}`;
  };
}

/** A comma list of names printed as a fixed-order list (state, ctstate, ctstatus, addrtype). */
function nameSet(what: string, order: readonly string[], zero?: string): OptionParser {
  const index = new Map(order.map((n, i) => [n, i]));
  return (a, _b, ctx) => {
    let bits = 0;
    for (const raw of a.split(",")) {
      const name = raw.toUpperCase();
      if (zero !== undefined && name === zero) continue;
      const i = index.get(name);
      if (i === undefined) bad(ctx, `unknown ${what} "${raw}" in "${a}"`);
      bits |= 1 << i;
    }
    if (bits === 0) return zero ?? bad(ctx, `empty ${what} list`);
    let out = "";
    for (let i = 0; i < order.length; i++) if (bits & (1 << i)) out += out === "" ? order[i] : `,${order[i]}`;
    return out;
  };
}

const STATE_ORDER = ["INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED"] as const;
const CTSTATE_ORDER = [...STATE_ORDER, "SNAT", "DNAT"] as const;
const CTSTATUS_ORDER = ["EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED"] as const;
const ADDRTYPE_ORDER = [
  "UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "ANYCAST", "MULTICAST", "BLACKHOLE", "UNREACHABLE", "PROHIBIT", "THROW", "NAT", "XRESOLVE",
] as const;

/** conntrack addresses print as given (no host-bit masking), without the mask for a host. */
const ctAddress: OptionParser = (a, _b, ctx) => {
  const p = parsePrefix(a, ctx.family);
  if (p === undefined) bad(ctx, `bad IPv${ctx.family} address "${a}"`);
  const bits = ctx.family === 4 ? 32 : 128;
  const addr = formatAddress(p.words, ctx.family);
  return p.prefix === bits ? addr : `${addr}/${p.prefix}`;
};

const ctPort: OptionParser = (a, _b, ctx) => {
  const colon = a.indexOf(":");
  const r = parsePortRange(a);
  if (r === undefined || colon === 0 || colon === a.length - 1) bad(ctx, `bad port or range "${a}" (N or N:M)`);
  return formatPortRange(r);
};

const ctProto: OptionParser = (a, _b, ctx) => {
  const n = protocolNumber(a);
  if (n === undefined) bad(ctx, `unknown protocol "${a}"`);
  return String(n);
};

const ctDir: OptionParser = (a, _b, ctx) => {
  const d = a.toUpperCase();
  if (d !== "ORIGINAL" && d !== "REPLY") bad(ctx, `--ctdir takes ORIGINAL or REPLY, not "${a}"`);
  return d;
};

const comment: OptionParser = (a, _b, ctx) => {
  const problem = commentProblem(a);
  if (problem !== undefined) bad(ctx, problem);
  return saveString(a);
};

const MAC_OCTET = /^[0-9A-Fa-f]{1,2}$/;
const macAddress: OptionParser = (a, _b, ctx) => {
  const parts = a.split(":");
  if (parts.length !== 6 || !parts.every((p) => MAC_OCTET.test(p))) bad(ctx, `bad MAC address "${a}"`);
  // Both backends print lower case, two digits per octet, whatever case was written.
  return parts.map((p) => p.toLowerCase().padStart(2, "0")).join(":");
};

const interfaceName: OptionParser = (a, _b, ctx) => {
  if (!isInterfaceName(a)) bad(ctx, `bad interface name "${a}" (1-15 characters of A-Z a-z 0-9 _ . @ + -)`);
  return a;
};

const SET_NAME = /^[A-Za-z0-9_.:@+][A-Za-z0-9_.:@+-]{0,30}$/;
const SET_FLAGS = /^(?:src|dst)(?:,(?:src|dst)){0,5}$/;
const matchSet: OptionParser = (name, flags, ctx) => {
  if (!SET_NAME.test(name)) bad(ctx, `bad ipset name "${name}" (at most 31 characters)`);
  if (!SET_FLAGS.test(flags)) bad(ctx, `--match-set direction must be a comma list of src/dst, not "${flags}"`);
  return `${name} ${flags}`;
};

/** `! --update-counters` prints; the plain option restores the default and prints nothing. */
const negatedOnlyFlag: OptionParser = (_a, _b, _ctx, inverted) => (inverted ? "" : null);

function markValue(a: string, ctx: SpecContext, what: string): [number, number | undefined] {
  const slash = a.indexOf("/");
  const value = parseU32(slash === -1 ? a : a.slice(0, slash));
  const mask = slash === -1 ? undefined : parseU32(a.slice(slash + 1));
  if (value === undefined || (slash !== -1 && mask === undefined)) bad(ctx, `bad ${what} "${a}" (VALUE[/MASK], decimal or 0x hex, 32 bits)`);
  return [value, mask];
}

/** `-m mark --mark`, `-m connmark --mark`: `0xV[/0xM]`, the all-ones mask left out. */
const markMatch: OptionParser = (a, _b, ctx) => {
  const [v, m] = markValue(a, ctx, "mark");
  return m === undefined || m === 0xffffffff ? hex(v) : `${hex(v)}/${hex(m)}`;
};

/** MARK/CONNMARK set operations all print as `--set-xmark V/M` (libxt_MARK's translation). */
type XmarkOp = "set-xmark" | "set-mark" | "and-mark" | "or-mark" | "xor-mark";
function xmark(op: XmarkOp, prefix: string): OptionParser {
  return (a, _b, ctx) => {
    const [v, m] = markValue(a, ctx, `--${op} value`);
    if (m !== undefined && op !== "set-xmark" && op !== "set-mark") bad(ctx, `--${op} takes a value without a mask`);
    let value: number;
    let mask: number;
    switch (op) {
      case "set-xmark": value = v; mask = m ?? 0xffffffff; break;
      case "set-mark": value = v; mask = ((m ?? 0xffffffff) | v) >>> 0; break;
      case "and-mark": value = 0; mask = ~v >>> 0; break;
      case "or-mark": value = v; mask = v; break;
      case "xor-mark": value = v; mask = 0; break;
    }
    return `${prefix}${hex(value)}/${hex(mask)}`;
  };
}

const maskOption: OptionParser = (a, _b, ctx) => {
  const v = parseU32(a);
  if (v === undefined) bad(ctx, `bad mask "${a}"`);
  return hex(v);
};

// limit: XT_LIMIT_SCALE and the units of libxt_limit.
const LIMIT_SCALE = 10000;
const LIMIT_UNITS: ReadonlyArray<readonly [string, number]> = [["second", 1], ["minute", 60], ["hour", 3600], ["day", 86400]];
const LIMIT_PRINT: ReadonlyArray<readonly [string, number]> = [
  ["day", LIMIT_SCALE * 86400], ["hour", LIMIT_SCALE * 3600], ["min", LIMIT_SCALE * 60], ["sec", LIMIT_SCALE],
];

/** libxt_limit's print_rate: the coarsest unit that still shows the period without much loss. */
function formatRate(period: number): string {
  let i = 1;
  for (; i < LIMIT_PRINT.length; i++) {
    const mult = LIMIT_PRINT[i]![1];
    if (period > mult || Math.floor(mult / period) < mult % period) break;
  }
  const [name, mult] = LIMIT_PRINT[i - 1]!;
  return `${Math.floor(mult / period)}/${name}`;
}

const limitRate: OptionParser = (a, _b, ctx, _inv, inst) => {
  const slash = a.indexOf("/");
  const count = parseDecimal(slash === -1 ? a : a.slice(0, slash), 0xffffffff);
  let mult = 1;
  if (slash !== -1) {
    const unit = a.slice(slash + 1).toLowerCase();
    const found = unit === "" ? undefined : LIMIT_UNITS.find(([n]) => n.startsWith(unit));
    if (found === undefined) bad(ctx, `bad rate "${a}" (N/second, N/minute, N/hour or N/day)`);
    mult = found[1];
  }
  if (count === undefined || count === 0) bad(ctx, `bad rate "${a}"`);
  const period = Math.floor((LIMIT_SCALE * mult) / count);
  if (period === 0) bad(ctx, `rate "${a}" is faster than 10000/second`);
  inst.extra = period;
  return formatRate(period);
};

const limitBurst: OptionParser = (a, _b, ctx) => {
  const n = parseDecimal(a, 10000);
  if (n === undefined || n === 0) bad(ctx, `bad --limit-burst "${a}" (1-10000)`);
  return n === 5 ? null : String(n);
};

const DEFAULT_LIMIT_PERIOD = (LIMIT_SCALE * 3600) / 3;

const limitFinalize = (inst: ExtensionInstance, ctx: SpecContext): void => {
  if (inst.values[0] === undefined) {
    inst.values[0] = formatRate(DEFAULT_LIMIT_PERIOD);
    inst.extra = DEFAULT_LIMIT_PERIOD;
  }
  const burstText = inst.values[1];
  const burst = burstText === undefined || burstText === null ? 5 : Number(burstText);
  // xt_limit's checkentry refuses a rate whose period * burst overflows 32 bits (legacy fails the
  // restore at COMMIT); nft does not check. Refuse it so both backends agree.
  if (inst.extra * burst > 0xffffffff) bad(ctx, "limit rate too slow for its burst (the legacy kernel refuses it)");
};

// ------------------------------------------------------------------------------- match specs

const TCP = 6;
const UDP = 17;
const ICMP = 1;
const ICMPV6 = 58;
const SCTP = 132;
const DCCP = 33;
const UDPLITE = 136;

const portSlots = (): SlotDef[] => [
  slot("--sport", opt(["--sport", "--source-port"], 1, portMatch, NEG)),
  slot("--dport", opt(["--dport", "--destination-port"], 1, portMatch, NEG)),
];

const MATCHES: readonly ExtensionSpec[] = [
  build("match", "tcp", {
    repeatable: false,
    protocols: [TCP],
    slots: [
      ...portSlots(),
      slot("--tcp-option", opt("--tcp-option", 1, tcpOption, NEG)),
      slot("--tcp-flags", opt("--tcp-flags", 2, tcpFlags, NEG), opt("--syn", 0, () => "FIN,SYN,RST,ACK SYN", NEG)),
    ],
  }),
  build("match", "udp", { repeatable: false, protocols: [UDP], slots: portSlots() }),
  build("match", "sctp", { repeatable: false, protocols: [SCTP], slots: portSlots() }),
  build("match", "dccp", { repeatable: false, protocols: [DCCP], slots: portSlots() }),
  build("match", "icmp", {
    family: 4,
    protocols: [ICMP],
    slots: [slot("--icmp-type", opt("--icmp-type", 1, icmpType(false), NEG))],
    finalize: requireSlot(0, "--icmp-type"),
  }),
  build("match", "icmp6", {
    family: 6,
    protocols: [ICMPV6],
    slots: [slot("--icmpv6-type", opt("--icmpv6-type", 1, icmpType(true), NEG))],
    finalize: requireSlot(0, "--icmpv6-type"),
  }),
  build("match", "multiport", {
    protocols: [TCP, UDP, UDPLITE, SCTP, DCCP],
    slots: [
      slot(
        "",
        opt(["--dports", "--destination-ports"], 1, portList("--dports"), NEG),
        opt(["--sports", "--source-ports"], 1, portList("--sports"), NEG),
        opt("--ports", 1, portList("--ports"), NEG),
      ),
    ],
    finalize: requireSlot(0, "one of --dports, --sports, --ports"),
  }),
  build("match", "state", {
    slots: [slot("--state", opt("--state", 1, nameSet("state", STATE_ORDER), NEG))],
    finalize: requireSlot(0, "--state"),
  }),
  build("match", "conntrack", {
    slots: [
      slot("--ctstate", opt("--ctstate", 1, nameSet("conntrack state", CTSTATE_ORDER), NEG)),
      slot("--ctproto", opt("--ctproto", 1, ctProto, NEG)),
      slot("--ctorigsrc", opt("--ctorigsrc", 1, ctAddress, NEG)),
      slot("--ctorigdst", opt("--ctorigdst", 1, ctAddress, NEG)),
      slot("--ctreplsrc", opt("--ctreplsrc", 1, ctAddress, NEG)),
      slot("--ctrepldst", opt("--ctrepldst", 1, ctAddress, NEG)),
      slot("--ctorigsrcport", opt("--ctorigsrcport", 1, ctPort, NEG)),
      slot("--ctorigdstport", opt("--ctorigdstport", 1, ctPort, NEG)),
      slot("--ctreplsrcport", opt("--ctreplsrcport", 1, ctPort, NEG)),
      slot("--ctrepldstport", opt("--ctrepldstport", 1, ctPort, NEG)),
      slot("--ctstatus", opt("--ctstatus", 1, nameSet("conntrack status", CTSTATUS_ORDER, "NONE"), NEG)),
      slot("--ctdir", opt("--ctdir", 1, ctDir)),
    ],
    finalize: requireAny("at least one option"),
  }),
  build("match", "comment", {
    slots: [slot("--comment", opt("--comment", 1, comment))],
    finalize: requireSlot(0, "--comment"),
  }),
  build("match", "mac", {
    slots: [slot("--mac-source", opt("--mac-source", 1, macAddress, NEG))],
    finalize: requireSlot(0, "--mac-source"),
  }),
  build("match", "physdev", {
    slots: [
      flag("--physdev-is-in", NEG),
      slot("--physdev-in", opt("--physdev-in", 1, interfaceName, NEG)),
      flag("--physdev-is-out", NEG),
      slot("--physdev-out", opt("--physdev-out", 1, interfaceName, NEG)),
      flag("--physdev-is-bridged", NEG),
    ],
    finalize: requireAny("a --physdev-* option"),
  }),
  build("match", "set", {
    slots: [
      slot("--match-set", opt(["--match-set", "--set"], 2, matchSet, NEG)),
      flag("--return-nomatch"),
      slot("--update-counters", opt("--update-counters", 0, negatedOnlyFlag, NEG)),
      slot("--update-subcounters", opt("--update-subcounters", 0, negatedOnlyFlag, NEG)),
    ],
    finalize: requireSlot(0, "--match-set"),
  }),
  build("match", "mark", {
    slots: [slot("--mark", opt("--mark", 1, markMatch, NEG))],
    finalize: requireSlot(0, "--mark"),
  }),
  build("match", "connmark", {
    slots: [slot("--mark", opt("--mark", 1, markMatch, NEG))],
    finalize: requireSlot(0, "--mark"),
  }),
  build("match", "addrtype", {
    slots: [
      slot("--src-type", opt("--src-type", 1, nameSet("address type", ADDRTYPE_ORDER), NEG)),
      slot("--dst-type", opt("--dst-type", 1, nameSet("address type", ADDRTYPE_ORDER), NEG)),
      flag("--limit-iface-in"),
      flag("--limit-iface-out"),
    ],
    finalize: (inst, ctx) => {
      if (inst.values[0] === undefined && inst.values[1] === undefined) bad(ctx, "-m addrtype needs --src-type or --dst-type");
      if (inst.values[2] !== undefined && inst.values[3] !== undefined) bad(ctx, "--limit-iface-in and --limit-iface-out exclude each other");
    },
  }),
  build("match", "limit", {
    slots: [slot("--limit", opt("--limit", 1, limitRate)), slot("--limit-burst", opt("--limit-burst", 1, limitBurst))],
    finalize: limitFinalize,
  }),
];

// ------------------------------------------------------------------------------ target specs

const REJECT4: ReadonlyMap<string, string> = new Map([
  ["icmp-net-unreachable", "icmp-net-unreachable"], ["net-unreach", "icmp-net-unreachable"],
  ["icmp-host-unreachable", "icmp-host-unreachable"], ["host-unreach", "icmp-host-unreachable"],
  ["icmp-proto-unreachable", "icmp-proto-unreachable"], ["proto-unreach", "icmp-proto-unreachable"],
  ["icmp-port-unreachable", "icmp-port-unreachable"], ["port-unreach", "icmp-port-unreachable"],
  ["icmp-net-prohibited", "icmp-net-prohibited"], ["net-prohib", "icmp-net-prohibited"],
  ["icmp-host-prohibited", "icmp-host-prohibited"], ["host-prohib", "icmp-host-prohibited"],
  ["icmp-admin-prohibited", "icmp-admin-prohibited"], ["admin-prohib", "icmp-admin-prohibited"],
  ["tcp-reset", "tcp-reset"], ["tcp-rst", "tcp-reset"],
]);

const REJECT6: ReadonlyMap<string, string> = new Map([
  ["icmp6-no-route", "icmp6-no-route"], ["no-route", "icmp6-no-route"],
  ["icmp6-adm-prohibited", "icmp6-adm-prohibited"], ["adm-prohibited", "icmp6-adm-prohibited"],
  ["icmp6-addr-unreachable", "icmp6-addr-unreachable"], ["addr-unreach", "icmp6-addr-unreachable"],
  ["icmp6-port-unreachable", "icmp6-port-unreachable"], ["port-unreach", "icmp6-port-unreachable"],
  ["icmp6-policy-fail", "icmp6-policy-fail"], ["policy-fail", "icmp6-policy-fail"],
  ["icmp6-reject-route", "icmp6-reject-route"], ["reject-route", "icmp6-reject-route"],
  ["tcp-reset", "tcp-reset"],
]);

const rejectWith: OptionParser = (a, _b, ctx) => {
  // iptables also takes abbreviations ("icmp-port"); only the full names and the short aliases here.
  const t = (ctx.family === 4 ? REJECT4 : REJECT6).get(a.toLowerCase());
  if (t === undefined) bad(ctx, `unknown IPv${ctx.family} reject type "${a}"`);
  return t;
};

const rejectFinalize = (inst: ExtensionInstance, ctx: SpecContext): void => {
  const t = inst.values[0];
  if (t === undefined) inst.values[0] = ctx.family === 4 ? "icmp-port-unreachable" : "icmp6-port-unreachable";
  // The kernel refuses tcp-reset unless the rule matches TCP only (nft: EINVAL, legacy: COMMIT fails).
  if (t === "tcp-reset" && (ctx.protocol !== TCP || ctx.protocolInverted)) bad(ctx, "--reject-with tcp-reset needs -p tcp");
};

const PORT_PROTOCOLS = [TCP, UDP, SCTP, DCCP];

/**
 * libxt_NAT and friends check the protocol number while reading the ports, so `-p` must come
 * before them; they do not look at "!" (`! -p tcp` passes, probed).
 */
function needsPortProtocol(ctx: SpecContext, what: string): void {
  if (ctx.protocol === undefined || !PORT_PROTOCOLS.includes(ctx.protocol)) {
    bad(ctx, `${what} with ports needs -p tcp, udp, sctp or dccp before it`);
  }
}

function compareWords(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}

function natAddressRange(text: string, ctx: SpecContext, option: string): string {
  const dash = text.indexOf("-");
  const first = parsePrefix(dash === -1 ? text : text.slice(0, dash), ctx.family);
  const last = dash === -1 ? first : parsePrefix(text.slice(dash + 1), ctx.family);
  if (first === undefined || last === undefined || !first.host || !last.host) bad(ctx, `bad address or range "${text}" in ${option}`);
  const cmp = compareWords(first.words, last.words);
  if (cmp > 0) bad(ctx, `address range "${text}" in ${option} runs backwards`);
  const a = formatAddress(first.words, ctx.family);
  return cmp === 0 ? a : `${a}-${formatAddress(last.words, ctx.family)}`;
}

function natPorts(text: string, ctx: SpecContext, option: string): string {
  if (text.includes(":")) bad(ctx, `bad port range "${text}" in ${option} (use N-M)`);
  const r = parsePortRange(text, "-");
  const dash = text.indexOf("-");
  if (r === undefined || dash === 0 || dash === text.length - 1) bad(ctx, `bad port or range "${text}" in ${option} (N or N-M)`);
  return formatPortRange(r, "-");
}

/**
 * DNAT/SNAT `--to-*`: IPv4 `A[-B][:P[-Q]]`, IPv6 `A[-B]` or `[A]:P[-Q]`; ports need a port protocol.
 */
function natRange(option: string): OptionParser {
  return (a, _b, ctx) => {
    if (ctx.family === 4) {
      const colon = a.indexOf(":");
      if (colon === -1) return natAddressRange(a, ctx, option);
      needsPortProtocol(ctx, option);
      return `${natAddressRange(a.slice(0, colon), ctx, option)}:${natPorts(a.slice(colon + 1), ctx, option)}`;
    }
    if (a.startsWith("[")) {
      const close = a.indexOf("]");
      if (close === -1) bad(ctx, `bad address "${a}" in ${option}`);
      const addr = a.slice(1, close);
      if (addr.includes("-")) bad(ctx, `an IPv6 address range with ports in ${option} is not supported`);
      const rest = a.slice(close + 1);
      const host = natAddressRange(addr, ctx, option);
      if (rest === "") return host;
      if (!rest.startsWith(":")) bad(ctx, `bad address "${a}" in ${option}`);
      needsPortProtocol(ctx, option);
      return `[${host}]:${natPorts(rest.slice(1), ctx, option)}`;
    }
    return natAddressRange(a, ctx, option);
  };
}

const redirectPorts: OptionParser = (a, _b, ctx) => {
  needsPortProtocol(ctx, "--to-ports");
  return natPorts(a, ctx, "--to-ports");
};

const ctZone: OptionParser = (a, _b, ctx) => {
  const n = parseU32(a);
  if (n === undefined || n > 65535) bad(ctx, `bad CT zone "${a}" (0-65535)`);
  // Zone 0 is the default zone and prints nothing.
  return n === 0 ? null : String(n);
};

const LOG_LEVELS: ReadonlyMap<string, number> = new Map([
  ["emerg", 0], ["panic", 0], ["alert", 1], ["crit", 2], ["error", 3], ["warning", 4], ["notice", 5], ["info", 6], ["debug", 7],
]);

const logLevel: OptionParser = (a, _b, ctx) => {
  const n = parseDecimal(a, 7) ?? LOG_LEVELS.get(a);
  if (n === undefined) bad(ctx, `unknown log level "${a}" (0-7 or emerg, alert, crit, error, warning, notice, info, debug)`);
  // 4 (warning) is the default and prints nothing.
  return n === 4 ? null : String(n);
};

/** LOG's prefix: at most 29 bytes (the kernel's 30 with NUL); iptables silently cuts a longer one. */
const logPrefix: OptionParser = (a, _b, ctx) => {
  if (a === "") bad(ctx, "--log-prefix is empty");
  if (utf8Length(a) > 29) bad(ctx, `--log-prefix is ${utf8Length(a)} bytes; iptables keeps at most 29`);
  const unsafe = unsafeTextReason(a);
  if (unsafe !== undefined) bad(ctx, `--log-prefix ${unsafe}`);
  return saveString(a);
};

const markTargetSlots = (prefix: string): OptionDef[] => [
  opt("--set-xmark", 1, xmark("set-xmark", prefix)),
  opt("--set-mark", 1, xmark("set-mark", prefix)),
  opt("--and-mark", 1, xmark("and-mark", prefix)),
  opt("--or-mark", 1, xmark("or-mark", prefix)),
  opt("--xor-mark", 1, xmark("xor-mark", prefix)),
];

const connmarkFinalize = (inst: ExtensionInstance, ctx: SpecContext): void => {
  const [op, nf, ct, mask] = inst.values;
  if (op === undefined) bad(ctx, "-j CONNMARK needs --set-xmark, --set-mark, --save-mark or --restore-mark");
  const saveRestore = op === "--save-mark" || op === "--restore-mark";
  if (!saveRestore) {
    // With a set operation, --ctmask silently replaces the mask: refuse instead of reproducing that.
    if (nf !== undefined || ct !== undefined || mask !== undefined) bad(ctx, "--nfmask/--ctmask/--mask only go with --save-mark or --restore-mark");
    return;
  }
  if (mask !== undefined && (nf !== undefined || ct !== undefined)) bad(ctx, "--mask cannot be used together with --nfmask or --ctmask");
  // save/restore always print both masks; --mask sets both.
  inst.values[1] = nf ?? mask ?? "0xffffffff";
  inst.values[2] = ct ?? mask ?? "0xffffffff";
  inst.values[3] = undefined;
};

const TARGETS: readonly ExtensionSpec[] = [
  build("target", "REJECT", {
    slots: [slot("--reject-with", opt("--reject-with", 1, rejectWith))],
    finalize: rejectFinalize,
  }),
  build("target", "DNAT", {
    slots: [
      slot("--to-destination", opt(["--to-destination", "--to"], 1, natRange("--to-destination"))),
      flag("--random"),
      flag("--persistent"),
    ],
    finalize: requireSlot(0, "--to-destination"),
  }),
  build("target", "SNAT", {
    slots: [
      slot("--to-source", opt(["--to-source", "--to"], 1, natRange("--to-source"))),
      flag("--random"),
      flag("--random-fully"),
      flag("--persistent"),
    ],
    finalize: requireSlot(0, "--to-source"),
  }),
  build("target", "MASQUERADE", {
    slots: [slot("--to-ports", opt(["--to-ports", "--to-port"], 1, redirectPorts)), flag("--random"), flag("--random-fully")],
  }),
  build("target", "REDIRECT", {
    slots: [slot("--to-ports", opt(["--to-ports", "--to-port"], 1, redirectPorts)), flag("--random")],
  }),
  build("target", "MARK", {
    slots: [slot("--set-xmark", ...markTargetSlots(""))],
    finalize: requireSlot(0, "one of --set-xmark, --set-mark, --and-mark, --or-mark, --xor-mark"),
  }),
  build("target", "CONNMARK", {
    slots: [
      slot(
        "",
        ...markTargetSlots("--set-xmark "),
        opt("--save-mark", 0, () => "--save-mark"),
        opt("--restore-mark", 0, () => "--restore-mark"),
      ),
      slot("--nfmask", opt("--nfmask", 1, maskOption)),
      slot("--ctmask", opt("--ctmask", 1, maskOption)),
      slot("", opt("--mask", 1, maskOption)),
    ],
    finalize: connmarkFinalize,
  }),
  build("target", "CT", {
    slots: [flag("--notrack"), slot("--zone", opt("--zone", 1, ctZone))],
  }),
  build("target", "NOTRACK", { slots: [] }),
  build("target", "LOG", {
    slots: [
      slot("--log-prefix", opt("--log-prefix", 1, logPrefix)),
      slot("--log-level", opt("--log-level", 1, logLevel)),
      flag("--log-tcp-sequence"),
      flag("--log-tcp-options"),
      flag("--log-ip-options"),
      flag("--log-uid"),
      flag("--log-macdecode"),
    ],
  }),
];

const byName = (specs: readonly ExtensionSpec[]): ReadonlyMap<string, ExtensionSpec> => new Map(specs.map((s) => [s.name, s]));

/** Match modules by the name given to `-m` (ip6tables also takes icmpv6 / ipv6-icmp for icmp6). */
export const MATCH_SPECS: ReadonlyMap<string, ExtensionSpec> = (() => {
  const m = new Map(byName(MATCHES));
  m.set("icmpv6", m.get("icmp6")!);
  m.set("ipv6-icmp", m.get("icmp6")!);
  return m;
})();

export const TARGET_SPECS: ReadonlyMap<string, ExtensionSpec> = byName(TARGETS);

/** Verdicts that take no options and are not chains. */
export const STANDARD_TARGETS: ReadonlySet<string> = new Set(["ACCEPT", "DROP", "RETURN"]);

/**
 * Targets iptables knows that we do not canonicalize; named so the error says "unsupported"
 * instead of treating them as a chain. QUEUE is here because the nft backend refuses it.
 */
export const UNSUPPORTED_TARGETS: ReadonlySet<string> = new Set([
  "AUDIT", "CHECKSUM", "CLASSIFY", "CLUSTERIP", "CONNSECMARK", "DNPT", "DSCP", "ECN", "HL", "HMARK", "IDLETIMER", "LED",
  "MIRROR", "NETMAP", "NFLOG", "NFQUEUE", "QUEUE", "RATEEST", "SAME", "SECMARK", "SET", "SNPT", "SYNPROXY", "TCPMSS",
  "TCPOPTSTRIP", "TEE", "TOS", "TPROXY", "TRACE", "TTL", "ULOG",
]);

/**
 * The match iptables loads by itself for an unknown option after `-p` (`-p tcp --dport 22` gets
 * `-m tcp`), by family. udplite has no such match in 1.8.9.
 */
export function implicitMatch(protocol: number, family: 4 | 6): ExtensionSpec | undefined {
  switch (protocol) {
    case TCP: return MATCH_SPECS.get("tcp");
    case UDP: return MATCH_SPECS.get("udp");
    case SCTP: return MATCH_SPECS.get("sctp");
    case DCCP: return MATCH_SPECS.get("dccp");
    case ICMP: return family === 4 ? MATCH_SPECS.get("icmp") : undefined;
    case ICMPV6: return family === 6 ? MATCH_SPECS.get("icmp6") : undefined;
    default: return undefined;
  }
}

/** Options that take a free-text value iptables-save quotes (see saveString). */
export const STRING_OPTIONS: ReadonlySet<string> = new Set(["--comment", "--log-prefix", "--nflog-prefix"]);

/**
 * Argument count of every option that can appear in canonical text, for scanners that only need
 * to step over values (ruleTarget). Short basic options included.
 */
export const OPTION_ARG_COUNTS: ReadonlyMap<string, number> = (() => {
  const m = new Map<string, number>([
    ["-s", 1], ["-d", 1], ["-i", 1], ["-o", 1], ["-p", 1], ["-m", 1], ["-f", 0],
  ]);
  for (const spec of [...MATCHES, ...TARGETS]) for (const [name, o] of spec.options) if (!m.has(name)) m.set(name, o.args);
  m.set("--nflog-prefix", 1);
  return m;
})();

/** A `-j` target that is a verdict or an extension rather than a chain. */
export function isTargetExtension(name: string): boolean {
  return STANDARD_TARGETS.has(name) || TARGET_SPECS.has(name) || UNSUPPORTED_TARGETS.has(name);
}
