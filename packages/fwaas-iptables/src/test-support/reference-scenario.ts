import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** `../shared/reference` of the workspace: real neutron-fwaas (Zed) output for inputs in Neutron's shapes. */
export const REFERENCE_DIR = join(import.meta.dirname, "../../../../../shared/reference");

export type FwaasStep =
  | { op: "add_router" | "update_router"; routers: RouterDict[] }
  | { op: "remove_router"; routerIds: string[] }
  | { op: "fwg_create" | "fwg_update"; group: unknown }
  | { op: "fwg_delete"; groupId: string };

/** The keys of a router dict the harness reads. */
export interface RouterDict {
  id: string;
  tenant_id?: string;
  _interfaces?: { id: string }[];
  [key: string]: unknown;
}

export interface RouterSave {
  iptables: string;
  ip6tables: string;
}

export interface ExpectedStep {
  title: string;
  routers: Map<string, RouterSave>;
}

export interface FwaasScenario {
  name: string;
  description: string;
  steps: FwaasStep[];
  expected: ExpectedStep[];
}

export function referenceDir(): string {
  if (!existsSync(REFERENCE_DIR)) throw new Error(`the reference outputs are missing: expected ${REFERENCE_DIR} (the workspace's ../shared/reference)`);
  return REFERENCE_DIR;
}

/** Every `fwaas_*` scenario of a directory. */
export function loadFwaasScenarios(dir: string = referenceDir()): FwaasScenario[] {
  return readdirSync(dir)
    .filter((f) => /^fwaas_.*\.json$/.test(f))
    .sort()
    .map((f) => loadFwaasScenario(dir, f.slice(0, -".json".length)));
}

export function loadFwaasScenario(dir: string, name: string): FwaasScenario {
  const input = JSON.parse(readFileSync(join(dir, `${name}.json`), "utf8")) as { kind?: string; description?: string; steps?: unknown[] };
  if (input.kind !== "fwaas") throw new Error(`${name}.json: kind ${JSON.stringify(input.kind)} is not fwaas`);
  const steps = (input.steps ?? []).map((s, i) => parseStep(s, `${name}.json steps.${i}`));
  const expected = parseExpected(readFileSync(join(dir, `${name}.expected.txt`), "utf8"));
  if (expected.length !== steps.length) throw new Error(`${name}: ${steps.length} steps but ${expected.length} expected blocks`);
  return { name, description: input.description ?? "", steps, expected };
}

function parseStep(raw: unknown, where: string): FwaasStep {
  const s = raw as Record<string, unknown>;
  switch (s["op"]) {
    case "add_router":
    case "update_router": {
      const routers = (s["routers"] ?? (s["router"] !== undefined ? [s["router"]] : undefined)) as RouterDict[] | undefined;
      if (!routers) throw new Error(`${where}: ${String(s["op"])} without router(s)`);
      return { op: s["op"], routers };
    }
    case "remove_router": {
      const ids = (s["router_ids"] ?? (s["router_id"] !== undefined ? [s["router_id"]] : undefined)) as string[] | undefined;
      if (!ids) throw new Error(`${where}: remove_router without router_id(s)`);
      return { op: "remove_router", routerIds: ids };
    }
    case "fwg_create":
    case "fwg_update":
      return { op: s["op"], group: s["firewall_group"] };
    case "fwg_delete": {
      const id = (s["firewall_group_id"] ?? (s["firewall_group"] as { id?: string } | undefined)?.id) as string | undefined;
      if (!id) throw new Error(`${where}: fwg_delete without a firewall group id`);
      return { op: "fwg_delete", groupId: id };
    }
    default:
      throw new Error(`${where}: unknown op ${JSON.stringify(s["op"])}`);
  }
}

/** `=== after step N ===` blocks with `--- router ID: iptables-save ---` sections. */
function parseExpected(text: string): ExpectedStep[] {
  const steps: ExpectedStep[] = [];
  let section: { router: string; tool: keyof RouterSave; lines: string[] } | undefined;
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
    const head = /^--- router (\S+): (iptables|ip6tables)-save ---$/.exec(line);
    if (head) {
      flush();
      section = { router: head[1]!, tool: head[2] as keyof RouterSave, lines: [] };
      continue;
    }
    if (section && line !== "") section.lines.push(line);
  }
  flush();
  return steps;
}
