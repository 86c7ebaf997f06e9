import { misspelledKeys } from "@chainwarden/agent";
import { z } from "zod";
import type { FirewallRule, ParseIssue } from "./firewall-rule.js";
import { parseRuleList, RESOURCE_ID } from "./rule-list.js";

/**
 * A FWaaS v1 firewall (the seed's model): one policy of ordered rules, enforced on every internal
 * interface (`qr-+`) of the routers it covers. Rules have no direction: each goes into both the
 * ingress and the egress chain.
 */
export interface Firewall {
  readonly id: string;
  /** The project; the firewall covers this project's routers unless `routerIds` names them. */
  readonly tenantId: string | undefined;
  readonly adminStateUp: boolean;
  /** In policy order, disabled ones included (they are skipped when translated). */
  readonly rules: readonly FirewallRule[];
  /** Router insertion (Kilo and later): only these routers. Undefined: every router of the tenant. */
  readonly routerIds: readonly string[] | undefined;
}

const id = z.string().regex(RESOURCE_ID, "must be letters, digits, _ . - (not first)").max(255);

/** Neutron's firewall dict (API or agent RPC shape); keys the driver does not read are kept. */
export const firewallInputSchema = z.looseObject({
  id,
  tenant_id: z.string().min(1).nullable().optional(),
  project_id: z.string().min(1).nullable().optional(),
  admin_state_up: z.boolean().optional(),
  /** The API shape: the policy with its rules, in order. */
  firewall_policy: z.looseObject({ firewall_rules: z.unknown().optional() }).nullable().optional(),
  /** The agent RPC shape: the policy's rules, in order. */
  firewall_rule_list: z.unknown().optional(),
  router_ids: z.array(id).nullable().optional(),
});

/** Validates one v1 firewall; issues name the rule and carry paths relative to the firewall. */
export function parseFirewall(input: unknown): { firewall?: Firewall; issues: ParseIssue[] } {
  // A misspelled key we read (`firewall_polcy`) is named; other keys a server sends pass.
  const typos = misspelledKeys(input, Object.keys(firewallInputSchema.shape)).map((m) => ({ path: m.key, message: m.message }));
  const shape = firewallInputSchema.safeParse(input);
  if (!shape.success) return { issues: [...typos, ...shape.error.issues.map((i) => ({ path: i.path.join("."), message: i.message }))] };
  const raw = shape.data;
  const issues: ParseIssue[] = [...typos];
  if (raw.firewall_policy?.firewall_rules !== undefined && raw.firewall_rule_list !== undefined) {
    return { issues: [{ path: "firewall_rule_list", message: "give the rules once: firewall_policy.firewall_rules or firewall_rule_list" }] };
  }
  const [list, path] =
    raw.firewall_rule_list !== undefined
      ? [raw.firewall_rule_list, "firewall_rule_list"]
      : [raw.firewall_policy?.firewall_rules, "firewall_policy.firewall_rules"];
  const { rules, issues: ruleIssues } = parseRuleList(list, path);
  issues.push(...ruleIssues);
  if (!rules || issues.length) return { issues };
  return {
    firewall: {
      id: raw.id,
      tenantId: raw.tenant_id ?? raw.project_id ?? undefined,
      adminStateUp: raw.admin_state_up ?? true,
      rules,
      routerIds: raw.router_ids ?? undefined,
    },
    issues,
  };
}
