/**
 * Runs the BUILT agent binary (`bin/<name>.js` → `dist/main.js`) as a child process, the way an
 * operator does: `node bin/l3-agent.js ARGS...` from an argument array, never through a shell.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";

/** How a binary run ended: its exit code and signal, and everything it wrote to stdout and stderr. */
export interface CliResult {
  /** The exit code (128 + n when killed by a signal). */
  code: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** One pino JSON line from the agent's logs. */
export type LogLine = Record<string, unknown> & { msg?: string; level?: number };

const CHILD_ENV = { ...process.env, FORCE_COLOR: "0", NO_COLOR: "1", LC_ALL: "C" };

/** Runs the binary to completion. */
export function runCli(bin: string, args: readonly string[], timeoutMs = 20_000): Promise<CliResult> {
  return new AgentProcess(bin, args, timeoutMs).exited;
}

/** Options of `AgentProcess` beyond the binary, its arguments and its time-out. */
export interface AgentProcessOptions {
  /**
   * A command the binary runs under, as an argument array that ends where `node <bin> args…` follow,
   * e.g. `["nsenter", "--mount=/proc/<pid>/ns/mnt"]`. It must exec them (not fork), so that the
   * agent is the child: signals and the exit code are its own.
   */
  wrapper?: readonly string[];
}

/** A running binary (for `run`): its output so far, its logs, signals, its exit. */
export class AgentProcess {
  readonly child: ChildProcess;
  stdout = "";
  stderr = "";
  readonly exited: Promise<CliResult>;
  private exitInfo: CliResult | undefined;
  private readonly timer: NodeJS.Timeout;

  constructor(bin: string, args: readonly string[], timeoutMs = 30_000, options: AgentProcessOptions = {}) {
    const [command, ...prefix] = [...(options.wrapper ?? []), process.execPath];
    this.child = spawn(command!, [...prefix, bin, ...args], { stdio: ["ignore", "pipe", "pipe"], env: CHILD_ENV });
    this.child.stdout!.setEncoding("utf8").on("data", (d: string) => (this.stdout += d));
    this.child.stderr!.setEncoding("utf8").on("data", (d: string) => (this.stderr += d));
    // A hung agent must not hang the suite.
    this.timer = setTimeout(() => this.child.kill("SIGKILL"), timeoutMs);
    this.exited = new Promise((resolve, reject) => {
      this.child.on("error", reject);
      this.child.on("close", (code, signal) => {
        clearTimeout(this.timer);
        this.exitInfo = { code: code ?? 128 + signalNumber(signal), signal, stdout: this.stdout, stderr: this.stderr };
        resolve(this.exitInfo);
      });
    });
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** Sends the signal to the agent (e.g. `SIGTERM` to test a graceful stop); returns at once, `exited` says how it ended. */
  signal(name: NodeJS.Signals): void {
    this.child.kill(name);
  }

  /** The JSON log lines on stdout so far (`run` logs to stdout). */
  logs(): LogLine[] {
    return this.stdout
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .flatMap((l) => {
        try {
          return [JSON.parse(l) as LogLine];
        } catch {
          return [];
        }
      });
  }

  /**
   * The first JSON log line on stdout that satisfies `predicate`, polled until it appears. Throws (a plain
   * `Error` naming `what`) after `timeoutMs`, or at once when the agent exits without writing it.
   */
  async waitForLog(predicate: (line: LogLine) => boolean, what: string, timeoutMs = 10_000): Promise<LogLine> {
    return waitFor(() => this.logs().find(predicate), `log line: ${what}`, timeoutMs, () => this.running);
  }

  /** Teardown: a still-running agent is killed (SIGKILL) and awaited. */
  async kill(): Promise<void> {
    if (this.running) this.child.kill("SIGKILL");
    await this.exited.catch(() => undefined);
  }

  /** The tail of the agent's stdout and stderr, for a failing assertion's message. */
  describe(): string {
    return `stdout:\n${this.stdout.slice(-4000)}\nstderr:\n${this.stderr.slice(-4000)}`;
  }
}

/**
 * Polls `probe` until it returns something other than undefined/false. `alive` (when given) stops
 * the wait early with a clear message when the process it depends on has exited.
 */
export async function waitFor<T>(
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  what: string,
  timeoutMs = 10_000,
  alive?: () => boolean,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (alive && !alive()) throw new Error(`gave up waiting for ${what}: the agent exited`);
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0 }, () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function signalNumber(signal: NodeJS.Signals | null): number {
  return signal === "SIGKILL" ? 9 : signal === "SIGTERM" ? 15 : signal === "SIGINT" ? 2 : 0;
}
