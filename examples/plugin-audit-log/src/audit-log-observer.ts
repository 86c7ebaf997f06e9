import { appendFile } from "node:fs/promises";
import type { ApplyEvent, ApplyObserver } from "@chainwarden/agent";

/** One line of the audit log (JSON, one object per line). */
export interface AuditRecord {
  /** ISO 8601, when the apply finished. */
  time: string;
  /** null: the agent's default namespace (the host's own unless the app sets one). */
  namespace: string | null;
  /** `kind/id` of every resource in the apply. */
  resources: string[];
  /** A full pass (start, resync, retry) rather than a change. */
  full: boolean;
  /** Per IP family: edit lines sent to iptables-restore (0 when nothing changed), and the tables touched. */
  families: { family: 4 | 6; sent: boolean; lines: number; tables: string[] }[];
  /** Edit lines sent, all families. */
  lines_sent: number;
  duration_ms: number;
  /** The error message when the apply failed (nothing was applied in that namespace). */
  error: string | null;
}

export function auditRecord(event: ApplyEvent, now = new Date()): AuditRecord {
  const families = (event.result?.families ?? []).map((f) => ({
    family: f.family,
    sent: f.sent,
    lines: f.sent ? f.lines : 0,
    tables: f.sent ? f.tables : [],
  }));
  return {
    time: now.toISOString(),
    namespace: event.namespace ?? null,
    resources: [...event.resources],
    full: event.full,
    families,
    lines_sent: families.reduce((n, f) => n + f.lines, 0),
    duration_ms: Math.round(event.durationMs * 1000) / 1000,
    error: event.error ? event.error.message : null,
  };
}

/**
 * Appends one JSON line per apply to `path`. Appends are chained so lines keep the order of the
 * applies even when several namespaces finish at once; each line is written with one append call, so
 * a reader never sees half a line from us. Write errors are thrown to the agent, which logs them
 * (an observer must never stop an apply).
 */
export class AuditLogObserver implements ApplyObserver {
  private tail: Promise<void> = Promise.resolve();

  constructor(readonly path: string) {}

  onApply(event: ApplyEvent): Promise<void> {
    const line = `${JSON.stringify(auditRecord(event))}\n`;
    const write = this.tail.then(() => appendFile(this.path, line, { encoding: "utf8", mode: 0o640 }));
    // The next write waits for this one whether or not it failed.
    this.tail = write.catch(() => undefined);
    return write;
  }
}
