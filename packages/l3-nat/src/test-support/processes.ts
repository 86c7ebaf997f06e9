import { readFileSync } from "node:fs";

export { pidsMentioning } from "@chainwarden/testing";

/** The process exists and is not a zombie. */
export function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) [ZX]/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}
