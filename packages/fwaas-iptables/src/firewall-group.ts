import { misspelledKeys } from "@chainwarden/agent";
import { z } from "zod";
import type { FirewallRule, ParseIssue } from "./firewall-rule.js";
import { parseRuleList, RESOURCE_ID } from "./rule-list.js";

/**
 * A FWaaS v2 firewall group: an ingress and an egress policy, enforced on the router interface
 * ports it lists (`qr-<port id[:11]>`). Ingress means towards the tenant's network, which leaves
 * the router through the port (`-o`); egress comes in through it (`-i`).
 */
export interface FirewallGroup {
  readonly id: string;
  readonly tenantId: string | undefined;
  readonly adminStateUp: boolean;
  /** Router interface port ids, in the order given. */
  readonly ports: readonly string[];
  readonly ingressRules: readonly FirewallRule[];
  readonly egressRules: readonly FirewallRule[];
}

const id = z.string().regex(RESOURCE_ID, "must be letters, digits, _ . - (not first)").max(255);

/**
 * Neutron's firewall group dict. The rule lists are `ingress_rules` / `egress_rules` (the
 * reference scenarios' names) or the agent RPC's `ingress_rule_list` / `egress_rule_list`.
 * Keys the driver does not read are kept.
 */
export const firewallGroupInputSchema = z.looseObject({
  id,
  tenant_id: z.string().min(1).nullable().optional(),
  project_id: z.string().min(1).nullable().optional(),
  admin_state_up: z.boolean().optional(),
  ports: z.array(id).nullable().optional(),
  ingress_rules: z.unknown().optional(),
  egress_rules: z.unknown().optional(),
  ingress_rule_list: z.unknown().optional(),
  egress_rule_list: z.unknown().optional(),
});

/** Validates one v2 firewall group; issues name the rule and carry paths relative to the group. */
export function parseFirewallGroup(input: unknown): { group?: FirewallGroup; issues: ParseIssue[] } {
  // A misspelled key we read (`firewall_polcy`) is named; other keys a server sends pass.
  const typos = misspelledKeys(input, Object.keys(firewallGroupInputSchema.shape)).map((m) => ({ path: m.key, message: m.message }));
  const shape = firewallGroupInputSchema.safeParse(input);
  if (!shape.success) return { issues: [...typos, ...shape.error.issues.map((i) => ({ path: i.path.join("."), message: i.message }))] };
  const raw = shape.data;
  const issues: ParseIssue[] = [...typos];
  const lists: Record<"ingress" | "egress", FirewallRule[] | undefined> = { ingress: undefined, egress: undefined };
  for (const direction of ["ingress", "egress"] as const) {
    const plain = raw[`${direction}_rules`];
    const rpc = raw[`${direction}_rule_list`];
    if (plain !== undefined && rpc !== undefined) {
      issues.push({ path: `${direction}_rule_list`, message: `give the ${direction} rules once: ${direction}_rules or ${direction}_rule_list` });
      continue;
    }
    const path = rpc !== undefined ? `${direction}_rule_list` : `${direction}_rules`;
    const { rules, issues: ruleIssues } = parseRuleList(rpc ?? plain, path);
    issues.push(...ruleIssues.map((i) => ({ ...i, message: `${direction} ${i.message}` })));
    lists[direction] = rules;
  }
  const ports = raw.ports ?? [];
  const seen = new Set<string>();
  ports.forEach((p, i) => {
    if (seen.has(p)) issues.push({ path: `ports.${i}`, message: `port ${p} is listed twice` });
    seen.add(p);
  });
  if (issues.length || !lists.ingress || !lists.egress) return { issues };
  return {
    group: {
      id: raw.id,
      tenantId: raw.tenant_id ?? raw.project_id ?? undefined,
      adminStateUp: raw.admin_state_up ?? true,
      ports,
      ingressRules: lists.ingress,
      egressRules: lists.egress,
    },
    issues,
  };
}
