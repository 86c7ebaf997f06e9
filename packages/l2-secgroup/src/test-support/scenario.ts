/**
 * Scenarios in the reference format (`packages/testing/test-fixtures/reference/README.md`): an l2
 * input in Neutron's shapes plus steps (`add_ports`, `update_ports`, `update_security_groups`,
 * `remove_ports`), and the expected `iptables-save` / `ip6tables-save` / `ipset save` (and, in our own
 * fixtures, `conntrack -D`) after each step. `ScenarioState` turns the steps into the l2 state
 * document the agent reads.
 */
import { join } from "node:path";
import { loadReferenceScenario, type ReferenceStep } from "@chainwarden/testing";

export interface ScenarioStep {
  op: "add_ports" | "update_ports" | "update_security_groups" | "remove_ports";
  ports?: unknown[];
  trusted_devices?: string[];
  security_groups?: Record<string, unknown[]>;
  sg_member_ips?: Record<string, unknown>;
}

export interface Scenario {
  name: string;
  description?: string;
  options: { firewall_driver?: string; enable_ipset?: boolean; comments?: boolean };
  security_groups?: Record<string, unknown[]>;
  sg_member_ips?: Record<string, unknown>;
  steps: ScenarioStep[];
}

/** Our own scenarios, with outputs produced by Debian's python3-neutron 21.0.0. */
export const FIXTURE_DIR = join(import.meta.dirname, "../../test-fixtures/neutron");

/** A scenario as the replay reads it, with its expected blocks (`label`: the step's op; `sections`: title → text). */
export function loadScenario(dir: string, name: string): { scenario: Scenario; expected: ReferenceStep[] } {
  const { input, expected } = loadReferenceScenario(dir, name);
  const scenario = input as unknown as Scenario;
  scenario.name = name;
  scenario.options ??= {};
  return { scenario, expected };
}

/** Replays steps into the l2 state document (`devices`, `security_groups`, `sg_member_ips`, `trusted_devices`). */
export class ScenarioState {
  private readonly ports = new Map<string, Record<string, unknown>>();
  private securityGroups: Record<string, unknown[]>;
  private memberIps: Record<string, unknown>;
  private trusted: string[] = [];

  constructor(scenario: Scenario) {
    this.securityGroups = structuredClone(scenario.security_groups ?? {});
    this.memberIps = structuredClone(scenario.sg_member_ips ?? {});
  }

  apply(step: ScenarioStep): void {
    switch (step.op) {
      case "add_ports":
      case "update_ports":
        for (const p of (step.ports ?? []) as Record<string, unknown>[]) this.ports.set(String(p["id"]), structuredClone(p));
        for (const d of step.trusted_devices ?? []) if (!this.trusted.includes(d)) this.trusted.push(d);
        break;
      case "update_security_groups":
        Object.assign(this.securityGroups, structuredClone(step.security_groups ?? {}));
        Object.assign(this.memberIps, structuredClone(step.sg_member_ips ?? {}));
        break;
      case "remove_ports":
        for (const idOrDevice of (step.ports ?? []) as string[]) {
          if (this.ports.delete(idOrDevice)) continue;
          const byDevice = [...this.ports].find(([, p]) => p["device"] === idOrDevice);
          if (byDevice) this.ports.delete(byDevice[0]);
          else this.trusted = this.trusted.filter((d) => d !== idOrDevice);
        }
        break;
    }
  }

  /** The devices (taps) the ports and trusted devices use, for the device check. */
  get portDevices(): string[] {
    return [...this.ports.values()].map((p) => String(p["device"]));
  }

  document(): Record<string, unknown> {
    return {
      devices: Object.fromEntries([...this.ports].map(([id, p]) => [id, structuredClone(p)])),
      security_groups: structuredClone(this.securityGroups),
      sg_member_ips: structuredClone(this.memberIps),
      trusted_devices: [...this.trusted],
    };
  }
}
