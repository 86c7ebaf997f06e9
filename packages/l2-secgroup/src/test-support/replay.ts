/**
 * Replays a scenario through the firewall the way the agent runs it — parse the state document,
 * reconcile the namespace into a strict stateless manager inside one deferred apply, then the
 * post-apply work — and returns, per step, the normalized save output to compare with the reference.
 */
import { IptablesManager, normalizeSave } from "@chainwarden/core";
import type { FirewallRunner } from "../firewall-namespace.js";
import { firewallFlavor } from "../firewall-flavor.js";
import { FirewallNamespace } from "../firewall-namespace.js";
import { parseL2State } from "../l2-state.js";
import { ScenarioState, type Scenario } from "./scenario.js";

export interface StepOutput {
  sections: Record<string, string>;
  /** Problems the parse reported (a valid scenario has none). */
  problems: string[];
  /** Lines the apply sent. */
  lines: number;
  /** Lines a second reconcile of the same state sent (0 when it converged). */
  secondLines: number;
}

export interface ReplayOptions {
  runner: FirewallRunner;
  namespace: string;
  /** Reads `ipset save` (normalized) in the namespace; omit when the scenario has no ipsets. */
  ipsetSave?: () => Promise<string>;
  /**
   * Report each step's conntrack deletions (the `conntrack -D` commands the change calls for, as
   * Neutron runs them; which of them ran depends on the connections there were).
   */
  conntrack?: boolean;
}

export async function replayScenario(scenario: Scenario, options: ReplayOptions): Promise<StepOutput[]> {
  const flavor = firewallFlavor(scenario.options.firewall_driver ?? "iptables");
  const enableIpset = scenario.options.enable_ipset ?? false;
  const manager = new IptablesManager({
    runner: options.runner,
    namespace: options.namespace,
    wrapName: flavor.defaultWrapName,
    stateless: true,
    strict: true,
    comments: scenario.options.comments ?? true,
  });
  const ns = new FirewallNamespace({ runner: options.runner, namespace: options.namespace, flavor, enableIpset, waitForDevices: false });
  const state = new ScenarioState(scenario);
  const out: StepOutput[] = [];
  for (const step of scenario.steps) {
    state.apply(step);
    const parsed = parseL2State(state.document(), scenario.name, { flavor, enableIpset });
    const { result } = await manager.deferApply(() => ns.reconcile(manager, parsed.resources.values()));
    const after = await ns.afterApply();
    const again = await manager.deferApply(() => ns.reconcile(manager, parsed.resources.values()));
    const sections: Record<string, string> = {
      "iptables-save": normalizeSave(await options.runner.save({ namespace: options.namespace, family: 4 })),
      "ip6tables-save": normalizeSave(await options.runner.save({ namespace: options.namespace, family: 6 })),
    };
    if (enableIpset && options.ipsetSave) sections["ipset save"] = await options.ipsetSave();
    if (options.conntrack) {
      const lines = [...new Set(after.conntrack.map((a) => `conntrack ${a.join(" ")}`))].sort();
      sections["conntrack -D"] = lines.map((l) => `${l}\n`).join("");
    }
    out.push({ sections, problems: parsed.problems.map((p) => `${p.path}: ${p.message}`), lines: result.lines, secondLines: again.result.lines });
  }
  return out;
}

/** `ipset save` output normalized as the reference files are: no initval, members sorted per set. */
export function normalizeIpsetSave(text: string): string {
  const order: string[] = [];
  const sets = new Map<string, { create: string; adds: string[] }>();
  for (const line of text.split("\n")) {
    const w = line.trim().split(/\s+/);
    if (w[0] === "create") {
      sets.set(w[1]!, { create: line.trim().replace(/ initval 0x[0-9a-f]+/, ""), adds: [] });
      order.push(w[1]!);
    } else if (w[0] === "add") {
      sets.get(w[1]!)?.adds.push(line.trim());
    }
  }
  const out: string[] = [];
  for (const name of order) {
    const s = sets.get(name)!;
    out.push(s.create, ...s.adds.sort());
  }
  return out.length ? `${out.join("\n")}\n` : "";
}
