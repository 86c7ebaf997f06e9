/**
 * Canonical rule text.
 *
 * Chainwarden keeps every rule in the exact text `iptables-save` prints after `-A CHAIN `, because
 * the applier diffs that text against what the kernel reports. Any difference (a missing `/32`, a
 * `-p 6` instead of `-p tcp`, the comment after the `-j`) means the rule is "changed" on every
 * pass: nothing converges and counters are lost. So rules are canonicalized once, on the way in.
 *
 * Canonical means: what iptables-save 1.8.9 prints for the rule, on both the nf_tables and the
 * legacy backend. That is `[!] -s [!] -d [!] -i [!] -o [!] -p [!] -f` in that order whatever the
 * input order, then the matches in the order iptables loaded them (a `-m tcp` appears where the
 * first tcp option was, if not given), each with its options in the module's own print order and
 * values normalized (hosts get /32 or /128, host bits are masked, names become numbers, marks
 * become hex, ...), then `-j TARGET` or `-g CHAIN` with its options.
 *
 * Where the facts come from: every rule shape in save-normalization.fixtures.ts was written with
 * iptables-{nft,legacy}-restore 1.8.9 into a scratch network namespace and read back with *-save;
 * save-normalization.kernel.test.ts re-checks them on the machine. The per-module knowledge lives
 * in module-specs.ts. Anything not covered there is refused with InvalidRuleError rather than
 * passed through: an unknown module, option or spelling cannot be placed, and a guess that is
 * wrong breaks convergence silently. Shapes the two backends print differently, or that one of
 * them refuses, are refused too (see the fixtures' notes and the tests).
 *
 * The parser follows iptables' own rules where they matter for the result: options may appear
 * anywhere after their module was loaded, an option goes to the most recently loaded module that
 * knows it, an unknown option after `-p tcp` loads the tcp match at that point, and getopt would
 * read an abbreviation like `--dport` as multiport's `--dports` (so abbreviations are refused).
 */
import { MAX_CHAIN_NAME_LENGTH } from "../chain-names.js";
import { InvalidRuleError } from "../errors.js";
import { formatAddress, maskWords, parsePrefix } from "./ip-address.js";
import {
  type ExtensionInstance,
  type ExtensionSpec,
  type SpecContext,
  MATCH_SPECS,
  STANDARD_TARGETS,
  TARGET_SPECS,
  UNSUPPORTED_TARGETS,
  implicitMatch,
} from "./module-specs.js";
import { tokenizeRule } from "./rule-tokens.js";
import { isInterfaceName, protocolName, protocolNumber } from "./value-parsers.js";

/** Options of `canonicalizeRule`. */
export interface CanonicalizeOptions {
  family: 4 | 6;
  /** Throw when the input is not already canonical (tests and strict callers). */
  strict?: boolean;
  /** Named in errors: the router, port or firewall the rule belongs to. */
  resource?: string;
}

/** iptables-restore reads lines into a 10240-byte buffer; stay well below with room for `-A CHAIN`. */
const MAX_RULE_LENGTH = 8192;
const CHAIN_NAME = /^[A-Za-z0-9_.@+][A-Za-z0-9_.@+-]*$/;

const SRC = 0;
const DST = 1;
const IN = 2;
const OUT = 3;
const PROTO = 4;
const FRAG = 5;
const MATCH = 6;
const JUMP = 7;
const GOTO = 8;

const BASIC_OPTIONS: ReadonlyMap<string, number> = new Map([
  ["-s", SRC], ["--source", SRC], ["--src", SRC],
  ["-d", DST], ["--destination", DST], ["--dst", DST],
  ["-i", IN], ["--in-interface", IN],
  ["-o", OUT], ["--out-interface", OUT],
  ["-p", PROTO], ["--protocol", PROTO],
  ["-f", FRAG], ["--fragment", FRAG],
  ["-m", MATCH], ["--match", MATCH],
  ["-j", JUMP], ["--jump", JUMP],
  ["-g", GOTO], ["--goto", GOTO],
]);

/** Long options of iptables itself; getopt would expand an abbreviation of any of them. */
const IPTABLES_LONG_OPTIONS: readonly string[] = [
  "--source", "--src", "--destination", "--dst", "--in-interface", "--out-interface", "--protocol", "--fragment",
  "--match", "--jump", "--goto", "--set-counters", "--table", "--numeric", "--verbose", "--wait", "--exact",
  "--list", "--line-numbers", "--modprobe", "--ipv4", "--ipv6", "--help", "--append", "--delete", "--insert",
  "--replace", "--flush", "--zero", "--new-chain", "--delete-chain", "--policy", "--rename-chain", "--check",
];

const BASIC_PRINT = [" -s ", " -d ", " -i ", " -o ", " -p "];

interface Target {
  readonly goto: boolean;
  readonly name: string;
  readonly inst: ExtensionInstance | undefined;
}

function newInstance(spec: ExtensionSpec): ExtensionInstance {
  const n = spec.slots.length;
  return { spec, values: new Array(n).fill(undefined), inverted: new Array(n).fill(false), extra: 0 };
}

function printSlots(inst: ExtensionInstance): string {
  let out = "";
  const { slots } = inst.spec;
  for (let k = 0; k < slots.length; k++) {
    const v = inst.values[k];
    if (v === undefined || v === null) continue;
    if (inst.inverted[k]) out += " !";
    const name = slots[k]!;
    if (name !== "") out += ` ${name}`;
    if (v !== "") out += ` ${v}`;
  }
  return out;
}

/** Which modules could have taken an option we could not place (for the error message). */
function ownersHint(option: string): string {
  const names: string[] = [];
  for (const spec of [...new Set(MATCH_SPECS.values())]) if (spec.options.has(option)) names.push(`-m ${spec.name}`);
  for (const spec of TARGET_SPECS.values()) if (spec.options.has(option)) names.push(`-j ${spec.name}`);
  return names.length === 0 ? "" : ` (it belongs to ${names.join(", ")}, which must come first)`;
}

/**
 * Returns the rule exactly as iptables-save would print it. Throws InvalidRuleError (from
 * ../errors.js) when the text is unsafe or cannot be placed; in strict mode also when the input
 * differs from its canonical form (the message shows both).
 */
export function canonicalizeRule(rule: string, options: CanonicalizeOptions): string {
  const { family, resource } = options;
  const fail: (reason: string) => never = (reason) => {
    throw new InvalidRuleError(rule, reason, resource === undefined ? {} : { resource });
  };
  if (family !== 4 && family !== 6) fail(`family must be 4 or 6, not ${String(family)}`);
  if (rule.length > MAX_RULE_LENGTH) fail(`rule is longer than ${MAX_RULE_LENGTH} characters`);

  const tokens = tokenizeRule(rule, resource);
  if (tokens.length === 0) fail("empty rule");
  const first = tokens[0]!;
  if (first.startsWith("*") || first.startsWith(":")) fail("starts like a table or chain line of a restore script");
  for (const t of tokens) if (t === "COMMIT") fail("contains the word COMMIT");

  const ctx: SpecContext & { protocol: number | undefined; protocolInverted: boolean } = {
    family,
    protocol: undefined,
    protocolInverted: false,
    fail,
  };
  // -s -d -i -o -p: printed text, null when given but printing nothing (0.0.0.0/0, -i +, -p all)
  const basic: (string | null | undefined)[] = [undefined, undefined, undefined, undefined, undefined];
  const basicInverted = [false, false, false, false, false];
  let frag: boolean | undefined;
  const matches: ExtensionInstance[] = [];
  // Newest instance of each loaded extension, in the order their options were merged into
  // getopt's table (first load). iptables gives an option to the newest-merged module knowing it.
  const merged: ExtensionInstance[] = [];
  let target: Target | undefined;

  const loadMatch = (spec: ExtensionSpec): ExtensionInstance => {
    const inst = newInstance(spec);
    const k = merged.findIndex((m) => m.spec === spec);
    if (k !== -1) {
      if (!spec.repeatable) fail(`-m ${spec.name} appears twice (nft merges the two, legacy keeps both: write one)`);
      merged[k] = inst;
    } else merged.push(inst);
    matches.push(inst);
    return inst;
  };

  const chainName = (name: string, what: string): string => {
    if (name.length > MAX_CHAIN_NAME_LENGTH) fail(`${what} "${name}" is longer than ${MAX_CHAIN_NAME_LENGTH} characters`);
    if (!CHAIN_NAME.test(name)) fail(`${what} "${name}" is not a valid chain name`);
    return name;
  };

  let invert = false;
  const n = tokens.length;
  for (let i = 0; i < n; i++) {
    const t = tokens[i]!;
    if (t === "!") {
      if (invert) fail("two ! in a row");
      invert = true;
      continue;
    }
    if (t.length < 2 || t.charCodeAt(0) !== 0x2d /* - */) {
      fail(t === "" ? "unexpected empty argument" : `unexpected argument "${t}" (a value without an option, or "--opt !" which iptables 1.8.9 no longer accepts)`);
    }

    const which = BASIC_OPTIONS.get(t);
    if (which !== undefined) {
      const arg = which === FRAG ? "" : tokens[++i];
      if (arg === undefined) fail(`${t} needs an argument`);
      switch (which) {
        case SRC:
        case DST: {
          if (basic[which] !== undefined) fail(`more than one ${which === SRC ? "-s" : "-d"}`);
          const p = parsePrefix(arg, family);
          if (p === undefined) {
            fail(`bad IPv${family} address "${arg}" for ${t} (a literal address with an optional /len; no names, no lists)`);
          }
          if (p.prefix === 0) {
            // /0 matches everything and prints nothing; "! /0" is refused by nft (EINVAL).
            if (invert) fail(`"! ${t} ${arg}" matches nothing`);
            basic[which] = null;
          } else {
            basic[which] = `${formatAddress(maskWords(p.words, p.prefix, family), family)}/${p.prefix}`;
          }
          break;
        }
        case IN:
        case OUT: {
          if (basic[which] !== undefined) fail(`more than one ${which === IN ? "-i" : "-o"}`);
          if (!isInterfaceName(arg)) fail(`bad interface name "${arg}" for ${t} (1-15 characters of A-Z a-z 0-9 _ . @ + -)`);
          if (arg === "+") {
            if (invert) fail(`"! ${t} +" matches nothing`);
            basic[which] = null;
          } else basic[which] = arg;
          break;
        }
        case PROTO: {
          if (basic[PROTO] !== undefined) fail("more than one -p");
          const num = protocolNumber(arg);
          if (num === undefined) fail(`unknown protocol "${arg}"`);
          if (num === 0) {
            if (invert) fail(`"! ${t} ${arg}" matches nothing`);
            basic[PROTO] = null;
          } else {
            basic[PROTO] = protocolName(num);
            ctx.protocol = num;
            ctx.protocolInverted = invert;
          }
          break;
        }
        case FRAG:
          if (family === 6) fail("-f does not exist in IPv6 (ip6tables wants -m frag, which is not supported)");
          if (frag !== undefined) fail("more than one -f");
          frag = invert;
          break;
        case MATCH: {
          if (invert) fail("! cannot precede -m");
          const spec = MATCH_SPECS.get(arg);
          if (spec === undefined) fail(`unknown or unsupported match module "${arg}"`);
          if (spec.family !== undefined && spec.family !== family) fail(`-m ${arg} exists only for IPv${spec.family}`);
          loadMatch(spec);
          break;
        }
        case JUMP:
        case GOTO: {
          if (invert) fail(`! cannot precede ${t}`);
          if (target !== undefined) fail("more than one -j/-g");
          if (which === GOTO) {
            if (STANDARD_TARGETS.has(arg) || TARGET_SPECS.has(arg) || UNSUPPORTED_TARGETS.has(arg)) fail(`-g needs a user chain, not ${arg}`);
            target = { goto: true, name: chainName(arg, "goto target"), inst: undefined };
          } else if (STANDARD_TARGETS.has(arg)) {
            target = { goto: false, name: arg, inst: undefined };
          } else {
            const spec = TARGET_SPECS.get(arg);
            if (spec !== undefined) {
              const inst = newInstance(spec);
              merged.push(inst);
              target = { goto: false, name: arg, inst };
            } else if (UNSUPPORTED_TARGETS.has(arg)) {
              fail(`target ${arg} is not supported by the canonicalizer`);
            } else {
              target = { goto: false, name: chainName(arg, "jump target"), inst: undefined };
            }
          }
          break;
        }
      }
      if (which <= PROTO) basicInverted[which] = invert;
      invert = false;
      continue;
    }

    if (t.charCodeAt(1) !== 0x2d) {
      fail(t === "-c" ? "counters (-c) are not part of rule text" : `unknown option "${t}"`);
    }
    if (t.includes("=")) fail(`write "${t.slice(0, t.indexOf("="))} VALUE", not "${t}"`);

    // The newest-merged extension that knows the option takes it (getopt's exact match).
    let owner: ExtensionInstance | undefined;
    for (let k = merged.length - 1; k >= 0; k--) {
      if (merged[k]!.spec.options.has(t)) {
        owner = merged[k];
        break;
      }
    }
    if (owner === undefined) {
      // getopt would take a unique prefix of a loaded option as that option.
      for (const m of merged) {
        for (const name of m.spec.options.keys()) {
          if (name.startsWith(t)) fail(`"${t}" is read by iptables as "${name}" of ${m.spec.name}; write options in full`);
        }
      }
      for (const name of IPTABLES_LONG_OPTIONS) {
        if (name.startsWith(t)) fail(`"${t}" is read by iptables as "${name}"; write options in full`);
      }
      // iptables then loads the match named after the -p protocol, right here in the match list.
      const implicit = ctx.protocol === undefined ? undefined : implicitMatch(ctx.protocol, family);
      if (implicit !== undefined && implicit.options.has(t) && !merged.some((m) => m.spec === implicit)) {
        owner = loadMatch(implicit);
      } else {
        fail(`unknown option "${t}"${ownersHint(t)}`);
      }
    }
    const o = owner.spec.options.get(t)!;
    if (invert && !o.negatable) fail(`"${t}" cannot be negated`);
    let a1 = "";
    let a2 = "";
    if (o.args >= 1) {
      const v = tokens[i + 1];
      if (v === undefined) fail(`${t} needs an argument`);
      a1 = v;
    }
    if (o.args === 2) {
      const v = tokens[i + 2];
      if (v === undefined || v.startsWith("-") || v.startsWith("!")) fail(`${t} needs two arguments`);
      a2 = v;
    }
    if (owner.values[o.slot] !== undefined) {
      fail(`${t} repeats or conflicts with an earlier option of ${owner.spec.kind === "match" ? "-m" : "-j"} ${owner.spec.name}`);
    }
    owner.values[o.slot] = o.parse(a1, a2, ctx, invert, owner);
    owner.inverted[o.slot] = invert;
    i += o.args;
    invert = false;
  }
  if (invert) fail("! at the end of the rule");

  for (const m of matches) {
    const need = m.spec.protocols;
    if (need !== undefined && (ctx.protocol === undefined || ctx.protocolInverted || !need.includes(ctx.protocol))) {
      fail(`-m ${m.spec.name} needs -p ${need.map(protocolName).join(" or -p ")} (not negated)`);
    }
    m.spec.finalize?.(m, ctx);
  }
  const tinst = target?.inst;
  if (tinst !== undefined) tinst.spec.finalize?.(tinst, ctx);

  let out = "";
  for (let k = SRC; k <= PROTO; k++) {
    const v = basic[k];
    if (v === undefined || v === null) continue;
    out += basicInverted[k] ? ` !${BASIC_PRINT[k]}${v}` : `${BASIC_PRINT[k]}${v}`;
  }
  if (frag !== undefined) out += frag ? " ! -f" : " -f";
  for (const m of matches) out += ` -m ${m.spec.name}${printSlots(m)}`;
  if (target !== undefined) {
    out += target.goto ? ` -g ${target.name}` : ` -j ${target.name}`;
    if (tinst !== undefined) out += printSlots(tinst);
  }
  if (out === "") fail("the rule matches everything and has no target (iptables-save would print nothing)");
  out = out.slice(1);

  if (options.strict === true && out !== rule) {
    fail(`not in iptables-save form (strict mode); iptables-save prints ${JSON.stringify(out)}`);
  }
  return out;
}
