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

type ManagerOptions = Pick<IptablesManagerOptions, "wrapName" | "stateless" | "nat" | "useIpv6">;

/**
 * One namespace's `ReconcileContext`. Managers are keyed by (cut) wrap name and share one applier,
 * so that their kernel views stay in step. During a run every manager a handler obtains is deferred
 * (`deferApplyOn`) until the loop applies it at the end.
 */
export class LoopContext implements ReconcileContext {
  private readonly managers = new Map<string, { manager: IptablesManager; effective: { stateless: boolean; nat: boolean; useIpv6: boolean } }>();
  private applier: IptablesApplier | undefined;
  private touched: Set<IptablesManager> | undefined;

  constructor(
    readonly namespace: string | undefined,
    readonly runner: HostRunner,
    readonly logger: Logger,
    /** Core logs name the namespace themselves: its logger is not bound to it. */
    private readonly coreLogger: CoreLogger,
    readonly dryRun: boolean,
    private readonly config: AgentConfig,
    private readonly loop?: { wake(kind: string): void; live(): boolean },
  ) {}

  /** What handlers reported this run (dry runs keep them for `plan`; live runs log them). */
  readonly actions: HostAction[] = [];

  /** The handler being called (set by the loop before each `reconcile`). */
  handlerKind: string | undefined;

  manager(options: ManagerOptions = {}): IptablesManager {
    const wrapName = wrapNameFor(options.wrapName ?? this.config.wrap_name);
    const existing = this.managers.get(wrapName);
    if (existing) {
      // Only what the caller asks for must match: a handler that names no tables (`manager()`)
      // shares the namespace's manager as another handler made it (the l2 agent's is stateless).
      const asked = { stateless: options.stateless, nat: options.nat, useIpv6: options.useIpv6 };
      const clash = (Object.keys(asked) as (keyof typeof asked)[]).filter((k) => asked[k] !== undefined && asked[k] !== existing.effective[k]);
      if (clash.length > 0) {
        throw new AgentError(
          "MANAGER_CONFLICT",
          `the ${wrapName} manager of ${this.namespace ?? "the host namespace"} was created with ${JSON.stringify(existing.effective)}; it cannot also be used with ${JSON.stringify(asked)}`,
        );
      }
      this.touch(existing.manager);
      return existing.manager;
    }
    const effective = {
      stateless: options.stateless ?? false,
      nat: options.nat ?? true,
      useIpv6: options.useIpv6 ?? this.config.use_ipv6,
    };
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
      ...effective,
    });
    this.managers.set(wrapName, { manager, effective });
    // A dry run never applies: its managers stay deferred, so even an explicit `apply()` is a no-op.
    if (this.dryRun) manager.deferApplyOn();
    else this.touch(manager);
    return manager;
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
