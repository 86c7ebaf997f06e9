import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

/**
 * Debian's Python, which has python3-oslo.messaging (a `python3` earlier on PATH, e.g. pyenv's, may
 * not). `OSLO_PYTHON` overrides it.
 */
export const PYTHON = process.env.OSLO_PYTHON ?? "/usr/bin/python3";

export const PEERS_DIR = fileURLToPath(new URL("./test-peers/", import.meta.url));

function peerEnv(): NodeJS.ProcessEnv {
  // No bytecode next to the sources; no proxy or config file of the host's reaches the peer.
  return { PATH: process.env.PATH ?? "/usr/bin:/bin", LC_ALL: "C.UTF-8", PYTHONPATH: PEERS_DIR, PYTHONDONTWRITEBYTECODE: "1", PYTHONUNBUFFERED: "1" };
}

/** Runs a peer script that reads JSON on stdin and prints JSON; for the table tests. */
export function runPeerScript<T>(script: string, input: unknown): T {
  const result = spawnSync(PYTHON, [PEERS_DIR + script], { input: JSON.stringify(input), encoding: "utf8", env: peerEnv(), timeout: 60_000 });
  if (result.status !== 0) throw new Error(`${script} failed (${result.status ?? result.signal}): ${result.stderr}`);
  return JSON.parse(result.stdout) as T;
}

export type PeerEvent = Record<string, unknown> & { event: string };

/**
 * A Python oslo.messaging peer running as a child process (argument array, no shell) that prints
 * one JSON object per line. `stop()` closes its stdin (the peers stop cleanly on EOF) and kills it
 * if it does not exit; every peer started is stopped by `stopAllPeers()` in teardown.
 */
export class PythonPeer {
  readonly events: PeerEvent[] = [];
  private stderr = "";
  private readonly child: ChildProcess;
  private readonly exited: Promise<number | null>;
  private listeners = new Set<() => void>();

  constructor(script: string, args: readonly string[]) {
    this.child = spawn(PYTHON, [PEERS_DIR + script, ...args], { env: peerEnv(), stdio: ["pipe", "pipe", "pipe"] });
    live.add(this);
    let buffer = "";
    this.child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      buffer += chunk;
      let newline: number;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        try {
          this.events.push(JSON.parse(line) as PeerEvent);
        } catch {
          this.stderr += `(stdout) ${line}\n`;
        }
        for (const listener of [...this.listeners]) listener();
      }
    });
    this.child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (this.stderr = (this.stderr + chunk).slice(-20_000)));
    this.exited = new Promise((resolve) => this.child.once("exit", (code) => resolve(code)));
    void this.exited.then(() => {
      live.delete(this);
      for (const listener of [...this.listeners]) listener();
    });
    this.child.stdin!.on("error", () => undefined);
  }

  /** Resolves with the first event matching, waiting up to `timeoutMs`; the error shows the peer's stderr. */
  waitFor(match: (event: PeerEvent) => boolean, timeoutMs = 30_000): Promise<PeerEvent> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.events.find(match);
        if (found) return finish(() => resolve(found));
        if (this.child.exitCode !== null || this.child.signalCode !== null) {
          return finish(() => reject(new Error(`peer exited (${this.child.exitCode ?? this.child.signalCode}) before the event:\n${this.stderr}`)));
        }
      };
      const timer = setTimeout(() => finish(() => reject(new Error(`no such peer event within ${timeoutMs} ms; events: ${JSON.stringify(this.events)}\nstderr:\n${this.stderr}`))), timeoutMs);
      const finish = (settle: () => void) => {
        clearTimeout(timer);
        this.listeners.delete(check);
        settle();
      };
      this.listeners.add(check);
      check();
    });
  }

  get log(): string {
    return this.stderr;
  }

  /** Ends the peer: EOF on stdin, then SIGKILL after `graceMs`. Resolves with its exit code. */
  async stop(graceMs = 15_000): Promise<number | null> {
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

const live = new Set<PythonPeer>();

/** Stops every peer still running (teardown, even when a test failed half way). */
export async function stopAllPeers(): Promise<void> {
  await Promise.all([...live].map((peer) => peer.stop(5_000)));
}
