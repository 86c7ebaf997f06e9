import { loadReferenceScenarios, parseRouterStep, referenceDir, type ReferenceScenario, type RouterStep } from "@chainwarden/testing";

export type FwaasStep =
  | RouterStep<RouterDict>
  | { op: "fwg_create" | "fwg_update"; group: unknown }
  | { op: "fwg_delete"; groupId: string };

/** The keys of a router dict the harness reads. */
export interface RouterDict {
  id: string;
  tenant_id?: string;
  _interfaces?: { id: string }[];
  [key: string]: unknown;
}

/** An `fwaas` scenario: real neutron-fwaas (Zed) output for inputs in Neutron's shapes. */
export type FwaasScenario = ReferenceScenario<FwaasStep>;

/** Every `fwaas_*` scenario of a directory. */
export function loadFwaasScenarios(dir: string = referenceDir()): FwaasScenario[] {
  return loadReferenceScenarios(dir, "fwaas_", { kind: "fwaas", parseStep });
}

function parseStep(raw: unknown, where: string): FwaasStep {
  const router = parseRouterStep<RouterDict>(raw, where);
  if (router) return router;
  const s = raw as Record<string, unknown>;
  switch (s["op"]) {
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
