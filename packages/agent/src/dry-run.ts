import { listNamespaces, type HostRunner } from "@chainwarden/core";
import type { Logger } from "pino";
import type { Problem } from "./agent-errors.js";
import type { AgentConfig } from "./config-schema.js";
import type { NsKey } from "./desired-state.js";
import { errorFields, errorMessage } from "./error-fields.js";
import type { HostAction } from "./extension-points.js";
import type { NamespacePlan, NamespaceStatus, PlanReport, StatusReport } from "./loop-reports.js";
import { LoopContext } from "./loop-context.js";
import { mapLimit } from "./map-limit.js";
import type { NamespaceWork } from "./namespace-work.js";
import { countRules, type RuleCounts } from "./rule-counts.js";

/** What a dry run reads from the reconcile loop. */
export interface DryRunSource {
  /** Every namespace the agent wants or has touched. */
  namespaces(): NsKey[];
  /** Everything desired in a namespace, as a full pass with nothing applied. */
  work(ns: NsKey): NamespaceWork;
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
}

/**
 * `plan` and `status`: per namespace, fresh managers (never the live ones) in a `dryRun` context,
 * every handler reconciles everything as a full pass, and `manager.plan()` reads the kernel and
 * says what would be sent; what the stale cleanup would remove is listed too. Nothing is applied,
 * and the live loop's managers and kernel views are not touched.
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
    const context = new LoopContext(ns, runner, logger.child({ namespace: ns ?? null, dryRun: true }), logger, true, config);
    const { work, resources, held } = source.work(ns);
    const plan: NamespacePlan = { namespace: ns, resources, held, families: [], actions: context.actions };
    try {
      for (const w of work) {
        context.handlerKind = w.handler.kind;
        await w.handler.reconcile(context, w.request);
      }
      context.handlerKind = undefined;
      for (const m of context.managerList()) plan.families.push(...(await m.plan()).families);
    } catch (err) {
      plan.families = [];
      plan.error = errorMessage(err);
      // The logger is bound to the namespace already.
      context.logger.warn(errorFields(err), "plan failed");
    }
    return { plan, counts: countRules(context.managerList()) };
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
  return status;
}
