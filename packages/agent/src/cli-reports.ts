/**
 * What the CLI prints for `apply --once`, `plan` and `status`, and how each decides its exit code.
 * `plan` output is itself `iptables-restore` input: everything but the restore lines is a `#`
 * comment. Failures and invalid input also go to stderr, one line each, naming the namespace and
 * the resource.
 */
import { formatProblems, type Problem } from "./agent-errors.js";
import type { HostAction } from "./extension-points.js";
import type { PlanReport, StatusReport, SyncReport } from "./loop-reports.js";

/** `apply --once` succeeded: a state was read, every namespace and resource applied, every input valid. */
export function applySucceeded(report: SyncReport): boolean {
  return report.stateRead && report.failed.length === 0 && report.failedResources.length === 0 && report.failedHandlers.length === 0 && report.problems.length === 0;
}

/** One line on stdout: how much applied. */
export function applySummary(report: SyncReport): string {
  if (!report.stateRead) return "no desired state was read: nothing was changed\n";
  const parts = [`applied ${report.applied} of ${plural(report.namespaces, "namespace")}`];
  if (report.failed.length) parts.push(`${report.failed.length} failed`);
  if (report.failedResources.length) parts.push(`${plural(report.failedResources.length, "resource")} held after failing`);
  if (report.failedHandlers.length) parts.push(`${plural(report.failedHandlers.length, "handler")} skipped after failing`);
  if (report.problems.length) parts.push(plural(report.problems.length, "invalid input"));
  return `${parts.join(", ")}\n`;
}

/** The failures of `apply --once`, for stderr. */
export function applyFailures(name: string, report: SyncReport): string {
  const out: string[] = [];
  if (report.problems.length > 0) out.push(`${name}: ${invalidHeadline(report.problems)}:\n${formatProblems(report.problems)}`);
  for (const f of report.failed) out.push(`${name}: apply failed in namespace ${namespaceLabel(f.namespace)}: ${describeError(f.error)}`);
  for (const f of report.failedResources) {
    out.push(`${name}: ${f.resource} in namespace ${namespaceLabel(f.namespace)} failed to apply and is kept as the kernel has it: ${describeError(f.error)}`);
  }
  for (const f of report.failedHandlers) {
    out.push(
      `${name}: ${describeHandler(f)} failed in namespace ${namespaceLabel(f.namespace)} even with its resources held; it is skipped there and what the kernel has of its chains is kept: ${describeError(f.error)}`,
    );
  }
  return out.length ? `${out.join("\n")}\n` : "";
}

export function planSucceeded(report: PlanReport): boolean {
  return report.stateRead && report.problems.length === 0 && report.namespaces.every((p) => p.error === undefined && !p.failedHandlers?.length);
}

/** The failures of `plan`, for stderr. */
export function planFailures(name: string, report: PlanReport): string {
  const out: string[] = [];
  if (report.problems.length > 0) out.push(`${name}: ${invalidHeadline(report.problems)}:\n${formatProblems(report.problems)}`);
  if (!report.stateRead) out.push(`${name}: no desired state was read; the plan changes nothing`);
  for (const p of report.namespaces) {
    if (p.error !== undefined) out.push(`${name}: plan failed in namespace ${namespaceLabel(p.namespace)}: ${p.error}`);
    for (const f of p.failedHandlers ?? []) {
      out.push(`${name}: ${describeHandler(f)} failed in namespace ${namespaceLabel(p.namespace)}; planned as a run would apply it (its resources held): ${f.error}`);
    }
  }
  return out.length ? `${out.join("\n")}\n` : "";
}

/**
 * Each namespace and family as `#` headers around the exact restore input (itself restore input),
 * with the host changes beside iptables (`# would ...`), what is held, and what would be removed.
 */
export function formatPlan(report: PlanReport): string {
  const out: string[] = [];
  if (!report.stateRead) out.push("# no desired state was read: nothing would be changed");
  if (report.problems.length > 0) {
    out.push(`# ${invalidHeadline(report.problems)}:`);
    for (const line of formatProblems(report.problems).split("\n")) out.push(`#${line}`);
  }
  if (report.namespaces.length === 0) {
    if (report.stateRead) out.push("# no namespaces in the desired state: no changes");
    return `${out.join("\n")}\n`;
  }
  for (const p of report.namespaces) {
    if (p.stale) {
      // Other objects than namespaces (a bridge a driver's sweep found) are listed under their own name and kind.
      const object = p.actions.length > 0 && !p.actions.some((a) => a.object === "namespace") ? p.actions[0]!.object : "namespace";
      out.push(`# ${object} ${namespaceLabel(p.namespace)}: left by an earlier run and no longer desired`);
      for (const a of p.actions) out.push(`# ${describeAction(a)}`);
      continue;
    }
    out.push(`# namespace ${namespaceLabel(p.namespace)}: ${p.resources.length ? p.resources.join(", ") : "no resources"}`);
    if (p.held.length) out.push(`# held as the kernel has it (invalid input or a failed apply): ${p.held.join(", ")}`);
    for (const f of p.failedHandlers ?? []) out.push(`# ${describeHandler(f)} failed (its resources are held as the kernel has them): ${firstLine(f.error)}`);
    if (p.error !== undefined) {
      out.push(`# error (nothing planned here): ${firstLine(p.error)}`);
      continue;
    }
    for (const a of p.actions) out.push(`# ${describeAction(a)}`);
    for (const f of p.families) {
      const missing = f.namespaceMissing ? " (namespace does not exist yet: input for a fresh one)" : "";
      if (f.input === "") {
        out.push(`# IPv${f.family}: no changes${missing}`);
        continue;
      }
      const removed = f.changes.filter((c) => c.deleted).map((c) => c.chain);
      out.push(`# IPv${f.family}: ${plural(f.lines, "line")}${missing}${removed.length ? `; removes chains ${removed.join(", ")}` : ""}`);
      out.push(f.input.endsWith("\n") ? f.input.slice(0, -1) : f.input);
    }
    if (p.families.length === 0 && p.actions.length === 0) out.push("# no changes");
  }
  return `${out.join("\n")}\n`;
}

/** `status` is in sync: a state was read and valid, and every namespace is as desired. */
export function statusInSync(report: StatusReport): boolean {
  return report.stateRead && report.problems.length === 0 && report.namespaces.every((s) => s.inSync && s.error === undefined);
}

/** The reasons `status` is not in sync that the table does not show, for stderr. */
export function statusFailures(name: string, report: StatusReport): string {
  const out: string[] = [];
  if (!report.stateRead) out.push(`${name}: no desired state was read`);
  if (report.problems.length > 0) out.push(`${name}: ${invalidHeadline(report.problems)}:\n${formatProblems(report.problems)}`);
  for (const s of report.namespaces) {
    if (s.error !== undefined) out.push(`${name}: status of namespace ${namespaceLabel(s.namespace)}: ${s.error}`);
  }
  return out.length ? `${out.join("\n")}\n` : "";
}

/** `status` as a table, one row per namespace: exists, resources, in sync, pending lines, rules, chains, and a note (held, stale, the error). */
export function formatStatus(report: StatusReport): string {
  const header = ["NAMESPACE", "EXISTS", "RESOURCES", "IN SYNC", "PENDING LINES", "RULES", "CHAINS", "NOTE"];
  const table = report.namespaces.map((s) => [
    namespaceLabel(s.namespace),
    s.exists ? "yes" : "no",
    s.resources.length ? s.resources.join(",") : "-",
    s.inSync ? "yes" : "no",
    String(s.pendingLines),
    String(s.rules),
    String(s.chains),
    s.error !== undefined
      ? firstLine(s.error)
      : s.stale
        ? "stale: left by an earlier run, would be removed"
        : s.held.length
          ? `held as the kernel has it: ${s.held.join(",")}`
          : "",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd();
  return `${[line(header), ...table.map(line)].join("\n")}\n`;
}

/** `would remove namespace qrouter-1 (router/1)`. */
export function describeAction(a: HostAction): string {
  const verb = { create: "would create", remove: "would remove", start: "would start", stop: "would stop", keep: "keeps as the kernel has it", wait: "waits:" }[a.verb];
  const what = `${verb} ${a.object} ${a.name}`;
  const extra = [a.resource, a.detail].filter((x): x is string => x !== undefined && x !== "");
  return extra.length ? `${what} (${extra.join("; ")})` : what;
}

/** The message, plus the namespace and resource when the error names them and the message does not. */
export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const e = err as Error & { namespace?: unknown; resource?: unknown; plugin?: unknown };
  const extra: string[] = [];
  if (typeof e.namespace === "string" && !e.message.includes(e.namespace)) extra.push(`namespace ${e.namespace}`);
  if (typeof e.resource === "string" && !e.message.includes(e.resource)) extra.push(`resource ${e.resource}`);
  if (typeof e.plugin === "string" && !e.message.includes(e.plugin)) extra.push(`plugin ${e.plugin}`);
  return extra.length ? `${e.message} (${extra.join(", ")})` : e.message;
}

function invalidHeadline(problems: readonly Problem[]): string {
  return `${plural(problems.length, "invalid input")}; what they name is kept as it is, nothing is removed for them`;
}

/** Errors from a failed restore span lines (numbered context); tables and `#` headers take the first. */
function firstLine(text: string): string {
  return text.split("\n", 1)[0]!;
}

function namespaceLabel(namespace: string | undefined): string {
  return namespace ?? "(host)";
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** `the port handler of plugin l2-secgroup`. */
function describeHandler(f: { kind: string; plugin?: string }): string {
  return `the ${f.kind} handler${f.plugin !== undefined ? ` of plugin ${f.plugin}` : ""}`;
}
