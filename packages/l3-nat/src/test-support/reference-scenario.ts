import { loadReferenceScenarios, loadReferenceScenario, parseRouterStep, referenceDir, type ReferenceScenario, type RouterStep } from "@chainwarden/testing";

export type L3Step = RouterStep;

/** An `l3` scenario: real Neutron Zed's output (or ours, in its format) for inputs in its own shapes. */
export type L3Scenario = ReferenceScenario<L3Step>;

/** Every `l3_*` scenario of the reference directory (plus `extraDirs`, e.g. our own fixtures). */
export function loadL3Scenarios(dirs: readonly string[] = [referenceDir()]): L3Scenario[] {
  return loadReferenceScenarios(dirs, "l3_", { kind: "l3", parseStep });
}

export function loadL3Scenario(dir: string, name: string): L3Scenario {
  return loadReferenceScenario(dir, name, { kind: "l3", parseStep });
}

function parseStep(raw: unknown, where: string): L3Step {
  const step = parseRouterStep(raw, where);
  if (!step) throw new Error(`${where}: unknown op ${JSON.stringify((raw as { op?: unknown }).op)}`);
  return step;
}
