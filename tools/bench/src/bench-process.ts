/**
 * The long-running processes of the RPC bench (our agents, Neutron's agent, the in-namespace broker
 * relay): started from argument arrays, each in its own process group so that `stop()` ends it with
 * whatever it started (privsep helpers, spawn helpers), and guarded by `PR_SET_PDEATHSIG`
 * (openstack-lab's `exec_with_parent.py`) so that none outlives the bench even when the bench is killed.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const PYTHON = "/usr/bin/python3";
const EXEC_WITH_PARENT = join(dirname(createRequire(import.meta.url).resolve("@chainwarden/openstack-lab/package.json")), "src", "python", "exec_with_parent.py");

export interface BenchProcessOptions {
  env?: NodeJS.ProcessEnv;
  /** Each line of stdout and stderr, as it arrives. */
  onLine?: (line: string, stream: "stdout" | "stderr") => void;
}

export class BenchProcess {
  readonly child: ChildProcess;
  /** The last lines of output, for an error message. */
  private tail: string[] = [];
  private exitInfo: string | undefined;
  readonly exited: Promise<void>;

  /** `program` must be an absolute path (it is exec'd as it is). */
  constructor(
    readonly name: string,
    program: string,
    args: readonly string[],
    options: BenchProcessOptions = {},
  ) {
    this.child = spawn(PYTHON, [EXEC_WITH_PARENT, program, ...args], { env: options.env ?? process.env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    for (const stream of ["stdout", "stderr"] as const) {
      let partial = "";
      this.child[stream]!.setEncoding("utf8").on("data", (d: string) => {
        const lines = (partial + d).split("\n");
        partial = lines.pop()!;
        for (const line of lines) {
          this.tail.push(line);
          if (this.tail.length > 60) this.tail.shift();
          options.onLine?.(line, stream);
        }
      });
    }
    this.exited = new Promise((resolve) => {
      this.child.on("error", (e) => {
        this.exitInfo = `could not start: ${e.message}`;
        resolve();
      });
      this.child.on("close", (code, signal) => {
        this.exitInfo = `exited (${signal ?? code})`;
        resolve();
      });
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** Throws with the process's last output when it is no longer running. */
  assertRunning(): void {
    if (!this.running) throw new Error(`${this.name} ${this.exitInfo}; its last output:\n${this.describe()}`);
  }

  describe(): string {
    return this.tail.join("\n");
  }

  /**
   * SIGTERM to the process (it stops its own children, as in production), SIGKILL to its group after
   * `graceMs`; resolves when it is gone, then kills what is left in its group.
   */
  async stop(graceMs = 15_000): Promise<void> {
    if (this.running) {
      try {
        process.kill(this.pid, "SIGTERM");
      } catch {
        // already gone
      }
      const timer = setTimeout(() => signalGroup(this.pid, "SIGKILL"), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    // What the process started and left behind in its group.
    signalGroup(this.pid, "SIGKILL");
  }
}

function signalGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (!pid) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

export interface Rss {
  /** VmRSS of the process, MiB. */
  rssMiB: number;
  /** VmHWM (the peak RSS so far) of the process, MiB. */
  peakMiB: number;
  /** VmRSS of the process and all its descendants (helpers, privsep daemons), MiB: shared pages counted in each. */
  treeMiB: number;
  /** Pss of that tree (each shared page split among the processes sharing it), MiB: what the tree costs. */
  treePssMiB: number;
  /** How many processes that tree has (with the process itself). */
  processes: number;
}

function statusKiB(pid: number, key: string, file = "status"): number {
  try {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/${file}`, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Pids of the processes whose command line contains `text` (Neutron's privsep daemons leave the agent's tree). */
export function pidsWith(text: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, "utf8").includes(text)) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** `pid`, its descendants, `also` and theirs. */
function processTree(pid: number, also: readonly number[]): Set<number> {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // The command name may hold spaces and parentheses: the fields after the last ")".
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // gone meanwhile
    }
  }
  const tree = new Set<number>();
  const todo = [pid, ...also];
  while (todo.length) {
    const p = todo.pop()!;
    if (tree.has(p)) continue;
    tree.add(p);
    todo.push(...(children.get(p) ?? []));
  }
  return tree;
}

/**
 * CPU used so far by `pid`, its descendants, `also` and theirs, ms: each one's user + system time
 * and that of its children it has reaped (the commands it ran).
 */
export function cpuMsOf(pid: number, also: readonly number[] = []): number {
  let ticks = 0;
  for (const p of processTree(pid, also)) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      // utime, stime, cutime, cstime: fields 14–17 of /proc/<pid>/stat.
      ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
    } catch {
      // gone meanwhile
    }
  }
  return ticks * 10;
}

/** The memory of `pid` and its process tree (plus `also` and theirs), from /proc. */
export function rssOf(pid: number, also: readonly number[] = []): Rss {
  const tree = processTree(pid, also);
  const mib = (kib: number) => kib / 1024;
  return {
    rssMiB: mib(statusKiB(pid, "VmRSS")),
    peakMiB: mib(statusKiB(pid, "VmHWM")),
    treeMiB: mib([...tree].reduce((s, p) => s + statusKiB(p, "VmRSS"), 0)),
    treePssMiB: mib([...tree].reduce((s, p) => s + statusKiB(p, "Pss", "smaps_rollup"), 0)),
    processes: tree.size,
  };
}
