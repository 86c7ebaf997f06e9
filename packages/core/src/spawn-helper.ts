import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { execa, type ResultPromise } from "execa";
import { BackendUnavailableError } from "./errors.js";

/** What one command printed and how it ended. */
export interface HelperResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

interface Pending {
  resolve: (r: HelperResult) => void;
  reject: (e: Error) => void;
}

type Reply = { id: number; stdout: string; stderr: string; exitCode: number } | { id: number; error: string };

/**
 * Starts the agent's short-lived commands from a small companion process instead of the agent.
 *
 * Why: Node starts a child with fork(), whose cost grows with the parent's memory (the page tables
 * are copied). An agent holding hundreds of routers or thousands of ports pays 8–11 ms of CPU per
 * command at ~300–500 MB, against ~1 ms from a ~50 MB process, and an l3 agent adding 200 routers
 * runs ~2,400 commands. The helper is a Node process of its own (`bin/spawn-helper.mjs`) that runs
 * each command with execa exactly as the runner would (argument arrays, never a shell) and sends
 * back stdout, stderr and the exit code over the IPC channel.
 *
 * Lifecycle: started on first use, shared by every call of its runner, unreferenced while idle (it
 * never keeps the agent alive) and gone when the agent exits (it exits when its IPC channel closes).
 * If it dies, the calls in flight fail with the reason and the next call starts a new one.
 */
export class SpawnHelper {
  private child: ResultPromise<{ ipc: true; stdin: "ignore"; stdout: "ignore"; stderr: "inherit"; reject: false; cleanup: false }> | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;

  constructor(private readonly script: string = defaultSpawnHelperScript()) {}

  /** The helper's pid while it runs (for tests and CPU accounting). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  run(file: string, args: readonly string[], env: Record<string, string>, input?: string): Promise<HelperResult> {
    const child = this.start();
    const id = this.nextId++;
    return new Promise<HelperResult>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      if (this.pending.size === 1) this.ref(child);
      child.send({ id, file, args: [...args], env, ...(input !== undefined ? { input } : {}) }, (err) => {
        if (err) this.settle(id, undefined, new Error(`spawn helper: could not send the command: ${err.message}`));
      });
    });
  }

  /** Stops the helper (tests, agent shutdown); calls in flight fail. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    // Held while it exits: an unreferenced child would let a program whose last step is this
    // await end with an unsettled promise (exit code 13) instead of waiting a few milliseconds.
    child.ref();
    if (child.connected) child.disconnect();
    await child;
    this.failAll(new Error("spawn helper stopped"));
  }

  private start(): NonNullable<SpawnHelper["child"]> {
    if (this.child) return this.child;
    const child = execa(process.execPath, [this.script], {
      ipc: true,
      serialization: "advanced",
      stdin: "ignore",
      stdout: "ignore",
      stderr: "inherit",
      reject: false,
      // Its life is tied to the IPC channel, not to signal handlers of ours.
      cleanup: false,
    });
    this.child = child;
    child.on("message", (message: Reply) => {
      if ("error" in message) this.settle(message.id, undefined, new Error(message.error));
      else this.settle(message.id, { stdout: message.stdout, stderr: message.stderr, exitCode: message.exitCode });
    });
    void child.then((r) => {
      if (this.child === child) this.child = undefined;
      this.failAll(new Error(`spawn helper exited (${r.signal ?? `code ${r.exitCode}`})`));
    });
    this.unref(child);
    return child;
  }

  private settle(id: number, result: HelperResult | undefined, error?: Error): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (this.pending.size === 0 && this.child) this.unref(this.child);
    if (error) p.reject(error);
    else p.resolve(result!);
  }

  private failAll(error: Error): void {
    for (const [id] of this.pending) this.settle(id, undefined, error);
  }

  // An idle helper must not hold the agent's event loop open; a busy one must, or an agent awaiting
  // only helper replies would exit.
  private ref(child: NonNullable<SpawnHelper["child"]>): void {
    child.ref();
    child.channel?.ref();
  }

  private unref(child: NonNullable<SpawnHelper["child"]>): void {
    child.unref();
    child.channel?.unref();
  }
}

/** `bin/spawn-helper.mjs` of this package: the same path from `src/` (tests) and `dist/`. */
export function defaultSpawnHelperScript(): string {
  const script = fileURLToPath(new URL("../bin/spawn-helper.mjs", import.meta.url));
  if (!existsSync(script)) throw new BackendUnavailableError(`the spawn helper script is missing: ${script} (a broken install)`);
  return script;
}
