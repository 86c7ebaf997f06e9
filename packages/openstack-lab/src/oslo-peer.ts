import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const PYTHON = "/usr/bin/python3";
// Beside the compiled file and the source alike: dist/ and src/ are siblings.
const PEER = fileURLToPath(new URL("../src/python/oslo_peer.py", import.meta.url));

/** One RPC message for Neutron: what an agent's `client.prepare(...).call/cast(context, method, **args)` sends. */
export interface OsloMessage {
  topic: string;
  method: string;
  args?: Record<string, unknown>;
  /** The target's version (`prepare(version=...)`); default "1.0". */
  version?: string;
  namespace?: string | null;
  /** `topic.server` instead of the shared topic. */
  server?: string;
  /** A cast to every listener of the topic. */
  fanout?: boolean;
  /** Seconds a call waits for its reply (default 30). */
  timeout?: number;
  /** The RPC context; default the admin context a Neutron agent sends (`neutron_lib.context`). */
  context?: Record<string, unknown>;
}

/** A message the server sent to a listener (a cast, or a call the listener answered). */
export interface OsloReceived {
  listener: string;
  method: string;
  /** A call waits for the listener's reply (e.g. `router_added_to_agent`); a cast does not. */
  kind: "call" | "cast";
  args: Record<string, unknown>;
  namespace: string | null;
  version: string;
  context: Record<string, unknown>;
}

/** An error of the peer's oslo.messaging call (`MessagingTimeout`, `RemoteError`, ...). */
export class OsloPeerError extends Error {
  constructor(
    readonly type: string,
    message: string,
  ) {
    super(`${type}: ${message}`);
    this.name = "OsloPeerError";
  }
}

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/**
 * The agent's side of Neutron's RPC, spoken by the real Python oslo.messaging (`python/oslo_peer.py`),
 * so a test can act as an agent (`call`, `cast`) and record what the server sends to agents (`listen`),
 * with nothing of ours in the path. Messages go to Neutron's exchange (`neutron`).
 */
export class OsloPeer {
  /** Every message the listeners received, in order. */
  readonly received: OsloReceived[] = [];
  private readonly pending = new Map<number, Pending>();
  private readonly waiters = new Set<() => void>();
  private nextId = 1;
  private stderr = "";
  private exited: string | undefined;
  private readonly closed: Promise<void>;

  private constructor(private readonly child: ChildProcess) {
    this.closed = new Promise((resolve) => child.once("close", () => resolve()));
  }

  /** Starts the peer for a broker (`RabbitMqLab.transportUrl`); resolves once it runs (oslo.messaging connects on first use). */
  static start(transportUrl: string): Promise<OsloPeer> {
    // Its own process group, so that close() also ends the threads' broker connections at once.
    const child = spawn(PYTHON, [PEER, transportUrl], { detached: true, stdio: ["pipe", "pipe", "pipe"], env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL: "C.UTF-8" } });
    const peer = new OsloPeer(child);
    return new Promise((resolve, reject) => {
      child.stderr!.setEncoding("utf8").on("data", (d: string) => (peer.stderr = (peer.stderr + d).slice(-4000)));
      child.on("error", (e) => reject(new Error(`oslo peer could not be run: ${e.message}`)));
      child.on("exit", (code, signal) => {
        peer.exited = `oslo peer exited (${signal ?? code}): ${peer.stderr}`;
        for (const p of peer.pending.values()) p.reject(new Error(peer.exited));
        peer.pending.clear();
        reject(new Error(peer.exited));
      });
      createInterface({ input: child.stdout! }).on("line", (line) => {
        const message = JSON.parse(line) as Record<string, unknown>;
        if (message.event === "ready") resolve(peer);
        else peer.take(message);
      });
    });
  }

  private take(message: Record<string, unknown>): void {
    if (message.event === "rpc") {
      const { event: _, ...received } = message;
      this.received.push(received as unknown as OsloReceived);
      for (const wake of [...this.waiters]) wake();
      return;
    }
    const pending = this.pending.get(message.id as number);
    if (!pending) return;
    this.pending.delete(message.id as number);
    const error = message.error as { type: string; message: string } | undefined;
    if (error) pending.reject(new OsloPeerError(error.type, error.message));
    else pending.resolve(message.result);
  }

  private send(command: Record<string, unknown>): Promise<unknown> {
    if (this.exited) return Promise.reject(new Error(this.exited));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.stdin!.write(`${JSON.stringify({ ...command, id })}\n`);
    });
  }

  /** An RPC call: resolves with the server's reply (as JSON), rejects with an {@link OsloPeerError}. */
  call<T = unknown>(message: OsloMessage): Promise<T> {
    return this.send({ op: "call", ...message }) as Promise<T>;
  }

  /** An RPC cast: resolves once it is sent. */
  async cast(message: OsloMessage): Promise<void> {
    await this.send({ op: "cast", ...message });
  }

  /**
   * Listens as an agent's RPC server does (`topic`, `topic.server` and the topic's fanout), recording
   * every message in {@link received}; calls are answered with `replies[method]` (default null).
   * Resolves with the listener's name (`topic.server`).
   */
  listen(topic: string, server?: string, replies: Record<string, unknown> = {}): Promise<string> {
    return this.send({ op: "listen", topic, server, replies }) as Promise<string>;
  }

  async unlisten(listener: string): Promise<void> {
    await this.send({ op: "unlisten", listener });
  }

  /** Resolves with the first received message (from the start) that `match` accepts, or rejects after `timeoutMs`. */
  waitFor(match: (message: OsloReceived) => boolean, timeoutMs = 30_000): Promise<OsloReceived> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.received.find(match);
        if (!found) return false;
        this.waiters.delete(check);
        clearTimeout(timer);
        resolve(found);
        return true;
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`no such message after ${timeoutMs} ms; received: ${this.received.map((m) => `${m.listener} ${m.method}`).join(", ") || "nothing"}`));
      }, timeoutMs);
      if (!check()) this.waiters.add(check);
    });
  }

  /** Stops the listeners and the peer. Safe to call twice. */
  async close(): Promise<void> {
    if (!this.exited && this.child.exitCode === null) {
      this.child.stdin!.end(`${JSON.stringify({ op: "quit" })}\n`);
      const timer = setTimeout(() => signalGroup(this.child.pid!, "SIGKILL"), 5000);
      await this.closed;
      clearTimeout(timer);
    }
    if (this.child.pid) signalGroup(this.child.pid, "SIGKILL");
  }
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // already gone
  }
}
