import {
  classifyRestoreFailure,
  NamespaceGoneError,
  SaveError,
  canonicalizeRule,
  isBuiltinChain,
  parseIptablesVersion,
  parseSave,
  ruleTarget,
  XtablesLockError,
  type AuxCommand,
  type Backend,
  type ExecOptions,
  type ExecResult,
  type IpFamily,
  type IptablesRunner,
  type IptablesVersion,
  type RestoreOptions,
  type RestoreStream,
  type SaveOptions,
  type Target,
  type XtablesLockHold,
} from "@chainwarden/core";
import { FakeFamily } from "./fake-family.js";
import { settleExec } from "./fake-exec.js";
import { FakeNetns } from "./fake-netns.js";
import { runRestore, ToolFailureSignal, type RestoreContext } from "./fake-restore.js";
import { FakeTable, KNOWN_TABLES, type RuleRef } from "./fake-table.js";
import { NotModelledError } from "./not-modelled-error.js";
import { quoteArgs, tokenizeRestoreLine } from "./restore-line.js";
import { isTargetExtension } from "./xtables-extensions.js";
import { namespaceGoneFailure, ToolMessages, type ToolFailure } from "./tool-messages.js";

/** Options of `FakeIptablesRunner`: the variant it behaves like (required), its namespaces, and the runner features and lock waits it offers. */
export interface FakeIptablesRunnerOptions {
  /** Which iptables 1.8.9 variant to behave like: error texts, exit codes, table order, lock use. */
  variant: Backend;
  /** Reported by `version()` and printed in error messages; default "1.8.9". */
  version?: string;
  /** Network namespaces that exist from the start (the host's always does). */
  namespaces?: readonly string[];
  /** The host's namespaces, shared with the fakes of the other tools (default: a new one with `namespaces`). */
  netns?: FakeNetns;
  /**
   * Whether an ipset exists in a namespace (`FakeIpset.has`): a rule naming a missing one with
   * `--match-set` is refused as the tool refuses it. Default: sets are not modelled, any passes.
   */
  setExists?: (namespace: string | undefined, name: string) => boolean;
  /** `-w` seconds when `restore` is given none, as ExecaRunner's default (5). */
  lockWaitSeconds?: number;
  /** The lock file named in the legacy lock error; default `/run/xtables.lock`. */
  lockFile?: string;
  /** Rule text → iptables-save form; default core's `canonicalizeRule` (non-strict). */
  canonicalize?: (rule: string, family: IpFamily) => string;
  /** Offer `restoreStream` (default true); false makes callers send whole inputs, as a runner without it. */
  restoreStream?: boolean;
}

/** One `restore` as it was asked for (`FakeIptablesRunner.restoreCalls`), failed ones included, with when it began and ended. */
export interface RestoreCall {
  target: Target;
  input: string;
  options: RestoreOptions;
  /** `performance.now()` when the call began and when it returned or threw (tests of concurrency). */
  startedAt: number;
  endedAt?: number;
  /** The input came through `restoreStream`. */
  streamed?: boolean;
}

/** One `save` as it was asked for (`FakeIptablesRunner.saveCalls`). */
export interface SaveCall {
  target: Target;
  options: SaveOptions;
}

/** One `exec` as it was asked for (`FakeIptablesRunner.execCalls`), modelled or not. */
export interface ExecCall {
  command: AuxCommand;
  args: readonly string[];
  options: ExecOptions;
}

/** A failure the next `restore` reports instead of running (state is left unchanged). */
export interface InjectedRestoreFailure {
  exitCode: number;
  stderr: string;
  /** The failing line, when stderr does not name it the way the tool would. */
  line?: number;
}

/**
 * An `onBeforeRestore` hook: awaited before each recorded restore is checked and applied (not for restores it
 * makes itself); it may change the fake's state (`externalRestore`) as a concurrent writer would.
 */
export type BeforeRestoreHook = (call: RestoreCall, fake: FakeIptablesRunner) => void | Promise<void>;

/** Options of `FakeIptablesRunner.dump`: one table only, and whether counters are printed (default: every table, no counters). */
export interface DumpOptions {
  table?: string;
  /** `[p:b]` on chain and rule lines. */
  counters?: boolean;
}

interface NamespaceState {
  families: Record<IpFamily, FakeFamily>;
}

/**
 * An honest in-memory iptables (the kube-proxy / knftables model): it keeps the kernel state per
 * network namespace and IP family, interprets `iptables-restore --noflush` input the way iptables
 * 1.8.9 does (nft or legacy, chosen per instance), prints `iptables-save` output as the tool
 * would, and fails with the same exit codes and stderr, classified into the same error classes,
 * as `ExecaRunner` driving the real tools. The shared contract suite
 * (`describeIptablesRunnerContract`) runs against it and the real tools so it stays that way.
 *
 * Behaviour mimicked (each probed on Debian 12, iptables 1.8.9, in a throwaway namespace):
 * - per-table atomicity: a table block applies at its COMMIT or not at all; earlier blocks of a
 *   failing input stay applied (both backends);
 * - `:chain` under --noflush creates a user chain or flushes it; on a built-in chain it only sets
 *   the policy;
 * - rule text normalized like iptables-save (core's canonicalizer), so `-D chain <rulespec>` matches;
 * - refusals with the tool's words: see `ToolMessages` and `runRestore` for the list;
 * - which tables exist and their print order (see `FakeFamily`);
 * - counters: untouched rules keep theirs; `-R` and new rules start at 0; legacy resets built-in
 *   policy counters whenever a restore changes the table; nft keeps none for policies;
 * - the xtables lock (legacy only; iptables-nft ignores it), our hold of it (`holdXtablesLock`:
 *   restores under it skip the lock, the others wait for its release), and vanished namespaces.
 * Everything it cannot model honestly throws `NotModelledError`.
 */
export class FakeIptablesRunner implements IptablesRunner {
  readonly variant: Backend;
  /** Every `restore` call, in order, failed ones included. */
  readonly restoreCalls: RestoreCall[] = [];
  readonly saveCalls: SaveCall[] = [];
  readonly execCalls: ExecCall[] = [];

  private readonly versionText: string;
  private readonly lockWaitSeconds: number;
  private readonly lockFile: string;
  private readonly canonicalizeFn: (rule: string, family: IpFamily) => string;
  /** The host's namespaces (shared with the other tools' fakes). */
  readonly netns: FakeNetns;
  private readonly setExists: ((namespace: string | undefined, name: string) => boolean) | undefined;
  private readonly hooks: BeforeRestoreHook[] = [];
  private injected: InjectedRestoreFailure[] = [];
  private lockHeldUntil = 0;
  /** A hold of ours (`holdXtablesLock`) not released yet. */
  private ownHold: XtablesLockHold | undefined;
  private inHook = false;

  constructor(options: FakeIptablesRunnerOptions) {
    this.variant = options.variant;
    this.versionText = options.version ?? "1.8.9";
    this.lockWaitSeconds = options.lockWaitSeconds ?? 5;
    this.lockFile = options.lockFile ?? "/run/xtables.lock";
    this.canonicalizeFn = options.canonicalize ?? ((rule, family) => canonicalizeRule(rule, { family }));
    this.netns = options.netns ?? new FakeNetns();
    this.setExists = options.setExists;
    for (const ns of options.namespaces ?? []) this.addNamespace(ns);
    if (options.restoreStream === false) this.restoreStream = undefined;
  }

  // ---- IptablesRunner ------------------------------------------------------------------------

  async backend(): Promise<Backend> {
    return this.variant;
  }

  async version(): Promise<IptablesVersion> {
    return parseIptablesVersion(`iptables v${this.versionText} (${this.variant === "nft" ? "nf_tables" : "legacy"})`, this.variant);
  }

  async save(target: Target, options: SaveOptions = {}): Promise<string> {
    this.saveCalls.push({ target: { ...target }, options: { ...options } });
    const fam = this.familyOrGone(target, (f) => {
      throw new NamespaceGoneError(target.namespace!, f.stderr);
    });
    if (options.table !== undefined) {
      if (!KNOWN_TABLES.includes(options.table)) {
        throw new SaveError(this.messages(target.family).saveUnknownTable(options.table).stderr, { namespace: target.namespace });
      }
      // Legacy registers the table by reading it; nft prints an absent table's built-ins without creating it.
      if (this.variant === "legacy") fam.register(options.table);
      const table = fam.tables.get(options.table) ?? FakeTable.fresh(options.table);
      return table.render({ chainCounters: true, ruleCounters: options.counters ?? false });
    }
    return fam
      .ordered(this.variant)
      .map((t) => t.render({ chainCounters: true, ruleCounters: options.counters ?? false }))
      .join("");
  }

  restore(target: Target, input: string, options: RestoreOptions = {}): Promise<void> {
    return this.recordRestore(target, input, options, false);
  }

  private async recordRestore(target: Target, input: string, options: RestoreOptions, streamed: boolean): Promise<void> {
    const call: RestoreCall = { target: { ...target }, input, options: { ...options }, startedAt: performance.now(), ...(streamed ? { streamed } : {}) };
    this.restoreCalls.push(call);
    try {
      await this.restoreCall(call);
    } finally {
      call.endedAt = performance.now();
    }
  }

  /**
   * The pieces are kept and applied as one `restore` call at `end()` (recorded in `restoreCalls`
   * with `streamed: true`): the real tool too commits nothing before COMMIT, so only the timing
   * differs, which a fake does not model.
   */
  restoreStream?: (target: Target, options?: RestoreOptions) => RestoreStream = (target, options = {}) => {
    const pieces: string[] = [];
    return {
      write: (text) => void pieces.push(text),
      end: () => this.recordRestore(target, pieces.join(""), options, true),
    };
  };

  private async restoreCall(call: RestoreCall): Promise<void> {
    const { target, input, options } = call;
    if (!this.inHook && this.hooks.length > 0) {
      this.inHook = true;
      try {
        for (const hook of [...this.hooks]) await hook(call, this);
      } finally {
        this.inHook = false;
      }
    }
    const fail = (failure: ToolFailure & { line?: number }): never => {
      throw classifyRestoreFailure(target, input, failure);
    };
    const fam = this.familyOrGone(target, fail);
    const injected = this.injected.shift();
    if (injected) fail(injected);
    if (this.variant === "legacy") {
      const lock = await this.waitForLock(target, options);
      if (lock) fail(lock);
    }
    this.apply(target, fam, input, fail);
  }

  /**
   * `iptables`/`ip6tables -S`, `-C` and `--version` against the fake's tables, settled as `ExecaRunner`
   * settles the real tool: a non-zero exit rejects with `CommandError` (`NamespaceGoneError` for a missing
   * namespace) unless `reject: false`. Any other command or option throws `NotModelledError`.
   */
  async exec(command: AuxCommand, args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    this.execCalls.push({ command, args: [...args], options: { ...options } });
    const file = command === "iptables" || command === "ip6tables" ? `${command}-${this.variant}` : command;
    return settleExec(file, args, options, this.runExec(command, args, options));
  }

  // ---- namespaces ------------------------------------------------------------------------------

  /** Like `ip netns add NAME`: a fresh namespace, no tables. */
  addNamespace(name: string): void {
    this.netns.add(name);
  }

  /** Like `ip netns del NAME`: everything in it is gone; later calls get NamespaceGoneError. */
  deleteNamespace(name: string): void {
    this.netns.delete(name);
  }

  /** Whether the named namespace exists now (`ip netns add` seen, not deleted since). */
  hasNamespace(name: string): boolean {
    return this.netns.has(name);
  }

  /** The named namespaces, in creation order (the host's is not listed). */
  listNamespaces(): string[] {
    return this.netns.list();
  }

  // ---- test setup and assertions ---------------------------------------------------------------

  /**
   * Loads captured real `iptables-save` output (with or without counters; `#` lines ignored) into
   * a (namespace, family). Each table in the text replaces that table; others are kept. Rule text
   * is taken as printed. Throws when a rule jumps to a chain the table does not have.
   */
  seed(target: Target, saveText: string): void {
    const fam = this.familyOrThrow(target);
    const tables: FakeTable[] = [];
    for (const saved of parseSave(saveText).values()) {
      if (!KNOWN_TABLES.includes(saved.name)) throw new Error(`seed: unknown table ${JSON.stringify(saved.name)}`);
      const table = FakeTable.fresh(saved.name);
      for (const c of saved.chains.values()) {
        const builtin = isBuiltinChain(saved.name, c.name);
        const chain = builtin ? table.chains.get(c.name)! : table.addUserChain(c.name);
        if (builtin && c.policy !== null) chain.policy = c.policy;
        chain.packets = c.counters?.packets ?? 0n;
        chain.bytes = c.counters?.bytes ?? 0n;
        chain.rules = c.rules.map((r) => ({
          text: r.text,
          ref: this.refOf(r.text),
          packets: r.counters?.packets ?? 0n,
          bytes: r.counters?.bytes ?? 0n,
        }));
      }
      for (const c of table.chains.values()) {
        for (const r of c.rules) {
          if (r.ref && !(r.ref.kind === "jump" && isTargetExtension(r.ref.target, target.family)) && !table.chains.has(r.ref.target)) {
            throw new Error(`seed: in table ${saved.name}, "-A ${c.name} ${r.text}" ${r.ref.kind === "goto" ? "goes" : "jumps"} to missing chain ${r.ref.target}`);
          }
        }
      }
      tables.push(table);
    }
    fam.putInPrintOrder(tables);
  }

  /**
   * The state as canonical save text for assertions: tables in the order the variant prints them,
   * built-in chains first, user chains sorted, no `#` lines; counters only when asked for.
   */
  dump(target: Target, options: DumpOptions = {}): string {
    const fam = this.familyOrThrow(target);
    const tables = options.table !== undefined ? [fam.tables.get(options.table)].filter((t) => t !== undefined) : fam.ordered(this.variant);
    const counters = options.counters ?? false;
    return tables.map((t) => t.render({ chainCounters: counters, ruleCounters: counters })).join("");
  }

  /** The rule texts of one chain (undefined when the table or chain does not exist). */
  rules(target: Target, table: string, chain: string): string[] | undefined {
    return this.familyOrThrow(target).tables.get(table)?.chains.get(chain)?.rules.map((r) => r.text);
  }

  /** Simulates traffic: adds to the counters of rule `ruleIndex` (1-based, as `-D chain N`). */
  countPackets(target: Target, table: string, chain: string, ruleIndex: number, packets: number | bigint, bytes: number | bigint): void {
    const rule = this.familyOrThrow(target).tables.get(table)?.chains.get(chain)?.rules[ruleIndex - 1];
    if (!rule) throw new Error(`countPackets: no rule ${ruleIndex} in ${table}/${chain}`);
    rule.packets += BigInt(packets);
    rule.bytes += BigInt(bytes);
  }

  /**
   * Applies restore input as another process would (the same checks and errors), without
   * recording it, running hooks or consuming injected faults. For `onBeforeRestore` hooks that
   * play a concurrent writer.
   */
  externalRestore(target: Target, input: string): void {
    const fail = (failure: ToolFailure): never => {
      throw classifyRestoreFailure(target, input, failure);
    };
    this.apply(target, this.familyOrGone(target, fail), input, fail);
  }

  // ---- faults ------------------------------------------------------------------------------------

  /** The next restore fails like this, classified as ExecaRunner would, and changes nothing. */
  failNextRestore(failure: InjectedRestoreFailure): void {
    this.injected.push({ ...failure });
  }

  /**
   * Another process holds the xtables lock for `durationMs`. Legacy restores in that window wait
   * up to their `-w` seconds and then fail with XtablesLockError (exit 4, the tool's stderr);
   * iptables-nft does not use the lock, so nft restores are not affected.
   */
  holdLock(durationMs: number): void {
    this.lockHeldUntil = Math.max(this.lockHeldUntil, Date.now() + durationMs);
  }

  /** Ends a `holdLock` at once: legacy restores waiting for the lock proceed. */
  releaseLock(): void {
    this.lockHeldUntil = 0;
  }

  /**
   * Legacy: holds the lock for us as `flock -w` would (waiting for another holder up to
   * `waitSeconds`, then XtablesLockError); restores given `underHold` then skip the lock, the
   * others wait for our release like any tool. nf_tables: undefined (its tools take no lock).
   */
  async holdXtablesLock(options: { waitSeconds?: number } = {}): Promise<XtablesLockHold | undefined> {
    if (this.variant !== "legacy") return undefined;
    const waitSeconds = options.waitSeconds ?? this.lockWaitSeconds;
    if (!(await this.lockFreeWithin(waitSeconds * 1000))) throw new XtablesLockError(`${this.lockFile} not free after ${waitSeconds}s`);
    const hold: XtablesLockHold = {
      path: this.lockFile,
      release: () => {
        if (this.ownHold === hold) this.ownHold = undefined;
      },
    };
    this.ownHold = hold;
    return hold;
  }

  /** Runs before every recorded restore (e.g. a concurrent writer). Returns an unsubscribe. */
  onBeforeRestore(hook: BeforeRestoreHook): () => void {
    this.hooks.push(hook);
    return () => {
      const at = this.hooks.indexOf(hook);
      if (at !== -1) this.hooks.splice(at, 1);
    };
  }

  // ---- internals -------------------------------------------------------------------------------

  private apply(target: Target, fam: FakeFamily, input: string, fail: (f: ToolFailure) => never): void {
    const ctx: RestoreContext = {
      variant: this.variant,
      family: target.family,
      messages: this.messages(target.family),
      canonicalize: (rule) => this.canonicalizeFn(rule, target.family),
      ruleTarget: (text) => this.refOf(text),
      ...(this.setExists ? { setExists: (name: string) => this.setExists!(target.namespace, name) } : {}),
    };
    try {
      runRestore(input, fam, ctx);
    } catch (err) {
      if (err instanceof ToolFailureSignal) fail(err.failure);
      throw err;
    }
  }

  /** Legacy `-w N`: wait for the lock up to N seconds, then give up as the tool does. */
  private async waitForLock(target: Target, options: RestoreOptions): Promise<ToolFailure | undefined> {
    // Under our hold the tool takes a lock file of its own.
    if (options.underHold !== undefined) return undefined;
    const waitSeconds = options.lockWaitSeconds ?? this.lockWaitSeconds;
    if (await this.lockFreeWithin(waitSeconds * 1000)) return undefined;
    return this.messages(target.family).lockHeld(this.lockFile, waitSeconds);
  }

  /** Waits up to `ms` for the lock to be free (no other holder, no hold of ours). */
  private async lockFreeWithin(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    for (;;) {
      const until = this.ownHold ? Infinity : this.lockHeldUntil;
      if (until <= Date.now()) return true;
      if (Date.now() >= deadline) return false;
      // Another process's hold ends at a known time; ours when released (looked at every 10 ms).
      const wait = this.ownHold ? Math.min(10, deadline - Date.now()) : Math.min(until, deadline) - Date.now();
      await sleep(Math.max(1, wait));
    }
  }

  private refOf(text: string): RuleRef | undefined {
    let ref: RuleRef | undefined;
    try {
      ref = ruleTarget(text);
    } catch {
      // Seeded text the canonicalizer's tokenizer refuses (it accepts only what it can write):
      // fall back to the tool's own splitting, where a quoted value is one word.
      const tokens = tokenizeRestoreLine(text).map((t) => t.value);
      const at = tokens.findIndex((v) => v === "-j" || v === "-g");
      const target = at === -1 ? undefined : tokens[at + 1];
      ref = target === undefined ? undefined : { kind: tokens[at] === "-g" ? "goto" : "jump", target };
    }
    return ref ? { kind: ref.kind, target: ref.target } : undefined;
  }

  private messages(family: IpFamily): ToolMessages {
    return new ToolMessages(this.variant, family, this.versionText);
  }

  private familyOrGone(target: Target, gone: (f: ToolFailure) => never): FakeFamily {
    const ns = this.state(target.namespace);
    if (!ns) return gone(namespaceGoneFailure(target.namespace!));
    return ns.families[target.family];
  }

  /** The namespace's iptables state (created empty on first use); undefined when it does not exist. */
  private state(namespace: string | undefined): NamespaceState | undefined {
    return this.netns.state(this, namespace, newNamespace);
  }

  private familyOrThrow(target: Target): FakeFamily {
    const ns = this.state(target.namespace);
    if (!ns) throw new Error(`FakeIptablesRunner: namespace ${JSON.stringify(target.namespace)} does not exist`);
    return ns.families[target.family];
  }

  /** `iptables`/`ip6tables` only: the other tools have fakes of their own (FakeIp, FakeIpset, FakeConntrack; FakeHost ties them). */
  private runExec(command: AuxCommand, args: readonly string[], options: ExecOptions): ExecResult {
    const failed = (f: ToolFailure): ExecResult => ({ stdout: "", stderr: f.stderr, exitCode: f.exitCode });
    if (options.namespace !== undefined && !this.netns.has(options.namespace)) return failed(namespaceGoneFailure(options.namespace));
    if (command === "iptables" || command === "ip6tables") return this.runIptables(command, args, options);
    throw new NotModelledError(`exec(${JSON.stringify([command, ...args].join(" "))})`);
  }

  /** `iptables [-w [N]] [-t T] (-S [chain] | -C chain rule… | --version)`. */
  private runIptables(command: "iptables" | "ip6tables", args: readonly string[], options: ExecOptions): ExecResult {
    const family: IpFamily = command === "iptables" ? 4 : 6;
    const header = `${command} v${this.versionText} (${this.variant === "nft" ? "nf_tables" : "legacy"})`;
    const notModelled = (): never => {
      throw new NotModelledError(`exec(${JSON.stringify([command, ...args].join(" "))})`);
    };
    let table = "filter";
    let i = 0;
    for (; i < args.length; i++) {
      const a = args[i]!;
      if (a === "-w" || a === "--wait") {
        if (args[i + 1] !== undefined && /^\d+(\.\d+)?$/.test(args[i + 1]!)) i++;
      } else if (a.startsWith("--wait=")) {
        continue;
      } else if (a === "-W" || a === "--wait-interval") {
        i++;
      } else if (a === "-t" || a === "--table") {
        table = args[++i] ?? notModelled();
      } else if (a.startsWith("--table=")) {
        table = a.slice("--table=".length);
      } else break;
    }
    const cmd = args[i];
    const rest = args.slice(i + 1);
    if ((cmd === "--version" || cmd === "-V") && rest.length === 0) return { stdout: `${header}\n`, stderr: "", exitCode: 0 };
    if (cmd !== "-S" && cmd !== "--list-rules" && cmd !== "-C" && cmd !== "--check") return notModelled();

    const fam = this.state(options.namespace)!.families[family];
    if (!KNOWN_TABLES.includes(table)) {
      const stderr =
        this.variant === "nft"
          ? `${header}: table '${table}' does not exist\nPerhaps ${command} or your kernel needs to be upgraded.\n`
          : `${header}: can't initialize ${command} table \`${table}': Table does not exist (do you need to insmod?)\nPerhaps ${command} or your kernel needs to be upgraded.\n`;
      return { stdout: "", stderr, exitCode: 3 };
    }
    if (this.variant === "legacy") fam.register(table);
    const t = fam.tables.get(table) ?? FakeTable.fresh(table);

    if (cmd === "-S" || cmd === "--list-rules") {
      if (rest.length > 1) return notModelled();
      const chains = rest[0] !== undefined ? [t.chains.get(rest[0])] : t.orderedChains();
      if (chains[0] === undefined) {
        const stderr =
          this.variant === "nft"
            ? `${header}: chain \`${rest[0]}' in table \`${table}' is incompatible, use 'nft' tool.\n`
            : `${command}: No chain/target/match by that name.\n`;
        return { stdout: "", stderr, exitCode: 1 };
      }
      const out: string[] = [];
      for (const c of chains) out.push(c!.builtin ? `-P ${c!.name} ${c!.policy}` : `-N ${c!.name}`);
      for (const c of chains) for (const r of c!.rules) out.push(`-A ${c!.name}${r.text ? ` ${r.text}` : ""}`);
      return { stdout: `${out.join("\n")}\n`, stderr: "", exitCode: 0 };
    }

    // -C chain rule…
    const [chainName, ...ruleArgs] = rest;
    if (chainName === undefined) return notModelled();
    const text = ruleArgs.length === 0 ? "" : this.canonicalizeFn(quoteArgs(ruleArgs), family);
    const found = t.chains.get(chainName)?.rules.some((r) => r.text === text) ?? false;
    return found ? { stdout: "", stderr: "", exitCode: 0 } : { stdout: "", stderr: `${command}: Bad rule (does a matching rule exist in that chain?).\n`, exitCode: 1 };
  }
}

function newNamespace(): NamespaceState {
  return { families: { 4: new FakeFamily(), 6: new FakeFamily() } };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
