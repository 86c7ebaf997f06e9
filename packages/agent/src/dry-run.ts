import { listNamespaces, type HostRunner } from "@chainwarden/core";
import type { Logger } from "pino";
import type { Problem } from "./agent-errors.js";
import type { AgentConfig } from "./config-schema.js";
import type { NsKey } from "./desired-state.js";
import { errorFields, errorMessage } from "./error-fields.js";
import type { HostAction } from "./extension-points.js";
import { failureScope, resourcesNamedBy } from "./failure-scope.js";
import type { NamespacePlan, NamespaceStatus, PlanReport, StatusReport } from "./loop-reports.js";
import { LoopContext } from "./loop-context.js";
import { ManagerFlavours } from "./manager-flavours.js";
import { mapLimit } from "./map-limit.js";
import type { NamespaceWork } from "./namespace-work.js";
import { countRules, type RuleCounts } from "./rule-counts.js";

/** What a dry run reads from the reconcile loop. */
export interface DryRunSource {
  /** Every namespace the agent wants or has touched. */
  namespaces(): NsKey[];
  /**
   * Everything desired in a namespace, as a full pass with nothing applied; `isolate` holds more
   * resources and skips handlers (what a live run does after a handler failed).
   */
  work(ns: NsKey, isolate?: { held?: ReadonlyMap<string, ReadonlySet<string>>; benched?: ReadonlySet<string> }): NamespaceWork;
  /** Where a skipped handler's rules may be (undefined, or absent: every manager); see `LoopContext.keepKernelStateFor`. */
  wrapNamesOf?(ns: NsKey, kind: string): ReadonlySet<string> | undefined;
  /** What the stale cleanups would remove (`dryRun`: nothing is removed). */
  staleActions(): Promise<HostAction[]>;
  /** The desired state's problems (and the sources' since the last report). */
  problems(): Problem[];
  stateRead(): boolean;
}

export interface DryRunOptions {
  source: DryRunSource;
  runner: HostRunner;
  logger: Logger;
  config: AgentConfig;
  /** Each wrap name's manager flavour; default: the framework's. */
  flavours?: ManagerFlavours;
}

/**
 * `plan` and `status`: per namespace, fresh managers (never the live ones) in a `dryRun` context,
 * every handler reconciles everything as a full pass, and `manager.plan()` reads the kernel and
 * says what would be sent; what the stale cleanup would remove is listed too. Nothing is applied,
 * and the live loop's managers and kernel views are not touched. A handler that throws is handled
 * as a live run handles it (`failureScope`): its resources are held, or it is skipped and what the
 * kernel has of its chains kept, and the namespace is planned again; the plan names the handler.
 */
export class DryRun {
  constructor(private readonly options: DryRunOptions) {}

  async plan(): Promise<PlanReport> {
    const { source, config } = this.options;
    const stale = await this.stale();
    const keys = source.namespaces().filter((ns) => ns === undefined || !stale.has(ns));
    const plans = await mapLimit(keys, config.max_parallel_namespaces, async (ns) => (await this.namespace(ns)).plan);
    for (const [namespace, actions] of stale) plans.push({ namespace, resources: [], held: [], families: [], actions, stale: true });
    return { namespaces: plans, problems: source.problems(), stateRead: source.stateRead() };
  }

  async status(): Promise<StatusReport> {
    const { source, config, runner, logger } = this.options;
    const stale = await this.stale();
    const keys = source.namespaces().filter((ns) => ns === undefined || !stale.has(ns));
    let existing: Set<string> | undefined;
    if (keys.some((k) => k !== undefined)) {
      try {
        existing = new Set(await listNamespaces(runner));
      } catch (err) {
        logger.warn({ err }, "cannot list network namespaces; inferring from the plans");
      }
    }
    const rows = await mapLimit(keys, config.max_parallel_namespaces, async (ns) => {
      const { plan, counts } = await this.namespace(ns);
      const exists = ns === undefined ? true : existing ? existing.has(ns) : !plan.families.some((f) => f.namespaceMissing);
      return namespaceStatus(plan, counts, exists);
    });
    for (const namespace of stale.keys()) {
      rows.push({ namespace, resources: [], held: [], exists: true, inSync: false, pendingLines: 0, stale: true, rules: 0, chains: 0 });
    }
    return { namespaces: rows, problems: source.problems(), stateRead: source.stateRead() };
  }

  /** One namespace's plan, and the rules and chains its managers want. */
  async namespace(ns: NsKey): Promise<{ plan: NamespacePlan; counts: RuleCounts }> {
    const { source, runner, logger, config } = this.options;
    const flavours = this.options.flavours ?? ManagerFlavours.resolve([], { wrapName: config.wrap_name, useIpv6: config.use_ipv6 });
    const log = logger.child({ namespace: ns ?? null, dryRun: true });
    const held = new Map<string, Set<string>>();
    const benched = new Set<string>();
    const failedHandlers: NonNullable<NamespacePlan["failedHandlers"]> = [];
    /** Wrap names each handler obtained in earlier attempts: where a skipped one's rules may be. */
    const obtained = new Map<string, Set<string>>();
    // Each failure holds resources not held before or skips a handler not skipped before: this ends.
    for (;;) {
      const context = new LoopContext(ns, runner, log, logger, true, config, undefined, flavours);
      const { work, resources, held: heldIds, heldByKind, desired } = source.work(ns, { held, benched });
      const plan: NamespacePlan = { namespace: ns, resources, held: heldIds, families: [], actions: context.actions };
      if (failedHandlers.length > 0) plan.failedHandlers = failedHandlers;
      let failingKind: string | undefined;
      try {
        for (const w of work) {
          failingKind = context.handlerKind = w.handler.kind;
          await w.handler.reconcile(context, w.request);
        }
        failingKind = context.handlerKind = undefined;
        for (const kind of benched) await context.keepKernelStateFor(this.wrapNamesOf(ns, kind, obtained));
        for (const m of context.managerList()) plan.families.push(...(await m.plan()).families);
        return { plan, counts: countRules(context.managerList()) };
      } catch (err) {
        context.handlerKind = undefined;
        for (const [kind, wraps] of context.wrapNamesByKind()) obtained.set(kind, new Set([...(obtained.get(kind) ?? []), ...wraps]));
        const scope = failureScope({ error: err, failingKind, culprits: resourcesNamedBy(err, desired, heldByKind), desired, held: heldByKind });
        // Each failure must hold or skip more than the one before, or it would only repeat.
        const more =
          scope.scope === "resources" ? scope.resources.some(({ kind, id }) => !held.get(kind)?.has(id)) : scope.scope === "handler" && !benched.has(scope.kind);
        if (failingKind === undefined || !more) {
          plan.families = [];
          plan.error = errorMessage(err);
          // The logger is bound to the namespace already.
          context.logger.warn(errorFields(err), "plan failed");
          return { plan, counts: countRules(context.managerList()) };
        }
        const plugin = flavours.pluginOf(failingKind);
        const failure = { kind: failingKind, ...(plugin !== undefined ? { plugin } : {}), error: errorMessage(err) };
        const earlier = failedHandlers.findIndex((f) => f.kind === failingKind);
        if (earlier >= 0) failedHandlers[earlier] = failure;
        else failedHandlers.push(failure);
        context.logger.warn({ ...errorFields(err), kind: failingKind, ...(plugin !== undefined ? { plugin } : {}) }, "resource handler failed in the plan; planned as a run would apply it");
        if (scope.scope === "resources") {
          for (const { kind, id } of scope.resources) {
            const set = held.get(kind) ?? new Set<string>();
            set.add(id);
            held.set(kind, set);
          }
        } else if (scope.scope === "handler") benched.add(scope.kind);
      }
    }
  }

  /** The wrap names a skipped handler declares or obtained in an earlier attempt, or the loop saw it use. */
  private wrapNamesOf(ns: NsKey, kind: string, obtained: ReadonlyMap<string, ReadonlySet<string>>): ReadonlySet<string> | undefined {
    const known = this.options.source.wrapNamesOf?.(ns, kind);
    const mine = obtained.get(kind);
    if (!mine || mine.size === 0) return known;
    return new Set([...(known ?? []), ...mine]);
  }

  /** What the stale cleanups would remove, by namespace (other objects under their own name). */
  private async stale(): Promise<Map<string, HostAction[]>> {
    const out = new Map<string, HostAction[]>();
    for (const action of await this.options.source.staleActions()) {
      const list = out.get(action.name) ?? [];
      list.push(action);
      out.set(action.name, list);
    }
    return out;
  }
}

/** A namespace's status row from its plan. In sync: nothing to send or remove, nothing held, no error. */
export function namespaceStatus(plan: NamespacePlan, counts: RuleCounts, exists: boolean): NamespaceStatus {
  const pendingLines = plan.families.reduce((n, f) => n + f.lines, 0);
  let rules = 0;
  let chains = 0;
  for (const c of counts.values()) {
    rules += c.rules;
    chains += c.chains;
  }
  const removals = plan.actions.some((a) => a.verb === "remove" || a.verb === "stop");
  const status: NamespaceStatus = {
    namespace: plan.namespace,
    resources: plan.resources,
    held: plan.held,
    exists,
    inSync: plan.error === undefined && pendingLines === 0 && plan.held.length === 0 && !removals,
    pendingLines,
    rules,
    chains,
  };
  if (plan.error !== undefined) status.error = plan.error;
  else if (plan.failedHandlers?.length) {
    status.inSync = false;
    status.error = plan.failedHandlers.map((f) => `the ${f.kind} handler${f.plugin !== undefined ? ` of plugin ${f.plugin}` : ""} failed: ${firstLine(f.error)}`).join("; ");
  }
  return status;
}

function firstLine(text: string): string {
  return text.split("\n")[0] ?? text;
}
