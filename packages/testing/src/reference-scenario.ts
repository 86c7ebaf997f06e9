/**
 * Scenarios in the format of the Neutron reference (`test-fixtures/reference/README.md`): `NAME.json` (an
 * input in Neutron's own shapes, with `kind`, `description` and `steps`) and `NAME.expected.txt` (one
 * block per step, see `parseReferenceExpected`). The same format serves a plugin's own fixtures.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseReferenceExpected, type ReferenceStep } from "./reference-expected.js";

/**
 * `test-fixtures/reference` of this package: the repository's copy of the reference outputs of real
 * Neutron (see `test-fixtures/README.md`). From `src/` and `dist/` of this package alike.
 */
const REFERENCE_DIR = join(import.meta.dirname, "../test-fixtures/reference");

/** One loaded scenario: its input, its steps (parsed when a `parseStep` was given) and one expected block per step, the counts equal. */
export interface ReferenceScenario<Step = unknown> {
  /** The file name without `.json`. */
  name: string;
  description: string;
  /** The whole `.json` input (for the kind's top-level keys: `security_groups`, `options`, …). */
  input: Record<string, unknown>;
  /** `input.steps`, each through `parseStep` when one is given. */
  steps: Step[];
  /** One block per step of `NAME.expected.txt`. */
  expected: ReferenceStep[];
}

/** How `loadReferenceScenario(s)` checks and parses a scenario; a mismatch or a `parseStep` error throws naming the file. */
export interface LoadReferenceScenarioOptions<Step> {
  /** The `kind` the input must declare (`l2`, `l3`, `fwaas`); unchecked when absent. */
  kind?: string;
  /** Turns a raw step into the caller's type; `where` names it in errors (`NAME.json steps.3`). */
  parseStep?: (raw: unknown, where: string) => Step;
}

/** The reference directory; throws a message that says where it was looked for when it is missing. */
export function referenceDir(): string {
  if (!existsSync(REFERENCE_DIR)) {
    throw new Error(`the Neutron reference outputs are missing: expected ${REFERENCE_DIR} (packages/testing/test-fixtures/reference of a checkout of the repository)`);
  }
  return REFERENCE_DIR;
}

/** The scenario names (`NAME` of `NAME.json`) of a directory that start with `prefix`, in file-name order. */
export function listReferenceScenarios(dir: string, prefix = ""): string[] {
  if (!existsSync(dir)) {
    throw new Error(`scenario directory ${dir} does not exist`);
  }
  return readdirSync(dir)
    .filter((f) => f.startsWith(prefix) && f.endsWith(".json"))
    .sort()
    .map((f) => f.slice(0, -".json".length));
}

/** Reads `NAME.json` and `NAME.expected.txt`; their step counts must agree. */
export function loadReferenceScenario<Step = unknown>(dir: string, name: string, options: LoadReferenceScenarioOptions<Step> = {}): ReferenceScenario<Step> {
  const input = JSON.parse(readFileSync(join(dir, `${name}.json`), "utf8")) as Record<string, unknown> & { kind?: unknown; description?: string; steps?: unknown[] };
  if (options.kind !== undefined && input.kind !== options.kind) {
    throw new Error(`${name}.json: kind ${JSON.stringify(input.kind)} is not ${options.kind}`);
  }
  const parseStep = options.parseStep ?? ((raw: unknown) => raw as Step);
  const steps = (input.steps ?? []).map((raw, i) => parseStep(raw, `${name}.json steps.${i}`));
  const expected = parseReferenceExpected(readFileSync(join(dir, `${name}.expected.txt`), "utf8"), `${name}.expected.txt`);
  if (expected.length !== steps.length) throw new Error(`${name}: ${steps.length} steps but ${expected.length} expected blocks`);
  return { name, description: input.description ?? "", input, steps, expected };
}

/** Every scenario starting with `prefix` of each directory, directory by directory. */
export function loadReferenceScenarios<Step = unknown>(dirs: string | readonly string[], prefix: string, options: LoadReferenceScenarioOptions<Step> = {}): ReferenceScenario<Step>[] {
  return (typeof dirs === "string" ? [dirs] : dirs).flatMap((dir) => listReferenceScenarios(dir, prefix).map((name) => loadReferenceScenario(dir, name, options)));
}
