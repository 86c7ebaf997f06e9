import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** `../shared/reference` of the workspace: real Neutron Zed's output for inputs in its own shapes. */
export const REFERENCE_DIR = join(import.meta.dirname, "../../../../../shared/reference");

export type L3Step =
  | { op: "add_router" | "update_router"; routers: unknown[] }
  | { op: "remove_router"; routerIds: string[] };

export interface ExpectedStep {
  /** `=== after step N: ... ===` */
  title: string;
  /** router id → { iptables: normalized save text, ip6tables: ... } */
  routers: Map<string, { iptables: string; ip6tables: string }>;
}

export interface L3Scenario {
  name: string;
  description: string;
  steps: L3Step[];
  expected: ExpectedStep[];
}

/** Throws a message that says where the reference files were looked for. */
export function referenceDir(): string {
  if (!existsSync(REFERENCE_DIR)) {
    throw new Error(`the Neutron reference outputs are missing: expected ${REFERENCE_DIR} (the workspace's ../shared/reference)`);
  }
  return REFERENCE_DIR;
}

/** Every `l3_*` scenario of the reference directory (plus `extraDirs`, e.g. our own fixtures). */
export function loadL3Scenarios(dirs: readonly string[] = [referenceDir()]): L3Scenario[] {
  const out: L3Scenario[] = [];
  for (const dir of dirs) {
    for (const file of readdirSync(dir).filter((f) => /^l3_.*\.json$/.test(f)).sort()) {
      out.push(loadL3Scenario(dir, file.slice(0, -".json".length)));
    }
  }
  return out;
}

export function loadL3Scenario(dir: string, name: string): L3Scenario {
  const input = JSON.parse(readFileSync(join(dir, `${name}.json`), "utf8")) as { kind?: string; description?: string; steps?: unknown[] };
  if (input.kind !== "l3") throw new Error(`${name}.json: kind ${JSON.stringify(input.kind)} is not l3`);
  const steps = (input.steps ?? []).map((raw, i) => parseStep(raw, `${name}.json steps.${i}`));
  const expected = parseExpected(readFileSync(join(dir, `${name}.expected.txt`), "utf8"), `${name}.expected.txt`);
  if (expected.length !== steps.length) throw new Error(`${name}: ${steps.length} steps but ${expected.length} expected blocks`);
  return { name, description: input.description ?? "", steps, expected };
}

function parseStep(raw: unknown, where: string): L3Step {
  const s = raw as { op?: string; router?: unknown; routers?: unknown[]; router_id?: string; router_ids?: string[] };
  if (s.op === "add_router" || s.op === "update_router") {
    const routers = s.routers ?? (s.router !== undefined ? [s.router] : undefined);
    if (!routers) throw new Error(`${where}: ${s.op} without router(s)`);
    return { op: s.op, routers };
  }
  if (s.op === "remove_router") {
    const ids = s.router_ids ?? (s.router_id !== undefined ? [s.router_id] : undefined);
    if (!ids) throw new Error(`${where}: remove_router without router_id(s)`);
    return { op: "remove_router", routerIds: ids };
  }
  throw new Error(`${where}: unknown op ${JSON.stringify(s.op)}`);
}

function parseExpected(text: string, where: string): ExpectedStep[] {
  const steps: ExpectedStep[] = [];
  let section: { router: string; tool: "iptables" | "ip6tables"; lines: string[] } | undefined;
  const flush = () => {
    if (!section) return;
    const step = steps.at(-1)!;
    const entry = step.routers.get(section.router) ?? { iptables: "", ip6tables: "" };
    entry[section.tool] = section.lines.length ? `${section.lines.join("\n")}\n` : "";
    step.routers.set(section.router, entry);
    section = undefined;
  };
  for (const line of text.split("\n")) {
    const step = /^=== (after step \d+: .*) ===$/.exec(line);
    if (step) {
      flush();
      steps.push({ title: step[1]!, routers: new Map() });
      continue;
    }
    const sec = /^--- router (\S+): (iptables|ip6tables)-save ---$/.exec(line);
    if (sec) {
      flush();
      if (steps.length === 0) throw new Error(`${where}: a router section before the first step`);
      section = { router: sec[1]!, tool: sec[2] as "iptables" | "ip6tables", lines: [] };
      continue;
    }
    if (line.trim() === "") continue;
    if (!section) throw new Error(`${where}: text outside a router section: ${line}`);
    section.lines.push(line);
  }
  flush();
  return steps;
}
