/**
 * A restore opened ahead of its apply, for one table of one family: chains the kernel does not have
 * go to the running tool as the caller finishes them (`sendChains`), and chains new to the kernel
 * that keep growing send what they have grown by (`sendGrowth`); the apply then writes its remaining
 * edits and COMMIT into the same input (`complete`, `end`).
 *
 * Each chain sent enters the family's view at once (provisionally) and is recorded as a change, so
 * the apply's diff runs against the view plus what was streamed and corrects whatever differs.
 * Nothing is committed before COMMIT: a stream that is `abandon`ed ends its input without it, its
 * chains leave the view again, and the kernel is as it was. Lines go out in groups, declarations
 * first (`flush`). On legacy the tool holds the host-wide xtables lock from its `*table` line on,
 * so an open stream holds it while the caller computes: the applier abandons one never finished.
 */
import { isTargetExtension } from "./canonical/module-specs.js";
import type { TableName, TableState } from "./iptables-table.js";
import type { FamilyView } from "./kernel-view.js";
import { closeRestoreInput, type FamilyPlan } from "./restore-render.js";
import type { RestoreStream, XtablesLockHold } from "./iptables-runner.js";
import { isBuiltinChain } from "./save-format.js";
import type { SharedXtablesHold } from "./shared-xtables-hold.js";
import type { ChainChange, TablePlan } from "./table-plan.js";

/** Chains per group a stream sends (see `flush`). */
const STREAM_BATCH_CHAINS = 300;

export interface StreamedRestoreOptions {
  table: TableName;
  wrapName: string;
  /** The family's view, which takes each streamed chain at once (taken out again if abandoned). */
  view: FamilyView;
  /** The tool starts once this settles (legacy without a hold: the other family's restore). */
  after?: Promise<unknown> | undefined;
  /** Restores started under it count as its uses from their start to their end. */
  hold: SharedXtablesHold;
  /** Starts the tool. */
  open: (underHold: XtablesLockHold | undefined) => RestoreStream;
}

export class StreamedRestore {
  readonly table: TableName;
  /** The family's view the stream's chains were put in. */
  readonly view: FamilyView;
  private readonly wrapName: string;
  /** The input so far, from `*table` on; `sent` of them are written to the tool. */
  private readonly lines: string[];
  private sent = 0;
  /** Edit lines among them (for the result). */
  private streamedLines = 0;
  /** Chains streamed since the last group went out (`flush`). */
  private batch: { declarations: string[]; rules: string[] } = { declarations: [], rules: [] };
  /** Chains the stream declared (put in the view provisionally). */
  private readonly created: string[] = [];
  /** Of those, the ones sent whole (not just declared as a jump target). */
  private readonly streamed: string[] = [];
  /**
   * Chains sent as they grow (`sendGrowth`), with their change entry; `frozen` once what was sent
   * is no longer how the chain starts (the apply's diff corrects it).
   */
  private readonly growing = new Map<string, { change: ChainChange; frozen: boolean; removals: number }>();
  private readonly changes: ChainChange[] = [];
  /** The tool's input, once started. */
  private sink: RestoreStream | undefined;
  /** Settles once the tool is started (or will not be). */
  private readonly ready: Promise<void>;
  private abandoned = false;
  private watchdog: NodeJS.Timeout | undefined;
  /** Ends the stream's use of the xtables lock hold it started under. */
  private holdUse: (() => void) | undefined;

  constructor(options: StreamedRestoreOptions) {
    this.table = options.table;
    this.wrapName = options.wrapName;
    this.view = options.view;
    this.lines = [`*${options.table}`];
    const { after, hold, open } = options;
    this.ready = (async () => {
      if (after) await after.catch(() => undefined);
      if (this.abandoned) return;
      // Under a hold from its start to its end (the tool holds its lock from `*table` to COMMIT).
      const use = hold.use();
      this.holdUse = use.done;
      this.sink = open(use.lock);
      this.pump();
    })();
  }

  /** Chains the stream declared, so far. */
  get createdChains(): number {
    return this.created.length;
  }

  /** Edit lines streamed so far. */
  get editLines(): number {
    return this.streamedLines;
  }

  /** Calls `onExpire` if the stream is still open after `ms` (without keeping the process alive). */
  expireAfter(ms: number, onExpire: () => void): void {
    this.watchdog = setTimeout(onExpire, ms);
    this.watchdog.unref();
  }

  /**
   * Sends these chains, each that the kernel does not have yet (declaration and every rule, as the
   * apply would), with the chains they jump to declared first; returns the ones sent. Chains that
   * exist, are not ours (named after the wrap) or jump somewhere that will not exist are left to the
   * apply. A no-op for another table.
   */
  sendChains(table: TableState, chains: Iterable<string>): string[] {
    const sent: string[] = [];
    if (table.name !== this.table) return sent;
    let kernel = this.view.get(table.name);
    if (!kernel) this.view.set(table.name, (kernel = new Map()));
    const prefix = `${this.wrapName}-`;
    const { declarations, rules } = this.batch;
    next: for (const chain of chains) {
      if (!chain.startsWith(prefix) || kernel.has(chain) || !table.isDeclared(chain)) continue;
      const declare: string[] = [];
      for (const target of table.jumpTargets(chain)) {
        if (target === chain || isTargetExtension(target) || isBuiltinChain(table.name, target) || kernel.has(target) || declare.includes(target)) continue;
        if (!target.startsWith(prefix) || !table.isDeclared(target)) continue next;
        declare.push(target);
      }
      for (const target of declare) {
        declarations.push(`:${target} - [0:0]`);
        kernel.set(target, []);
        this.created.push(target);
        this.changes.push({ table: table.name, chain: target, added: 0, removed: 0, created: true });
      }
      const wanted = table.renderChain(chain);
      declarations.push(`:${chain} - [0:0]`);
      for (const rule of wanted) rules.push(`-A ${chain} ${rule}`);
      kernel.set(chain, wanted);
      this.created.push(chain);
      this.streamed.push(chain);
      sent.push(chain);
      this.changes.push({ table: table.name, chain, added: wanted.length, removed: 0, created: true });
    }
    if (declarations.length >= STREAM_BATCH_CHAINS) this.flush();
    return sent;
  }

  /**
   * Sends what these chains have grown by since the last call, for chains the kernel did not have
   * when the stream opened and that keep getting rules while the caller computes. Only the part
   * later rules cannot displace goes (`TableState.topRules`), and only up to the first rule whose
   * jump target is not declared yet; once a rule leaves a chain, the chain is left to the apply's
   * diff. Each call costs the rules added since the last one, not the chain's rendering. A no-op
   * for another table.
   */
  sendGrowth(table: TableState, chains: Iterable<string>): void {
    if (table.name !== this.table) return;
    let kernel = this.view.get(table.name);
    if (!kernel) this.view.set(table.name, (kernel = new Map()));
    const prefix = `${this.wrapName}-`;
    const { declarations, rules } = this.batch;
    const candidates: string[] = [];
    for (const chain of chains) {
      if (this.growing.has(chain)) {
        if (!this.growing.get(chain)!.frozen) candidates.push(chain);
        continue;
      }
      if (!chain.startsWith(prefix) || kernel.has(chain) || !table.isDeclared(chain)) continue;
      declarations.push(`:${chain} - [0:0]`);
      kernel.set(chain, []);
      this.created.push(chain);
      const change: ChainChange = { table: table.name, chain, added: 0, removed: 0, created: true };
      this.changes.push(change);
      this.growing.set(chain, { change, frozen: false, removals: table.removals(chain) });
      candidates.push(chain);
    }
    for (const chain of candidates) {
      const state = this.growing.get(chain)!;
      if (table.removals(chain) !== state.removals) {
        state.frozen = true;
        continue;
      }
      const sent = kernel.get(chain)!;
      const more = table.topRules(chain, sent.length);
      let taken = 0;
      for (const { text, target } of more) {
        if (target !== undefined && !isTargetExtension(target) && !isBuiltinChain(table.name, target) && !kernel.has(target)) break;
        rules.push(`-A ${chain} ${text}`);
        sent.push(text);
        taken++;
      }
      state.change.added += taken;
    }
    // They go with the next group of chains (groups keep nf_tables fast, see flush).
  }

  /**
   * Streamed chains go out in groups, declarations first: iptables-nft-restore takes about twice as
   * long when declarations and rules alternate chain by chain, legacy a little longer.
   */
  private flush(): void {
    const { declarations, rules } = this.batch;
    if (declarations.length === 0 && rules.length === 0) return;
    for (const l of declarations) this.lines.push(l);
    for (const l of rules) this.lines.push(l);
    this.streamedLines += declarations.length + rules.length;
    this.batch = { declarations: [], rules: [] };
    this.pump();
  }

  /** Writes what the tool has not been given yet (nothing before it is started). */
  private pump(): void {
    if (!this.sink || this.sent === this.lines.length) return;
    let text = "";
    for (let i = this.sent; i < this.lines.length; i++) text += `${this.lines[i]}\n`;
    this.sent = this.lines.length;
    this.sink.write(text);
  }

  /** The chains sent whole that are not on `dirty`: in the view as wanted, nothing to compare. */
  unchangedSince(dirty: ReadonlySet<string> | undefined): Set<string> {
    const clean = new Set<string>();
    for (const c of this.streamed) if (!dirty?.has(c)) clean.add(c);
    return clean;
  }

  /**
   * Ends the stream without committing anything: its chains leave the view, its input ends without
   * COMMIT once the tool has started, and its use of the hold ends with the tool.
   */
  abandon(): void {
    clearTimeout(this.watchdog);
    this.abandoned = true;
    const kernel = this.view.get(this.table);
    for (const chain of this.created) kernel?.delete(chain);
    void this.ready
      .then(() => this.sink?.end())
      .catch(() => undefined)
      .finally(() => this.holdUse?.());
  }

  /**
   * The apply's part, written after what was streamed: `rest` is the plan against the view with the
   * streamed chains in it, `tablePlans` its tables. Returns the plan of the whole input (what was
   * streamed included), which `end` sends.
   */
  complete(rest: FamilyPlan, tablePlans: readonly TablePlan[]): FamilyPlan {
    clearTimeout(this.watchdog);
    this.flush();
    closeRestoreInput(this.lines, this.table, tablePlans);
    const input = `${this.lines.join("\n")}\n`;
    return {
      ...rest,
      input,
      lines: this.streamedLines + rest.lines,
      tables: [this.table, ...rest.tables.filter((t) => t !== this.table)],
      changes: [...this.changes, ...this.mergeGrowth(rest.changes)],
    };
  }

  /** Writes the rest of the input and settles as the restore does; the hold's use ends on success. */
  async end(): Promise<void> {
    await this.ready;
    this.pump();
    await this.sink!.end();
    this.holdUse?.();
  }

  /** Ends the stream's use of the hold (its tool has ended, however). Idempotent. */
  releaseHold(): void {
    this.holdUse?.();
  }

  /** The apply's changes, with those of chains that grew through the stream added to the stream's entries. */
  private mergeGrowth(changes: readonly ChainChange[]): ChainChange[] {
    if (this.growing.size === 0) return [...changes];
    const out: ChainChange[] = [];
    for (const c of changes) {
      const grew = c.table === this.table ? this.growing.get(c.chain) : undefined;
      if (!grew) {
        out.push(c);
        continue;
      }
      grew.change.added += c.added;
      grew.change.removed += c.removed;
    }
    return out;
  }
}
