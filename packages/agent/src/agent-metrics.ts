import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import { AgentError } from "./agent-errors.js";

/**
 * The agent's Prometheus metrics, in a registry of its own (never prom-client's global one, so two
 * agents in one process, or tests, do not collide).
 */
export class AgentMetrics {
  readonly registry = new Registry();

  readonly applyDuration = new Histogram({
    name: "chainwarden_apply_duration_seconds",
    help: "Time to reconcile and apply one namespace, by kind of pass (full: start, resync, retry; partial: a change)",
    labelNames: ["kind"] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly restoreCalls = new Counter({
    name: "chainwarden_restore_calls_total",
    help: "iptables-restore invocations",
    labelNames: ["family"] as const,
    registers: [this.registry],
  });
  readonly restoreErrors = new Counter({
    name: "chainwarden_restore_errors_total",
    help: "Failed applies, by error code",
    labelNames: ["code"] as const,
    registers: [this.registry],
  });
  readonly restoreLines = new Counter({
    name: "chainwarden_restore_lines_total",
    help: "Edit lines sent to iptables-restore",
    labelNames: ["family"] as const,
    registers: [this.registry],
  });
  readonly rules = new Gauge({
    name: "chainwarden_rules",
    help: "Rules this agent manages, by family and table",
    labelNames: ["family", "table"] as const,
    registers: [this.registry],
  });
  readonly chains = new Gauge({
    name: "chainwarden_chains",
    help: "Chains this agent declares, by family and table",
    labelNames: ["family", "table"] as const,
    registers: [this.registry],
  });
  readonly driftRepairs = new Counter({
    name: "chainwarden_drift_repairs_total",
    help: "Namespaces where a verify found the kernel differing from what we applied, and repaired it",
    registers: [this.registry],
  });
  readonly retries = new Counter({
    name: "chainwarden_retries_total",
    help: "Namespace applies retried after a failure",
    registers: [this.registry],
  });
  readonly lockRetries = new Counter({
    name: "chainwarden_lock_retries_total",
    help: "iptables-restore attempts repeated because another process held the xtables lock",
    registers: [this.registry],
  });
  readonly lastSuccessfulSync = new Gauge({
    name: "chainwarden_last_successful_sync_timestamp_seconds",
    help: "Unix time of the last pass in which every namespace applied",
    registers: [this.registry],
  });
  readonly eventToApplied = new Histogram({
    name: "chainwarden_event_to_applied_seconds",
    help: "From a desired-state change arriving to its rules being in the kernel",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });
  readonly stateProblems = new Counter({
    name: "chainwarden_state_problems_total",
    help: "Invalid state files or resources reported (the last good state stays in force)",
    registers: [this.registry],
  });
  readonly heldResources = new Gauge({
    name: "chainwarden_held_resources",
    help: "Resources kept as the kernel has them instead of as desired, by reason (invalid: input never valid in this process; failed: an apply that failed, retried alone)",
    labelNames: ["reason"] as const,
    registers: [this.registry],
  });
  readonly resourceFailures = new Counter({
    name: "chainwarden_resource_failures_total",
    help: "Applies that failed because of one resource, which was then held and retried alone while the rest of its namespace applied",
    labelNames: ["kind"] as const,
    registers: [this.registry],
  });

  /** `chainwarden_build_info`: one series of value 1 whose labels say what runs (`setBuildInfo`). */
  readonly buildInfo = new Gauge({
    name: "chainwarden_build_info",
    help: "Always 1: what runs, in its labels (the app and its version, the iptables backend, the plugins as name@version)",
    labelNames: ["app", "version", "backend", "plugins"] as const,
    registers: [this.registry],
  });

  /** Whether `collectProcessMetrics` already ran. */
  private processMetrics = false;

  /**
   * Adds prom-client's default metrics (`process_*`: CPU, memory, open files, start time;
   * `nodejs_*`: event loop lag, heap, GC) to this registry, once. Only a served agent calls it: they
   * watch the event loop and GC, which a one-shot run or a test does not need.
   */
  collectProcessMetrics(): void {
    if (this.processMetrics) return;
    this.processMetrics = true;
    collectDefaultMetrics({ register: this.registry });
  }

  /** Sets `chainwarden_build_info` (one series, value 1). */
  setBuildInfo(info: { app: string; version: string; backend: string; plugins: readonly { name: string; version: string }[] }): void {
    this.buildInfo.reset();
    this.buildInfo.set({ app: info.app, version: info.version, backend: info.backend, plugins: info.plugins.map((p) => `${p.name}@${p.version}`).join(",") }, 1);
  }

  /**
   * A gauge of a plugin's own, served with the agent's (`env.metrics` in `register`); `collect`
   * sets it at each scrape. The name must start with `chainwarden_` and be new in this agent: a
   * clash is a bug, so it throws at registration, naming the metric.
   */
  gauge<L extends string = never>(spec: { name: string; help: string; labelNames?: readonly L[]; collect?: (gauge: Gauge<L>) => void }): Gauge<L> {
    this.checkName(spec.name);
    const collect = spec.collect;
    return new Gauge<L>({
      name: spec.name,
      help: spec.help,
      labelNames: spec.labelNames ?? [],
      registers: [this.registry],
      // At scrape time: the value read where it lives, never stale.
      ...(collect ? { collect(this: Gauge<L>) { collect(this); } } : {}),
    });
  }

  /** A counter of a plugin's own; the same rules as `gauge`. */
  counter<L extends string = never>(spec: { name: string; help: string; labelNames?: readonly L[] }): Counter<L> {
    this.checkName(spec.name);
    return new Counter<L>({ name: spec.name, help: spec.help, labelNames: spec.labelNames ?? [], registers: [this.registry] });
  }

  private checkName(name: string): void {
    if (!/^chainwarden_[a-z0-9_]+$/.test(name)) throw new AgentError("PLUGIN_INVALID", `metric ${JSON.stringify(name)}: a plugin's metric is named chainwarden_<lowercase, digits, _>`);
    if (this.registry.getSingleMetric(name)) throw new AgentError("PLUGIN_INVALID", `metric ${name} is already registered in this agent`);
  }

  /** Every metric of this agent (its own, the plugins', the process's) in Prometheus' text format, as `/metrics` serves it. */
  metricsText(): Promise<string> {
    return this.registry.metrics();
  }
}
