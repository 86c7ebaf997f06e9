import {
  IptablesApplier,
  IptablesManager,
  wrapNameFor,
  type CoreLogger,
  type IptablesManagerOptions,
  type HostRunner,
} from "@chainwarden/core";
import type { Logger } from "pino";
import { AgentError } from "./agent-errors.js";
import type { AgentConfig } from "./config-schema.js";
import type { HostAction, ReconcileContext } from "./extension-points.js";
import { ManagerFlavours, type ManagerFlavour } from "./manager-flavours.js";

type ManagerOptions = Pick<IptablesManagerOptions, "wrapName" | "stateless" | "nat" | "useIpv6">;

/** The tag of the rules a failing handler's kept kernel state adds (see `keepKernelStateFor`). */
const KEPT_FOR_FAILED_HANDLER = "kept-for-failed-handler";

/** A manager of the namespace, with how it was made and by which handler. */
interface ManagerEntry {
  readonly manager: IptablesManager;
  readonly flavour: ManagerFlavour;
  /** The handler whose call made it (undefined: outside a handler call). */
  readonly madeBy: string | undefined;
  /** Kernel names of the chains it declares of itself (wrapped built-ins, `local`, `snat`, ...). */
  readonly layout: ReadonlySet<string>;
}

/**
 * One namespace's `ReconcileContext`. Managers are keyed by (cut) wrap name and share one applier,
 * so that their kernel views stay in step; each is made with its wrap name's flavour
 * (`ManagerFlavours`: what handlers declare, else the app's defaults), whichever handler asks
 * first. During a run every manager a handler obtains is deferred (`deferApplyOn`) until the loop
 * applies it at the end, and the context notes which handler obtained which, so that the loop can
 * keep what the kernel has of a failing handler's chains there.
 */
export class LoopContext implements ReconcileContext {
  private readonly managers = new Map<string, ManagerEntry>();
  private applier: IptablesApplier | undefined;
  private touched: Set<IptablesManager> | undefined;
  /** The wrap names each handler obtained since the context was made. */
  private readonly obtained = new Map<string, Set<string>>();
  /** Managers whose kernel state is kept for a failing handler already. */
  private readonly kept = new WeakSet<IptablesManager>();
  private readonly flavours: ManagerFlavours;

  constructor(
    readonly namespace: string | undefined,
    readonly runner: HostRunner,
    readonly logger: Logger,
    /** Core logs name the namespace themselves: its logger is not bound to it. */
    private readonly coreLogger: CoreLogger,
    readonly dryRun: boolean,
    private readonly config: AgentConfig,
    private readonly loop?: { wake(kind: string): void; live(): boolean },
    /** Each wrap name's flavour; default: the framework's (stateful, nat, the config's `use_ipv6`). */
    flavours?: ManagerFlavours,
  ) {
    this.flavours = flavours ?? ManagerFlavours.resolve([], { wrapName: config.wrap_name, useIpv6: config.use_ipv6 });
  }

  /** What handlers reported this run (dry runs keep them for `plan`; live runs log them). */
  readonly actions: HostAction[] = [];

  /** The handler being called (set by the loop before each `reconcile`). */
  handlerKind: string | undefined;

  manager(options: ManagerOptions = {}): IptablesManager {
    const wrapName = wrapNameFor(options.wrapName ?? this.config.wrap_name);
    const asked = { stateless: options.stateless, nat: options.nat, useIpv6: options.useIpv6 };
    const existing = this.managers.get(wrapName);
    if (existing) {
      // Only what the caller asks for must match: a handler that names no tables (`manager()`)
      // shares the namespace's manager as its wrap name's flavour made it.
      const clash = (Object.keys(asked) as (keyof typeof asked)[]).filter((k) => asked[k] !== undefined && asked[k] !== existing.flavour[k]);
      if (clash.length > 0) {
        const made = existing.madeBy !== undefined ? `; ${this.flavours.describe(existing.madeBy)} made it first` : "";
        throw this.conflict(wrapName, asked, `it is ${JSON.stringify(existing.flavour)} (${this.flavours.origin(wrapName)}${made})`);
      }
      this.note(wrapName);
      this.touch(existing.manager);
      return existing.manager;
    }
    const { flavour, conflict } = this.flavours.forFirstCaller(wrapName, asked);
    if (conflict !== undefined) throw this.conflict(wrapName, asked, conflict);
    const logger = this.coreLogger;
    this.applier ??= new IptablesApplier({
      runner: this.runner,
      namespace: this.namespace,
      logger,
      lockWaitSeconds: this.config.lock_wait_seconds,
    });
    const manager = new IptablesManager({
      runner: this.runner,
      namespace: this.namespace,
      wrapName,
      comments: this.config.comment_iptables_rules,
      logger,
      applier: this.applier,
      ...flavour,
    });
    this.managers.set(wrapName, { manager, flavour, madeBy: this.handlerKind, layout: declaredChains(manager) });
    this.note(wrapName);
    // A dry run never applies: its managers stay deferred, so even an explicit `apply()` is a no-op.
    if (this.dryRun) manager.deferApplyOn();
    else this.touch(manager);
    return manager;
  }

  /** The wrap names each handler obtained managers for since this context was made. */
  wrapNamesByKind(): ReadonlyMap<string, ReadonlySet<string>> {
    return this.obtained;
  }

  /**
   * Keeps what the kernel has of the chains of a handler that is skipped after failing (see
   * `FailingHandlers`), in the managers of this run (a dry run: all of them) whose wrap name is in
   * `wrapNames` (undefined: every one, for a handler that never said or showed which it uses).
   * The handler did not rebuild its part of the model, and an apply of a fresh manager removes
   * every chain of its wrap name that the model lacks: so the model takes over, as they are, the
   * kernel's chains that no handler of this run declared, and the rules of the manager's own chains
   * (the wrapped built-ins a jump hangs off) that it lacks. Chains another handler declared are
   * that handler's, and stay as it wants them. Once per manager.
   */
  async keepKernelStateFor(wrapNames: ReadonlySet<string> | undefined): Promise<void> {
    for (const entry of this.managers.values()) {
      const { manager, layout } = entry;
      if (this.kept.has(manager) || (wrapNames !== undefined && !wrapNames.has(manager.wrapName))) continue;
      if (!this.dryRun && !this.touched?.has(manager)) continue;
      await manager.keepKernelState({ tag: KEPT_FOR_FAILED_HANDLER, chain: (name, declared) => !declared || layout.has(name) });
      this.kept.add(manager);
    }
  }

  private conflict(wrapName: string, asked: Partial<ManagerFlavour>, why: string): AgentError {
    const kind = this.handlerKind;
    const who = kind !== undefined ? this.flavours.describe(kind) : "a caller";
    const given = Object.fromEntries(Object.entries(asked).filter(([, v]) => v !== undefined));
    return new AgentError(
      "MANAGER_CONFLICT",
      `${who} asks the ${wrapName} manager of ${this.namespace ?? "the host namespace"} for ${JSON.stringify(given)}, but ${why}`,
      kind !== undefined ? this.flavours.pluginOf(kind) : undefined,
    );
  }

  private note(wrapName: string): void {
    const kind = this.handlerKind;
    if (kind === undefined) return;
    const set = this.obtained.get(kind) ?? new Set<string>();
    set.add(wrapName);
    this.obtained.set(kind, set);
  }

  private requeued: { afterMs: number; kinds: Set<string> } | undefined;

  requeue(afterMs: number): void {
    if (this.dryRun || !Number.isFinite(afterMs) || afterMs < 0 || this.handlerKind === undefined) return;
    this.requeued ??= { afterMs, kinds: new Set() };
    this.requeued.afterMs = Math.min(this.requeued.afterMs, afterMs);
    this.requeued.kinds.add(this.handlerKind);
  }

  /** The earliest requeue asked for during the run and the handlers that asked, cleared. */
  takeRequeue(): { afterMs: number; kinds: ReadonlySet<string> } | undefined {
    const r = this.requeued;
    this.requeued = undefined;
    return r;
  }

  waker(): (() => void) | undefined {
    const kind = this.handlerKind;
    const loop = this.loop;
    // Nothing runs this namespace again in a dry run or a one-shot pass (`apply --once`).
    if (this.dryRun || kind === undefined || loop === undefined || !loop.live()) return undefined;
    return () => loop.wake(kind);
  }

  report(action: HostAction): void {
    if (this.dryRun) this.actions.push(action);
    // `name` is the logger's own key (the agent's name).
    else this.logger.debug({ action: action.verb, object: action.object, target: action.name, resource: action.resource, detail: action.detail }, "host change");
  }

  forgetNamespace(): void {
    this.managers.clear();
    this.applier = undefined;
    this.touched?.clear();
  }

  managerList(): IptablesManager[] {
    return [...this.managers.values()].map((e) => e.manager);
  }

  beginRun(): void {
    this.touched = new Set();
  }

  /** The managers touched during the run, still deferred once (the caller turns that off). */
  endRun(): IptablesManager[] {
    const list = [...(this.touched ?? [])];
    this.touched = undefined;
    return list;
  }

  private touch(manager: IptablesManager): void {
    if (!this.touched || this.touched.has(manager)) return;
    manager.deferApplyOn();
    this.touched.add(manager);
  }
}

/** Kernel names of every chain a manager declares (right after it is made: its own layout). */
function declaredChains(manager: IptablesManager): Set<string> {
  const out = new Set<string>();
  for (const family of [4, 6] as const) for (const table of Object.values(manager.tables(family))) for (const chain of table.declaredChains()) out.add(chain);
  return out;
}
