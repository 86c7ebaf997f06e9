/**
 * Reading a port's rules back out of the kernel, for a port that must be kept as the kernel has it
 * (its input is invalid, or its apply failed; see `ReconcileRequest.held`): its own chains, and the
 * rules of the shared chains that are its (they name its tap, jump to its chains, or name it in the
 * raw table's zone comment).
 */
import { ruleJumpTarget, tokenizeRule } from "@chainwarden/core";
import type { IpVersion } from "./neutron-constants.js";

/** Per family, per table (`filter`, `raw`): kernel chain name → rules as iptables-save prints them. */
export type KernelCopy = ReadonlyMap<IpVersion, ReadonlyMap<"filter" | "raw", ReadonlyMap<string, readonly string[]>>>;

/** The kernel names of what a port owns. */
export interface PortKernelNames {
  readonly tap: string;
  /** Kernel names of the port's chains (ingress, egress, spoof). */
  readonly chains: readonly string[];
  /** The port's name in the raw table's zone comments (`Set zone for <name>`). */
  readonly commentName: string;
}

/** A port's share of one family, as the kernel has it. */
export interface KernelPortRules {
  /** Its chains (kernel names) with their rules, jump targets first. */
  readonly chains: ReadonlyMap<string, readonly string[]>;
  /** Its rules in the shared chains, by table and kernel chain name. */
  readonly shared: readonly { table: "filter" | "raw"; chain: string; rule: string }[];
}

const DEVICE_OPTIONS = new Set(["--physdev-in", "--physdev-out", "-i", "-o", "--in-interface", "--out-interface"]);

/** Whether a rule names the device as its physdev or interface match. */
export function namesDevice(rule: string, device: string): boolean {
  if (!rule.includes(device)) return false;
  let tokens: string[];
  try {
    tokens = tokenizeRule(rule);
  } catch {
    return false;
  }
  for (let i = 0; i + 1 < tokens.length; i++) if (DEVICE_OPTIONS.has(tokens[i]!) && tokens[i + 1] === device) return true;
  return false;
}

/**
 * The port's rules in one family of the kernel copy, or undefined when the kernel has nothing of
 * it there. `shared` names the kernel's shared chains to look in, per table.
 */
export function kernelPortRules(
  kernel: KernelCopy,
  family: IpVersion,
  names: PortKernelNames,
  shared: { readonly filter: readonly string[]; readonly raw: readonly string[] },
): KernelPortRules | undefined {
  const tables = kernel.get(family);
  if (!tables) return undefined;
  const filter = tables.get("filter") ?? new Map<string, readonly string[]>();
  const chains = new Map<string, readonly string[]>();
  // The spoof chain is jumped to by the egress chain: it comes first, as the driver declares them.
  for (const chain of [...names.chains].reverse()) {
    const rules = filter.get(chain);
    if (rules !== undefined) chains.set(chain, rules);
  }
  const own = new Set(names.chains);
  const zoneComment = new RegExp(`--comment "(?:Set zone for|Make) ${escapeRegExp(names.commentName)}(?: stateless)?"`);
  const out: { table: "filter" | "raw"; chain: string; rule: string }[] = [];
  for (const table of ["filter", "raw"] as const) {
    const t = tables.get(table);
    if (!t) continue;
    for (const chain of shared[table]) {
      for (const rule of t.get(chain) ?? []) {
        const target = ruleJumpTarget(rule);
        const mine = namesDevice(rule, names.tap) || (target !== undefined && own.has(target)) || (table === "raw" && zoneComment.test(rule));
        if (mine) out.push({ table, chain, rule });
      }
    }
  }
  if (chains.size === 0 && out.length === 0) return undefined;
  return { chains, shared: out };
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** The ipsets a rule matches (`-m set --match-set NAME ...`). */
export function ipsetsNamed(rule: string): string[] {
  const out: string[] = [];
  const re = /--match-set (\S+)/g;
  for (let m = re.exec(rule); m; m = re.exec(rule)) out.push(m[1]!);
  return out;
}
