import { cutChainName, kernelChainName, validateChainName } from "./chain-names.js";
import { validateComment } from "./canonical/comment.js";
import { isTargetExtension } from "./canonical/module-specs.js";
import { ruleJumpTarget } from "./canonical/rule-tokens.js";
import { ChainNameCollisionError, UnknownChainError } from "./errors.js";
import type { IpFamily } from "./iptables-runner.js";

/** The tables Chainwarden manages. */
export type TableName = "filter" | "nat" | "mangle" | "raw";

/** Options of `IptablesTable.addChain`. */
export interface AddChainOptions {
  /** Prefix the name with the wrap name (default true). */
  wrap?: boolean;
  /** The resource (router, port, firewall) the chain belongs to; named in errors. */
  resource?: string;
}

/** Options of `IptablesTable.addRule`. */
export interface AddRuleOptions {
  wrap?: boolean;
  /** Place the rule before the chain's other rules. */
  top?: boolean;
  /** Group rules so they can be cleared together (`clearRulesByTag`). */
  tag?: string;
  /** A `-m comment` added when comments are enabled. */
  comment?: string;
  resource?: string;
}

/** Options of `IptablesTable.removeRule`. */
export interface RemoveRuleOptions {
  wrap?: boolean;
  top?: boolean;
}

/** One rule as the manager holds it. */
export interface IptablesRule {
  /** Kernel name of the chain. */
  readonly chain: string;
  /** The rule as given, after `$chain` expansion: Neutron's identity for `removeRule`. */
  readonly spec: string;
  /** Exactly as iptables-save prints it (comment included). */
  readonly text: string;
  readonly wrap: boolean;
  readonly top: boolean;
  readonly tag: string | undefined;
  readonly resource: string | undefined;
  /** The `-j`/`-g` target. */
  readonly target: string | undefined;
}

interface ChainEntry {
  /** The name the caller asked for (before cutting), to catch two names cut to one. */
  requested: string;
  wrap: boolean;
  resource: string | undefined;
}

/** What a table tells the applier about itself. */
export interface TableState {
  readonly name: TableName;
  /** Chains this manager declares (kernel names); only the wrapped or only the unwrapped ones when asked. */
  declaredChains(wrapped?: boolean): Iterable<string>;
  /** Whether the chain (a kernel name) is one this manager declares. */
  isDeclared(chain: string): boolean;
  /** Chains this manager puts rules in (declared or not: built-ins, shared chains). */
  chainsWithRules(): Iterable<string>;
  /** Our rules of a chain in the order they must appear, duplicates removed as Neutron does. */
  renderChain(chain: string): string[];
  /**
   * The chain's `top` rules from the `from`-th on, in the order added. They lead `renderChain`
   * (a later `top` rule goes after them, before the others) unless a rule left the chain
   * (`removals`) or a duplicate displaced one: a caller sending a growing chain early takes them
   * from here, and stops when rules leave.
   */
  topRules(chain: string, from: number): readonly IptablesRule[];
  /** How many rules have left the chain so far (any removal can shift `renderChain`). */
  removals(chain: string): number;
  /** The chains and extensions the chain's rules jump or go to. */
  jumpTargets(chain: string): Iterable<string>;
  /** The resource that owns a chain, a rule text in it, or the rule jumping to `target`, for errors. */
  resourceOf(chain: string, text?: string, target?: string): string | undefined;
}

/** What an `IptablesTable` gets from its manager: the wrap name and family, whether comments are kept, how rules are canonicalized, and whom to tell of a changed chain. */
export interface TableContext {
  /** The agent's wrap name (Neutron's `binary_name`): wrapped chains and `$chain` references become `<wrap>-<chain>`, cut to the kernel's length. */
  wrapName: string;
  family: IpFamily;
  /** Keep rule comments (`-m comment`); false drops them, as Neutron's `comment_iptables_rules = False`. */
  comments: boolean;
  /** Rule text (with the comment placed as Neutron places it) in iptables-save form; throws InvalidRuleError. */
  canonicalize(rule: string, comment: string | undefined, resource: string | undefined): string;
  /** Called with the kernel chain name whenever its desired content changes. */
  markDirty(table: TableName, chain: string): void;
}

/**
 * One table of one IP family: the chains and rules an agent wants, with Neutron's `IptablesTable`
 * semantics (wrapped chains, `$chain` expansion, `top`, tags, cascade on `removeChain`). Every rule is
 * canonicalized on entry, so bad input throws here, before anything runs.
 */
export class IptablesTable implements TableState {
  private readonly chains = new Map<string, ChainEntry>();
  /** The unwrapped ones among `chains`, kept apart because the applier asks for them on every apply. */
  private readonly unwrapped = new Set<string>();
  private readonly rules = new Map<string, IptablesRule[]>();
  /** Rules removed per chain since it was declared (`removals`). */
  private readonly removed = new Map<string, number>();
  /** Where the last `topRules` of a chain ended: top rules seen, list length, removals then. */
  private readonly topCursor = new Map<string, { top: number; index: number; removals: number }>();
  private readonly byTag = new Map<string, Set<IptablesRule>>();
  /** Rules by the chain they jump to, so removeChain need not scan the table. */
  private readonly byTarget = new Map<string, Set<IptablesRule>>();

  constructor(
    readonly name: TableName,
    private readonly ctx: TableContext,
  ) {}

  get family(): IpFamily {
    return this.ctx.family;
  }

  /** Declares a chain (wrapped with the wrap name unless `wrap: false`) and returns its kernel name; declaring it again is a no-op. The name is checked before anything is sent. */
  addChain(name: string, options: AddChainOptions = {}): string {
    const wrap = options.wrap ?? true;
    validateChainName(name, "chain name", options.resource);
    const kernel = kernelChainName(this.ctx.wrapName, name, wrap);
    validateChainName(kernel, "chain name", options.resource);
    const existing = this.chains.get(kernel);
    if (existing) {
      this.checkSameChain(kernel, existing, name);
      return kernel;
    }
    this.chains.set(kernel, { requested: name, wrap, resource: options.resource });
    if (!wrap) this.unwrapped.add(kernel);
    this.ctx.markDirty(this.name, kernel);
    return kernel;
  }

  /** Whether this manager declares the chain. */
  hasChain(name: string, options: { wrap?: boolean } = {}): boolean {
    return this.chains.has(kernelChainName(this.ctx.wrapName, name, options.wrap ?? true));
  }

  /**
   * Removes a chain, its rules, and every rule of ours that jumps to it. Unlike Neutron this matches the
   * jump target exactly (Neutron's substring match also removed jumps to longer names).
   */
  removeChain(name: string, options: { wrap?: boolean } = {}): void {
    const wrap = options.wrap ?? true;
    const kernel = kernelChainName(this.ctx.wrapName, name, wrap);
    if (!this.chains.delete(kernel)) return;
    this.unwrapped.delete(kernel);
    this.ctx.markDirty(this.name, kernel);
    this.dropRules(this.rules.get(kernel) ?? []);
    this.dropRules([...(this.byTarget.get(kernel) ?? [])]);
    // Kept per chain only while it exists: port chains come and go for as long as the agent runs.
    this.removed.delete(kernel);
    this.topCursor.delete(kernel);
  }

  /** Appends a rule (or puts it first with `top`) to a chain of ours or a built-in; `$name` in the rule is the wrapped chain `name`. The rule is canonicalized to iptables-save form now, so bad text fails here, naming the resource, not at apply time. */
  addRule(chain: string, rule: string, options: AddRuleOptions = {}): IptablesRule {
    const wrap = options.wrap ?? true;
    const kernel = this.resolveChain(chain, wrap, options.resource);
    const spec = this.expand(rule.trim(), wrap);
    const comment = this.ctx.comments ? options.comment : undefined;
    if (comment !== undefined) validateComment(comment, options.resource);
    const text = this.ctx.canonicalize(spec, comment, options.resource);
    const entry: IptablesRule = {
      chain: kernel,
      spec,
      text,
      wrap,
      top: options.top ?? false,
      tag: options.tag,
      resource: options.resource ?? this.chains.get(kernel)?.resource,
      target: ruleJumpTarget(text),
    };
    let list = this.rules.get(kernel);
    if (!list) this.rules.set(kernel, (list = []));
    list.push(entry);
    if (entry.tag !== undefined) addToIndex(this.byTag, entry.tag, entry);
    if (entry.target !== undefined && !isTargetExtension(entry.target)) addToIndex(this.byTarget, entry.target, entry);
    this.ctx.markDirty(this.name, kernel);
    return entry;
  }

  /** Removes one rule added with the same chain, text (before `$` expansion), `wrap` and `top`. */
  removeRule(chain: string, rule: string, options: RemoveRuleOptions = {}): boolean {
    const wrap = options.wrap ?? true;
    const kernel = kernelChainName(this.ctx.wrapName, chain, wrap);
    const list = this.rules.get(kernel);
    if (!list) return false;
    const spec = this.expand(rule.trim(), wrap);
    const top = options.top ?? false;
    const found = list.find((r) => r.spec === spec && r.top === top && r.wrap === wrap);
    if (!found) return false;
    this.dropRules([found]);
    return true;
  }

  /** Removes every rule of a chain; the chain stays. */
  emptyChain(chain: string, options: { wrap?: boolean } = {}): void {
    const kernel = kernelChainName(this.ctx.wrapName, chain, options.wrap ?? true);
    this.dropRules(this.rules.get(kernel) ?? []);
  }

  /** Removes every rule added with this tag (in every chain). */
  clearRulesByTag(tag: string): void {
    const set = this.byTag.get(tag);
    if (set) this.dropRules([...set]);
  }

  /** Our rules of a chain, as added. */
  getChain(chain: string, options: { wrap?: boolean } = {}): readonly IptablesRule[] {
    return this.rules.get(kernelChainName(this.ctx.wrapName, chain, options.wrap ?? true)) ?? [];
  }

  /** Whether the chain holds none of our rules. */
  isChainEmpty(chain: string, options: { wrap?: boolean } = {}): boolean {
    return this.getChain(chain, options).length === 0;
  }

  // --- TableState -------------------------------------------------------------------------------

  declaredChains(wrapped?: boolean): Iterable<string> {
    if (wrapped === undefined) return this.chains.keys();
    if (!wrapped) return this.unwrapped;
    return [...this.chains].filter(([, e]) => e.wrap).map(([name]) => name);
  }

  /** Whether this manager declares the chain (by kernel name). */
  isDeclared(chain: string): boolean {
    return this.chains.has(chain);
  }

  chainsWithRules(): Iterable<string> {
    return this.rules.keys();
  }

  topRules(chain: string, from: number): readonly IptablesRule[] {
    const list = this.rules.get(chain) ?? [];
    const out: IptablesRule[] = [];
    // A caller asking again for what follows its last answer (a growing chain, every few ports)
    // resumes where that answer ended instead of walking the chain from its start.
    const cursor = this.topCursor.get(chain);
    const resume = cursor !== undefined && cursor.top <= from && cursor.removals === this.removals(chain);
    let seen = resume ? cursor.top : 0;
    let i = resume ? cursor.index : 0;
    for (; i < list.length; i++) {
      const r = list[i]!;
      if (r.top && seen++ >= from) out.push(r);
    }
    this.topCursor.set(chain, { top: seen, index: list.length, removals: this.removals(chain) });
    return out;
  }

  removals(chain: string): number {
    return this.removed.get(chain) ?? 0;
  }

  /**
   * Neutron's order: the chain's `top` rules, then the others, each in the order added; of
   * duplicates the last one stays.
   */
  renderChain(chain: string): string[] {
    const list = this.rules.get(chain);
    if (!list || list.length === 0) return [];
    let ordered: string[];
    if (list.some((r) => r.top)) {
      ordered = [];
      for (const r of list) if (r.top) ordered.push(r.text);
      for (const r of list) if (!r.top) ordered.push(r.text);
    } else {
      ordered = list.map((r) => r.text);
    }
    if (ordered.length === 1) return ordered;
    if (ordered.length <= 16) {
      // Small chains (nearly all of them): a quadratic check beats building a Set.
      let dup = false;
      for (let i = 1; i < ordered.length && !dup; i++) dup = ordered.lastIndexOf(ordered[i]!, i - 1) !== -1;
      if (!dup) return ordered;
    }
    const seen = new Set<string>();
    const out: string[] = [];
    for (let i = ordered.length - 1; i >= 0; i--) {
      const t = ordered[i]!;
      if (!seen.has(t)) {
        seen.add(t);
        out.push(t);
      }
    }
    return out.reverse();
  }

  *jumpTargets(chain: string): Iterable<string> {
    for (const r of this.rules.get(chain) ?? []) if (r.target !== undefined) yield r.target;
  }

  resourceOf(chain: string, text?: string, target?: string): string | undefined {
    if (text !== undefined || target !== undefined) {
      const rule = this.rules.get(chain)?.find((r) => (text === undefined || r.text === text) && (target === undefined || r.target === target));
      if (rule?.resource !== undefined) return rule.resource;
    }
    return this.chains.get(chain)?.resource;
  }

  // --- internals ------------------------------------------------------------------------------------

  private resolveChain(chain: string, wrap: boolean, resource: string | undefined): string {
    const kernel = kernelChainName(this.ctx.wrapName, chain, wrap);
    validateChainName(kernel, "chain name", resource);
    if (wrap) {
      const entry = this.chains.get(kernel);
      if (!entry) throw new UnknownChainError(this.name, kernel, resource === undefined ? {} : { resource });
      this.checkSameChain(kernel, entry, chain);
    }
    return kernel;
  }

  /** Two different names that are cut to the same kernel name would silently share a chain. */
  private checkSameChain(kernel: string, entry: ChainEntry, requested: string): void {
    if (entry.requested === requested) return;
    // Referring to a chain by its already-cut name is fine.
    const cutLength = entry.wrap ? kernel.length - this.ctx.wrapName.length - 1 : kernel.length;
    if (requested.length <= cutLength || entry.requested.length <= cutLength) return;
    throw new ChainNameCollisionError(kernel, entry.requested, requested, entry.resource === undefined ? {} : { resource: entry.resource });
  }

  /**
   * `$name` is our wrapped chain `name`. As in Neutron the wrap prefix is always added and the rule's
   * own `wrap` decides how far the name is cut; a result longer than 28 characters is rejected by
   * the canonicalizer.
   */
  private expand(rule: string, wrap: boolean): string {
    let at = rule.indexOf("$");
    if (at === -1) return rule;
    // Firewall and port chains put a `$chain` in most rules: replace the tokens in place rather
    // than splitting every rule into words.
    let out = "";
    let from = 0;
    while (at !== -1) {
      if (at === 0 || rule.charCodeAt(at - 1) === 0x20) {
        let end = rule.indexOf(" ", at);
        if (end === -1) end = rule.length;
        out += `${rule.slice(from, at)}${this.ctx.wrapName}-${cutChainName(rule.slice(at + 1, end), wrap)}`;
        from = end;
        at = rule.indexOf("$", end);
      } else at = rule.indexOf("$", at + 1);
    }
    return out + rule.slice(from);
  }

  private dropRules(given: readonly IptablesRule[]): void {
    if (given.length === 0) return;
    // Callers may pass a chain's own list, which is edited in place below.
    const victims = given.slice();
    const byChain = new Map<string, IptablesRule[]>();
    for (const r of victims) {
      const list = byChain.get(r.chain);
      if (list) list.push(r);
      else byChain.set(r.chain, [r]);
    }
    for (const [chain, gone] of byChain) {
      const list = this.rules.get(chain);
      if (!list) continue;
      this.removed.set(chain, (this.removed.get(chain) ?? 0) + gone.length);
      if (gone.length <= FEW_VICTIMS) {
        // A port or floating IP leaving takes one or two rules out of chains thousands long:
        // rebuilding those lists per removal made removing many of them quadratic.
        for (const r of gone) {
          const i = list.indexOf(r);
          if (i !== -1) list.splice(i, 1);
        }
      } else {
        const set = new Set(gone);
        let w = 0;
        for (let i = 0; i < list.length; i++) if (!set.has(list[i]!)) list[w++] = list[i]!;
        list.length = w;
      }
      if (list.length === 0) this.rules.delete(chain);
      this.ctx.markDirty(this.name, chain);
    }
    for (const r of victims) {
      if (r.tag !== undefined) removeFromIndex(this.byTag, r.tag, r);
      if (r.target !== undefined && !isTargetExtension(r.target)) removeFromIndex(this.byTarget, r.target, r);
    }
  }
}

/** Up to this many rules leave a chain by search and splice; more by one pass over the chain. */
const FEW_VICTIMS = 8;

function addToIndex<K, V>(index: Map<K, Set<V>>, key: K, value: V): void {
  let set = index.get(key);
  if (!set) index.set(key, (set = new Set()));
  set.add(value);
}

function removeFromIndex<K, V>(index: Map<K, Set<V>>, key: K, value: V): void {
  const set = index.get(key);
  if (set?.delete(value) && set.size === 0) index.delete(key);
}
