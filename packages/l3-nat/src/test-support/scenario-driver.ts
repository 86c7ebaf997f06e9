import { IptablesManager, normalizeSave, type IptablesRunner } from "@chainwarden/core";
import { parseRouter } from "../router.js";
import { RouterRules } from "../router-rules.js";
import type { L3Scenario } from "./reference-scenario.js";

export interface ScenarioHost {
  runner: IptablesRunner;
  namespaceOf(routerId: string): string;
  createNamespace(ns: string): Promise<void>;
  deleteNamespace(ns: string): Promise<void>;
}

export interface ActualStep {
  routers: Map<string, { iptables: string; ip6tables: string }>;
  /** Restore lines sent by the step. */
  lines: number;
}

/**
 * Replays an l3 scenario as the agent would, one IptablesManager (`neutron-l3-agent`, comments on,
 * IPv6 on) and one `RouterRules` per router, and reads every router's namespace back after each step.
 */
export async function replayL3Scenario(scenario: L3Scenario, host: ScenarioHost, options: { metadataPort?: number } = {}): Promise<ActualStep[]> {
  const version = await host.runner.version();
  const routers = new Map<string, RouterRules>();
  const out: ActualStep[] = [];
  for (const step of scenario.steps) {
    let lines = 0;
    if (step.op === "remove_router") {
      for (const id of step.routerIds) {
        if (!routers.delete(id)) throw new Error(`${scenario.name}: remove_router of unknown router ${id}`);
        await host.deleteNamespace(host.namespaceOf(id));
      }
    } else {
      for (const raw of step.routers) {
        const { router, issues } = parseRouter(raw);
        if (!router) throw new Error(`${scenario.name}: invalid router: ${issues.map((i) => `${i.path}: ${i.message}`).join("; ")}`);
        let rules = routers.get(router.id);
        if (!rules) {
          const ns = host.namespaceOf(router.id);
          await host.createNamespace(ns);
          const manager = new IptablesManager({ runner: host.runner, namespace: ns, wrapName: "neutron-l3-agent", strict: true });
          rules = new RouterRules(manager, `router/${router.id}`, {
            enableMetadataProxy: true,
            metadataPort: options.metadataPort ?? 9697,
            randomFully: version.supportsRandomFully,
          });
          routers.set(router.id, rules);
        }
        rules.update(router);
        lines += (await rules.manager.apply()).lines;
      }
    }
    const actual: ActualStep = { routers: new Map(), lines };
    for (const id of routers.keys()) {
      const target = { namespace: host.namespaceOf(id) };
      actual.routers.set(id, {
        iptables: normalizeSave(await host.runner.save({ ...target, family: 4 })),
        ip6tables: normalizeSave(await host.runner.save({ ...target, family: 6 })),
      });
    }
    out.push(actual);
  }
  return out;
}
