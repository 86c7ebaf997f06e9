import { randomBytes } from "node:crypto";
import type { IptablesRunner } from "@chainwarden/core";

/** A throwaway namespace for one measurement; always deleted. */
export async function withNamespace<T>(runner: IptablesRunner, fn: (ns: string) => Promise<T>): Promise<T> {
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

/** Our own CPU (user + system) spent in `fn`, in ms; child processes are not counted. */
export async function cpu<T>(fn: () => Promise<T>): Promise<{ value: T; cpuMs: number; wallMs: number }> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const value = await fn();
  const wallMs = ms(t0);
  const c = process.cpuUsage(c0);
  return { value, cpuMs: (c.user + c.system) / 1000, wallMs };
}
