import { CommandError, InvalidNamespaceNameError } from "./errors.js";
import type { IpRunner } from "./command-runner.js";

/**
 * Network namespace names as every part of Chainwarden accepts them: they become file names under
 * /run/netns and arguments to ip(8), so letters, digits, `_ . -`, not first `.` or `-`, at most 64.
 */
export const NAMESPACE_NAME = /^(?![.-])[A-Za-z0-9_.-]{1,64}$/;

/** True when `name` matches `NAMESPACE_NAME`: check before a name reaches a command or a path. */
export function isNamespaceName(name: string): boolean {
  return NAMESPACE_NAME.test(name);
}

/** Throws unless `name` is safe as a file name under /run/netns and as an ip(8) argument. */
export function validateNamespaceName(name: string): void {
  if (!isNamespaceName(name)) throw new InvalidNamespaceNameError(name);
}

/** The named network namespaces (`ip netns list`), names only. */
export async function listNamespaces(runner: IpRunner): Promise<string[]> {
  const r = await runner.exec("ip", ["netns", "list"]);
  return r.stdout
    .split("\n")
    .map((l) => l.split(" ")[0]!)
    .filter(Boolean);
}

/** Whether a named network namespace exists. */
export async function namespaceExists(runner: IpRunner, name: string): Promise<boolean> {
  return (await listNamespaces(runner)).includes(name);
}

/** Creates a network namespace with `lo` up; an existing one is kept (adds are idempotent). */
export async function addNamespace(runner: IpRunner, name: string): Promise<void> {
  validateNamespaceName(name);
  if (!(await namespaceExists(runner, name))) await runner.exec("ip", ["netns", "add", name]);
  await runner.exec("ip", ["link", "set", "lo", "up"], { namespace: name });
}

/** Kills what still runs inside, then deletes the namespace. Missing namespaces are fine. */
export async function deleteNamespace(runner: IpRunner, name: string): Promise<void> {
  validateNamespaceName(name);
  const pids = await runner.exec("ip", ["netns", "pids", name], { reject: false });
  for (const pid of pids.stdout.split("\n").map((p) => p.trim()).filter((p) => /^\d+$/.test(p))) {
    try {
      process.kill(Number(pid), "SIGKILL");
    } catch {
      // already gone
    }
  }
  const r = await runner.exec("ip", ["netns", "delete", name], { reject: false });
  if (r.exitCode !== 0 && !/No such file|not found/i.test(r.stderr)) {
    throw new CommandError(["ip", "netns", "delete", name], r.exitCode, r.stderr);
  }
}
