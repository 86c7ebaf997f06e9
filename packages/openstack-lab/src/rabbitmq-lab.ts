import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, waitForPort } from "./free-port.js";

const SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const PYTHON = "/usr/bin/python3";
// Beside the compiled file and the source alike: dist/ and src/ are siblings.
const EXEC_WITH_PARENT = fileURLToPath(new URL("../src/python/exec_with_parent.py", import.meta.url));
const CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl";

export interface RabbitMqLabOptions {
  /** How long a start may take before it counts as failed. */
  startTimeoutMs?: number;
}

/**
 * A real RabbitMQ broker for one test file, started without systemd (Debian's `rabbitmq-server`
 * package): its own temporary directory for the database, logs and Erlang cookie, its own node name,
 * AMQP, distribution and epmd ports on loopback, so it never meets the host's broker or another
 * test's. `stop()` ends the broker and its epmd and removes the directory; `restart()` keeps the
 * directory (a broker restart, as an operator does one). The `guest` account works from loopback.
 */
export class RabbitMqLab {
  readonly dir: string;
  readonly node: string;
  port = 0;
  private distPort = 0;
  private epmdPort = 0;
  private child: ChildProcess | undefined;
  private epmd: ChildProcess | undefined;
  private exit: string | undefined;
  private output = "";

  private constructor(private readonly options: RabbitMqLabOptions) {
    this.dir = mkdtempSync(join(tmpdir(), "cw-rabbit-"));
    this.node = `cwlab${process.pid}x${Math.random().toString(36).slice(2, 8)}@localhost`;
  }

  /** Starts a broker and resolves when it accepts AMQP connections. */
  static async start(options: RabbitMqLabOptions = {}): Promise<RabbitMqLab> {
    const lab = new RabbitMqLab(options);
    try {
      lab.port = await freePort();
      lab.distPort = await freePort();
      lab.epmdPort = await freePort();
      await lab.boot();
      return lab;
    } catch (error) {
      await lab.stop();
      throw error;
    }
  }

  /** `amqp://guest:guest@127.0.0.1:<port>/` */
  get url(): string {
    return `amqp://guest:guest@127.0.0.1:${this.port}/`;
  }

  /** oslo.messaging's `transport_url` for this broker. */
  get transportUrl(): string {
    return `rabbit://guest:guest@127.0.0.1:${this.port}/`;
  }

  private env(): NodeJS.ProcessEnv {
    return {
      PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin",
      HOME: this.dir,
      LC_ALL: "C.UTF-8",
      RABBITMQ_NODENAME: this.node,
      RABBITMQ_NODE_IP_ADDRESS: "127.0.0.1",
      RABBITMQ_NODE_PORT: String(this.port),
      RABBITMQ_DIST_PORT: String(this.distPort),
      RABBITMQ_MNESIA_BASE: join(this.dir, "mnesia"),
      RABBITMQ_LOG_BASE: join(this.dir, "log"),
      RABBITMQ_PID_FILE: join(this.dir, "pid"),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(this.dir, "enabled_plugins"),
      RABBITMQ_CONFIG_FILE: join(this.dir, "rabbitmq"),
      RABBITMQ_ADVANCED_CONFIG_FILE: join(this.dir, "advanced.config"),
      // The Erlang distribution listens on loopback too, not on every address.
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: "-kernel inet_dist_use_interface {127,0,0,1}",
      ERL_EPMD_ADDRESS: "127.0.0.1",
      ERL_EPMD_PORT: String(this.epmdPort),
    };
  }

  private async boot(): Promise<void> {
    this.exit = undefined;
    this.output = "";
    // Our own epmd, in the foreground, so that it is ours to end (the broker would start a daemon
    // that outlives everything); both die with the test runner even when it is killed.
    if (!this.epmd || this.epmd.exitCode !== null) {
      this.epmd = spawn(PYTHON, [EXEC_WITH_PARENT, "/usr/bin/epmd", "-port", String(this.epmdPort), "-address", "127.0.0.1"], {
        env: this.env(),
        cwd: this.dir,
        detached: true,
        stdio: "ignore",
      });
      await waitForPort(this.epmdPort, 10_000, () => (this.epmd?.exitCode !== null ? "epmd exited" : undefined));
    }
    // Its own process group, so that stop() ends the broker and whatever it started with it.
    const child = spawn(PYTHON, [EXEC_WITH_PARENT, "--group", SERVER], { env: this.env(), cwd: this.dir, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    child.stdout!.setEncoding("utf8").on("data", (d: string) => (this.output = (this.output + d).slice(-4000)));
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (this.output = (this.output + d).slice(-4000)));
    child.on("exit", (code, signal) => (this.exit = `rabbitmq-server exited (${signal ?? code}) before it listened:\n${this.output}`));
    child.on("error", (e) => (this.exit = `rabbitmq-server did not start: ${e.message}`));
    await waitForPort(this.port, this.options.startTimeoutMs ?? 60_000, () => this.exit);
  }

  /** Runs `rabbitmqctl` against this broker (e.g. `["close_all_connections", "test"]`); throws on failure. */
  ctl(args: readonly string[]): string {
    const result = spawnSync(CTL, ["-n", this.node, ...args], { env: this.env(), cwd: this.dir, encoding: "utf8", timeout: 60_000 });
    if (result.status !== 0) throw new Error(`rabbitmqctl ${args.join(" ")} failed (${result.status ?? result.signal}): ${result.stderr || result.stdout}`);
    return result.stdout;
  }

  /** Stops the broker and starts it again on the same ports and data (queues that were not durable are gone). */
  async restart(): Promise<void> {
    await this.halt();
    await this.boot();
  }

  /** Stops the broker, its epmd, and removes the directory. Safe to call twice. */
  async stop(): Promise<void> {
    await this.halt();
    if (this.epmd?.pid && this.epmd.exitCode === null && this.epmd.signalCode === null) {
      const gone = new Promise<void>((resolve) => this.epmd!.once("exit", () => resolve()));
      signalGroup(this.epmd.pid, "SIGKILL");
      await gone;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async halt(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    signalGroup(child.pid, "SIGTERM");
    const timer = setTimeout(() => signalGroup(child.pid!, "SIGKILL"), 15_000);
    await gone;
    clearTimeout(timer);
    // The Erlang port programs of the group may outlive the VM by a moment.
    signalGroup(child.pid, "SIGKILL");
  }

  /** The broker's log, for a failing test's message. */
  log(): string {
    try {
      return readFileSync(join(this.dir, "log", `${this.node}.log`), "utf8");
    } catch {
      return this.output;
    }
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}
