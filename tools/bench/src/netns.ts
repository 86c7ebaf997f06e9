import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import type { IpRunner } from "@chainwarden/core";

/** A throwaway namespace for one measurement; always deleted. */
export async function withNamespace<T>(runner: IpRunner, fn: (ns: string) => Promise<T>): Promise<T> {
  const ns = `cw-bench-${randomBytes(4).toString("hex")}`;
  await runner.exec("ip", ["netns", "add", ns]);
  try {
    return await fn(ns);
  } finally {
    await runner.exec("ip", ["netns", "delete", ns], { reject: false });
  }
}

export function ms(from: number): number {
  return performance.now() - from;
}

/** A runner that may start its commands from a spawn helper (core's `ExecaRunner`). */
export interface HelperOwner {
  readonly helperPid?: number | undefined;
}

/**
 * Our CPU so far, ms: this process (user + system) plus the runner's spawn helper, which starts our
 * commands and so is ours too (read from /proc/<pid>/schedstat, nanosecond precision). The commands
 * themselves (iptables-restore, ip) are not counted.
 */
export function ourCpuMs(runner?: HelperOwner): number {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000 + helperCpuMs(runner?.helperPid);
}

function helperCpuMs(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, "utf8").split(" ")[0]) / 1e6;
  } catch {
    return 0;
  }
}

/** Our own CPU (this process and the runner's spawn helper) spent in `fn`, in ms; commands are not counted. */
export async function cpu<T>(fn: () => Promise<T>, runner?: HelperOwner): Promise<{ value: T; cpuMs: number; wallMs: number }> {
  const c0 = ourCpuMs(runner);
  const t0 = performance.now();
  const value = await fn();
  const wallMs = ms(t0);
  return { value, cpuMs: ourCpuMs(runner) - c0, wallMs };
}
