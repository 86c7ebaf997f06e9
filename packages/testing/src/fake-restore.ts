import { InvalidRuleError, type Backend, type IpFamily } from "@chainwarden/core";
import type { FakeFamily } from "./fake-family.js";
import { FakeTable, KNOWN_TABLES, type FakeChain, type RuleRef } from "./fake-table.js";
import { NotModelledError } from "./not-modelled-error.js";
import { tokenizeRestoreLine, type LineToken } from "./restore-line.js";
import { isMatchExtension, isTargetExtension } from "./xtables-extensions.js";
import { NFT_REASONS, type ToolFailure, type ToolMessages } from "./tool-messages.js";

/** Thrown inside the interpreter: the real tool would exit with this code and stderr. */
export class ToolFailureSignal extends Error {
  constructor(readonly failure: ToolFailure) {
    super(failure.stderr.trim());
    this.name = "ToolFailureSignal";
  }
}

export interface RestoreContext {
  variant: Backend;
  family: IpFamily;
  messages: ToolMessages;
  /** Rule text → iptables-save form; throws InvalidRuleError for rules the tool would reject. */
  canonicalize(rule: string): string;
  ruleTarget(text: string): RuleRef | undefined;
  /**
   * Whether an ipset exists (undefined: sets are not modelled, any name passes). The tool looks a
   * `--match-set` up when it parses the rule, whatever the command, and refuses a missing one.
   */
  setExists?(name: string): boolean;
}

type Command =
  | { op: "declare"; line: number; chain: string; policy: string }
  | { op: "append"; line: number; chain: string; rule: string; ref: RuleRef | undefined }
  | { op: "insert"; line: number; chain: string; index: number; rule: string; ref: RuleRef | undefined }
  | { op: "delete-index"; line: number; chain: string; index: number }
  | { op: "delete-rule"; line: number; chain: string; rule: string; ref: RuleRef | undefined }
  | { op: "replace"; line: number; chain: string; index: number; rule: string; ref: RuleRef | undefined }
  | { op: "flush"; line: number; chain: string | undefined }
  | { op: "delete-chain"; line: number; chain: string | undefined }
  | { op: "new-chain"; line: number; chain: string }
  | { op: "policy"; line: number; chain: string; policy: string }
  | { op: "zero"; line: number; chain: string | undefined };

type Op = "append" | "insert" | "delete" | "replace" | "flush" | "delete-chain" | "new-chain" | "policy" | "zero";

const COMMANDS: Readonly<Record<string, Op>> = {
  "-A": "append",
  "--append": "append",
  "-I": "insert",
  "--insert": "insert",
  "-D": "delete",
  "--delete": "delete",
  "-R": "replace",
  "--replace": "replace",
  "-F": "flush",
  "--flush": "flush",
  "-X": "delete-chain",
  "--delete-chain": "delete-chain",
  "-N": "new-chain",
  "--new-chain": "new-chain",
  "-P": "policy",
  "--policy": "policy",
  "-Z": "zero",
  "--zero": "zero",
};

const VALID_POLICIES = new Set(["ACCEPT", "DROP"]);
const MAX_CHAIN_NAME = 28;
const COUNTERS_PREFIX = /^\[\d+:\d+\]\s*/;

interface Block {
  name: string;
  /** A private copy; becomes the live table only at a successful COMMIT. */
  table: FakeTable;
  commands: Command[];
  /** nft: CHAIN_DEL refusals the kernel reports when the batch is committed. */
  busy: { line: number; chain: string }[];
  /** nft: the block named a chain, so committing it creates the table. */
  touched: boolean;
  /** Commands executed (legacy resets built-in policy counters when a block changed anything). */
  ran: number;
}

/**
 * Applies `iptables-restore --noflush` input to one (namespace, family) of the fake kernel, the way
 * iptables 1.8.9 does it, or throws `ToolFailureSignal` with the tool's exit code and stderr.
 *
 * Both backends commit each table block at its `COMMIT`: a block is atomic, the whole input is
 * not (a failure in a later block leaves earlier blocks applied). They differ in when they check:
 * - legacy parses and applies each line at once against its copy of the table (libiptc), so the
 *   first bad line fails, with `iptables-restore: line N failed` (rc 1) for anything libiptc
 *   refuses, or a parameter problem (rc 2, `Error occurred at line: N`) for what the parser refuses.
 * - nft parses every line of the block first (parameter problems, rc 2, stop it there), then at
 *   COMMIT runs the commands in order against its cache: refusals are `line N failed: <reason>`
 *   (rc 1); a jump or goto to a missing chain is `Chain 'X' does not exist` reported at the COMMIT
 *   line (rc 2); deleting a chain that is not empty or still referenced is only refused by the
 *   kernel, after everything else passed: `line N: CHAIN_DEL failed (Device or resource busy)`
 *   (rc 4, one line per chain).
 */
export function runRestore(input: string, fam: FakeFamily, ctx: RestoreContext): void {
  const m = ctx.messages;
  const lines = input.split("\n");
  if (input.endsWith("\n")) lines.pop();
  let block: Block | undefined;

  for (let i = 0; i < lines.length; i++) {
    const n = i + 1;
    const text = lines[i]!.trim();
    if (text === "" || text.startsWith("#")) continue;

    if (text.startsWith("*")) {
      if (block) throw new ToolFailureSignal(m.badArgument(text.split(/\s+/)[0]!, n));
      const name = text.slice(1).split(/\s+/)[0] ?? "";
      if (!KNOWN_TABLES.includes(name)) throw new ToolFailureSignal(m.unknownTable(name, n));
      if (ctx.variant === "legacy") fam.register(name);
      const live = fam.tables.get(name);
      block = { name, table: live ? live.clone() : FakeTable.fresh(name), commands: [], busy: [], touched: false, ran: 0 };
      continue;
    }

    if (text === "COMMIT") {
      if (!block) throw new ToolFailureSignal(m.lineFailed(n));
      if (ctx.variant === "nft") {
        for (const cmd of block.commands) execute(cmd, block, n, ctx);
        if (block.busy.length > 0) throw new ToolFailureSignal(m.chainBusy(block.busy));
        if (block.touched || fam.tables.has(block.name)) fam.put(block.table);
      } else {
        if (block.ran > 0) for (const c of block.table.chains.values()) if (c.builtin) (c.packets = 0n), (c.bytes = 0n);
        fam.put(block.table);
      }
      block = undefined;
      continue;
    }

    if (!block) throw new ToolFailureSignal(m.lineFailed(n));
    const cmd = text.startsWith(":") ? parseDeclaration(text, n, ctx) : parseCommand(text.replace(COUNTERS_PREFIX, ""), n, ctx);
    if (ctx.variant === "legacy") execute(cmd, block, n, ctx);
    else block.commands.push(cmd);
  }

  if (block) {
    if (ctx.variant === "nft") {
      // Probed: when a command of the unterminated block would be refused, iptables-nft-restore
      // exits 1 without printing anything; otherwise it prints "COMMIT expected".
      try {
        for (const cmd of block.commands) execute(cmd, block, lines.length + 1, ctx);
      } catch (err) {
        if (err instanceof ToolFailureSignal) throw new ToolFailureSignal({ exitCode: 1, stderr: "" });
        throw err;
      }
    }
    throw new ToolFailureSignal(m.commitExpected(lines.length + 1));
  }
}

function parseDeclaration(text: string, line: number, ctx: RestoreContext): Command {
  const [chain, policy] = text.slice(1).trim().split(/\s+/);
  if (!chain || !policy) throw new NotModelledError(`restore line ${line} (${JSON.stringify(text)}): a chain declaration without a policy`);
  if (chain.length > MAX_CHAIN_NAME) throw new ToolFailureSignal(ctx.messages.chainNameTooLong(chain, line, true));
  return { op: "declare", line, chain, policy };
}

function parseCommand(text: string, line: number, ctx: RestoreContext): Command {
  const m = ctx.messages;
  const tokens = tokenizeRestoreLine(text);
  const at = tokens.findIndex((t) => COMMANDS[t.value] !== undefined);
  if (at === -1) {
    const first = tokens[0]!.value;
    if (!first.startsWith("-")) throw new ToolFailureSignal(m.badArgument(first, line));
    throw new NotModelledError(`restore line ${line} (${JSON.stringify(text)}): a line without a command`);
  }
  const flag = tokens[at]!.value;
  const op = COMMANDS[flag]!;
  if (tokens.slice(at + 1).some((t) => COMMANDS[t.value] !== undefined)) {
    throw new NotModelledError(`restore line ${line} (${JSON.stringify(text)}): two commands in one line`);
  }
  const after = tokens.slice(at + 1);
  const before = tokens.slice(0, at);
  let used = 0;

  const takeChain = (required: boolean): string | undefined => {
    const t = after[used];
    if (!t || (!required && (t.value.startsWith("-") || t.value.startsWith("!")))) {
      if (required) throw new ToolFailureSignal(m.parameterProblem(`option "${flag}" requires an argument`, line));
      return undefined;
    }
    used++;
    if (t.value.length > MAX_CHAIN_NAME) throw new ToolFailureSignal(m.chainNameTooLong(t.value, line, false));
    return t.value;
  };
  const takeNumber = (required: boolean): number | undefined => {
    const t = after[used];
    if (!t || (!required && (t.value.startsWith("-") || t.value.startsWith("!")))) {
      if (required) throw new NotModelledError(`restore line ${line} (${JSON.stringify(text)}): ${flag} without a rule number`);
      return undefined;
    }
    used++;
    if (!/^\d+$/.test(t.value) || Number(t.value) < 1) throw new ToolFailureSignal(m.invalidRuleNumber(t.value, line));
    return Number(t.value);
  };
  const rest = (): LineToken[] => [...before, ...after.slice(used)];
  const rule = (): { rule: string; ref: RuleRef | undefined } => {
    const tokens = rest();
    tokens.forEach((t, i) => {
      const name = tokens[i + 1]?.value;
      if ((t.value === "-m" || t.value === "--match") && name !== undefined && !isMatchExtension(name, ctx.family)) {
        throw new ToolFailureSignal(m.parameterProblem(`Couldn't load match \`${name}':No such file or directory\n`, line));
      }
    });
    const spec = tokens.map((t) => t.raw).join(" ");
    let canonical: string;
    try {
      canonical = spec === "" ? "" : ctx.canonicalize(spec);
    } catch (err) {
      if (!(err instanceof InvalidRuleError)) throw err;
      // The canonicalizer refuses what it cannot place, valid iptables included; only a refusal
      // it marks as unsupported is known to be such a case.
      if (/unsupported/.test(err.message)) throw new NotModelledError(`restore line ${line}: ${err.message}`);
      throw new ToolFailureSignal(m.parameterProblem(err.message, line));
    }
    if (ctx.setExists) {
      tokens.forEach((t, i) => {
        const name = tokens[i + 1]?.value;
        if (t.value === "--match-set" && name !== undefined && !ctx.setExists!(name)) {
          throw new ToolFailureSignal(m.parameterProblem(`Set ${name} doesn't exist.\n`, line));
        }
      });
    }
    return { rule: canonical, ref: canonical === "" ? undefined : ctx.ruleTarget(canonical) };
  };
  const noMore = (): void => {
    const extra = rest()[0];
    if (extra) throw new NotModelledError(`restore line ${line} (${JSON.stringify(text)}): extra arguments to ${flag}`);
  };

  switch (op) {
    case "append": {
      const chain = takeChain(true)!;
      return { op, line, chain, ...rule() };
    }
    case "insert": {
      const chain = takeChain(true)!;
      const index = takeNumber(false) ?? 1;
      return { op, line, chain, index, ...rule() };
    }
    case "delete": {
      const chain = takeChain(true)!;
      const index = takeNumber(false);
      if (index === undefined) return { op: "delete-rule", line, chain, ...rule() };
      const extra = rest()[0];
      if (extra) throw new ToolFailureSignal(m.parameterProblem(`Illegal option \`${extra.value}' with this command`, line));
      return { op: "delete-index", line, chain, index };
    }
    case "replace": {
      const chain = takeChain(true)!;
      const index = takeNumber(true)!;
      return { op, line, chain, index, ...rule() };
    }
    case "flush":
    case "delete-chain":
    case "zero": {
      const chain = takeChain(false);
      if (op === "zero" && after[used] && /^\d+$/.test(after[used]!.value)) {
        throw new NotModelledError(`restore line ${line} (${JSON.stringify(text)}): -Z of one rule`);
      }
      noMore();
      return { op, line, chain };
    }
    case "new-chain": {
      const chain = takeChain(true)!;
      noMore();
      return { op, line, chain };
    }
    case "policy": {
      const chain = takeChain(true)!;
      const policy = after[used]?.value;
      if (policy === undefined) throw new NotModelledError(`restore line ${line} (${JSON.stringify(text)}): -P without a policy`);
      used++;
      noMore();
      return { op, line, chain, policy };
    }
  }
}

function execute(cmd: Command, block: Block, commitLine: number, ctx: RestoreContext): void {
  const m = ctx.messages;
  const t = block.table;
  const legacy = ctx.variant === "legacy";
  const refused = (reason: string): ToolFailureSignal => new ToolFailureSignal(m.lineFailed(cmd.line, reason));
  const need = (name: string): FakeChain => {
    const c = t.chains.get(name);
    if (!c) throw refused(NFT_REASONS.noChain);
    return c;
  };
  // Both tools resolve the target before they look the chain up (probed: `-A NOPE -j MISSING`
  // reports the missing target on both).
  const checkRef = (ref: RuleRef | undefined): void => {
    if (!ref) return;
    if (ref.kind === "jump" && isTargetExtension(ref.target, ctx.family)) return;
    if (t.chains.has(ref.target)) return;
    throw new ToolFailureSignal(m.missingJumpTarget(ref.target, ref.kind, cmd.line, commitLine));
  };
  const newRule = (text: string, ref: RuleRef | undefined) => ({ text, ref, packets: 0n, bytes: 0n });
  const busy = (c: FakeChain): boolean => c.rules.length > 0 || t.isReferenced(c.name);

  block.ran++;
  if (cmd.op === "declare" || cmd.chain !== undefined) block.touched = true;

  switch (cmd.op) {
    case "declare": {
      const c = t.chains.get(cmd.chain);
      if (c?.builtin) {
        // With --noflush a built-in chain keeps its rules; only the policy is set.
        if (cmd.policy !== "-") {
          if (!VALID_POLICIES.has(cmd.policy)) {
            throw new ToolFailureSignal(legacy ? m.cannotSetPolicy(cmd.policy, cmd.chain, cmd.line, "Bad policy name") : m.lineFailed(cmd.line, NFT_REASONS.badPolicy));
          }
          c.policy = cmd.policy;
        }
        return;
      }
      // A user chain is created, or flushed when it exists (that is what --noflush keeps of `:`).
      if (c) c.rules = [];
      else t.addUserChain(cmd.chain);
      if (cmd.policy !== "-" && legacy) throw new ToolFailureSignal(m.cannotSetPolicy(cmd.policy, cmd.chain, cmd.line, "Bad built-in chain name"));
      return;
    }
    case "append": {
      checkRef(cmd.ref);
      need(cmd.chain).rules.push(newRule(cmd.rule, cmd.ref));
      return;
    }
    case "insert": {
      checkRef(cmd.ref);
      const c = need(cmd.chain);
      if (cmd.index > c.rules.length + 1) throw refused(NFT_REASONS.insertTooBig);
      c.rules.splice(cmd.index - 1, 0, newRule(cmd.rule, cmd.ref));
      return;
    }
    case "replace": {
      checkRef(cmd.ref);
      const c = need(cmd.chain);
      if (cmd.index > c.rules.length) throw refused(NFT_REASONS.replaceTooBig);
      c.rules[cmd.index - 1] = newRule(cmd.rule, cmd.ref);
      return;
    }
    case "delete-index": {
      const c = need(cmd.chain);
      if (cmd.index > c.rules.length) throw refused(NFT_REASONS.deleteTooBig);
      c.rules.splice(cmd.index - 1, 1);
      return;
    }
    case "delete-rule": {
      checkRef(cmd.ref);
      const c = need(cmd.chain);
      const at = c.rules.findIndex((r) => r.text === cmd.rule);
      if (at === -1) throw refused(NFT_REASONS.badRule);
      c.rules.splice(at, 1);
      return;
    }
    case "flush": {
      if (cmd.chain !== undefined) need(cmd.chain).rules = [];
      else for (const c of t.chains.values()) c.rules = [];
      return;
    }
    case "zero": {
      const chains = cmd.chain !== undefined ? [need(cmd.chain)] : [...t.chains.values()];
      for (const c of chains) {
        c.packets = 0n;
        c.bytes = 0n;
        for (const r of c.rules) (r.packets = 0n), (r.bytes = 0n);
      }
      return;
    }
    case "new-chain": {
      if (t.chains.has(cmd.chain)) throw refused(NFT_REASONS.chainExists);
      t.addUserChain(cmd.chain);
      return;
    }
    case "policy": {
      const c = t.chains.get(cmd.chain);
      if (!c?.builtin) throw refused(NFT_REASONS.badBuiltin);
      if (!VALID_POLICIES.has(cmd.policy)) throw refused(NFT_REASONS.badPolicy);
      c.policy = cmd.policy;
      return;
    }
    case "delete-chain": {
      if (cmd.chain === undefined) {
        const users = [...t.chains.values()].filter((c) => !c.builtin).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
        const refusedChains = users.filter(busy);
        if (legacy && refusedChains.length > 0) throw refused("");
        for (const c of refusedChains) block.busy.push({ line: cmd.line, chain: c.name });
        for (const c of users) t.chains.delete(c.name);
        return;
      }
      const c = need(cmd.chain);
      if (c.builtin) {
        // Legacy never deletes a built-in chain. nft only has the built-in chains something used;
        // the fake cannot tell, so it answers as for one that was never used unless it is busy.
        if (legacy) throw refused("");
        if (busy(c)) block.busy.push({ line: cmd.line, chain: c.name });
        else throw refused(NFT_REASONS.noChain);
        return;
      }
      if (busy(c)) {
        if (legacy) throw refused("");
        // nft: the cache forgets the chain (later lines cannot use it); the kernel refuses at commit.
        block.busy.push({ line: cmd.line, chain: c.name });
      }
      t.chains.delete(c.name);
      return;
    }
  }
}
