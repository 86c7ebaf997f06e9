import { randomBytes } from "node:crypto";
import { runCommand, type RunOptions, type RunResult } from "./run-command.js";

/** Options of `TestNetns.exec`: stdin input, whether a non-zero exit throws (default true), extra environment. */
export type NetnsExecOptions = Pick<RunOptions, "input" | "reject" | "env">;

/** A network namespace a test created; `delete()` (or `await using`) removes it. */
export interface TestNetns extends AsyncDisposable {
  readonly name: string;
  /** Runs `ip netns exec NAME ...argv` (argument array, no shell). */
  exec(argv: readonly string[], options?: NetnsExecOptions): Promise<RunResult>;
  /** Kills what still runs inside, then `ip netns del`. Safe to call twice. */
  delete(): Promise<void>;
}

/** True when the process runs as root (real namespaces and iptables need it). */
export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/**
 * Creates a fresh network namespace named `<prefix>-<pid>-<random>` (unique per process and
 * call). Requires root.
 */
export async function createNetns(prefix = "cw-test"): Promise<TestNetns> {
  const name = `${prefix}-${process.pid}-${randomBytes(3).toString("hex")}`;
  await runCommand(["ip", "netns", "add", name]);
  let deleted: Promise<void> | undefined;
  const netns: TestNetns = {
    name,
    exec: (argv, options = {}) => runCommand(["ip", "netns", "exec", name, ...argv], options),
    delete: () => (deleted ??= deleteNetns(name)),
    [Symbol.asyncDispose]: () => netns.delete(),
  };
  return netns;
}

/** Runs `fn` with a fresh namespace and always deletes it afterwards, also when `fn` throws. */
export async function withNetns<T>(fn: (netns: TestNetns) => Promise<T>, prefix?: string): Promise<T> {
  const netns = await createNetns(prefix);
  try {
    return await fn(netns);
  } finally {
    await netns.delete();
  }
}

/** The names of the namespaces `ip netns list` shows. */
export async function listNetns(): Promise<string[]> {
  const r = await runCommand(["ip", "netns", "list"]);
  return r.stdout
    .split("\n")
    .map((l) => l.split(" ")[0]!)
    .filter(Boolean);
}

/** Kills what still runs inside `name`, then `ip netns del` (retried; a missing namespace is fine). */
export async function deleteNetns(name: string): Promise<void> {
  let last = "";
  for (let attempt = 0; attempt < 10; attempt++) {
    // Processes a test left in the namespace (ping, nc, a sleeping helper) would keep it alive.
    const pids = await runCommand(["ip", "netns", "pids", name], { reject: false });
    for (const pid of pids.stdout.split(/\s+/).filter((p) => /^\d+$/.test(p))) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {
        // Already gone.
      }
    }
    const r = await runCommand(["ip", "netns", "del", name], { reject: false });
    if (r.exitCode === 0 || /No such file or directory/.test(r.stderr)) return;
    last = r.stderr.trim();
    await new Promise((resolve) => setTimeout(resolve, 50 * (attempt + 1)));
  }
  throw new Error(`could not delete network namespace ${name}: ${last}`);
}
