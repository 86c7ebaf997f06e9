/**
 * Our built agent binaries (`apps/l3-agent/bin/l3-agent.js`, `apps/l2-agent/bin/l2-agent.js`) run as an
 * operator runs them, `run` with flags and a YAML config, their JSON logs read as they come.
 */
import { appendFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { BenchProcess } from "./bench-process.js";

const require = createRequire(import.meta.url);

export function agentBinary(app: "l3-agent" | "l2-agent"): string {
  return join(dirname(require.resolve(`@chainwarden/${app}/package.json`)), "bin", `${app}.js`);
}

/**
 * What an apply log line says: "rules applied" (debug: one restore of a namespace and family has
 * returned) or "namespace applied" (info: the namespace's run, the work after the restore included,
 * has ended).
 */
export interface AppliedLine {
  kind: "rules" | "namespace";
  namespace: string;
  /** Epoch ms, the line's own time. */
  time: number;
  /** "namespace applied": the run (reconcile, restore, the work after it). */
  durationMs: number;
  /** Restore lines sent. */
  lines: number;
}

export interface OurAgentOptions {
  app: "l3-agent" | "l2-agent";
  args: readonly string[];
  onApplied?: (line: AppliedLine) => void;
  /** Also write every output line here (`CW_BENCH_LOG_DIR`). */
  logFile?: string;
}

export class OurAgent {
  /** Epoch ms at spawn. */
  readonly startedAt = Date.now();
  /** Log lines at warn level or above (pino levels ≥ 40), the first 50. */
  readonly problems: string[] = [];
  private readonly process: BenchProcess;

  constructor(options: OurAgentOptions) {
    this.process = new BenchProcess(options.app, process.execPath, [agentBinary(options.app), "run", ...options.args], {
      env: { ...process.env, FORCE_COLOR: "0", NO_COLOR: "1" },
      onLine: (line) => {
        if (options.logFile) appendFileSync(options.logFile, `${line}\n`);
        if (!line.startsWith("{")) return;
        let entry: { level?: number; msg?: string; time?: number; namespace?: string; durationMs?: number; lines?: number };
        try {
          entry = JSON.parse(line) as typeof entry;
        } catch {
          return;
        }
        const kind = entry.msg === "namespace applied" ? "namespace" : entry.msg === "rules applied" ? "rules" : undefined;
        if (kind && typeof entry.namespace === "string" && typeof entry.time === "number") {
          options.onApplied?.({ kind, namespace: entry.namespace, time: entry.time, durationMs: entry.durationMs ?? NaN, lines: entry.lines ?? NaN });
        }
        if ((entry.level ?? 0) >= 40 && this.problems.length < 50) this.problems.push(line.slice(0, 600));
      },
    });
  }

  get pid(): number {
    return this.process.pid;
  }

  assertRunning(): void {
    this.process.assertRunning();
  }

  describe(): string {
    return this.process.describe();
  }

  stop(): Promise<void> {
    return this.process.stop();
  }
}
