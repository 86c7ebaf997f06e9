import { parseFirewallRule, type FirewallRule, type ParseIssue } from "./firewall-rule.js";

/**
 * Ids end up in chain names (`iv4<id>`), device names (`qr-<port id>`) and rule text, so they are
 * held to what those accept. Neutron's are UUIDs.
 */
export const RESOURCE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/**
 * Parses an ordered rule list (a policy's rules). Every rule is checked, so one pass reports every
 * bad rule; each issue names the rule (`rule <id>` or `rule #<index>` when it has no id).
 */
export function parseRuleList(list: unknown, path: string): { rules?: FirewallRule[]; issues: ParseIssue[] } {
  if (list === undefined || list === null) return { rules: [], issues: [] };
  if (!Array.isArray(list)) return { issues: [{ path, message: "expected a list of rules" }] };
  const rules: FirewallRule[] = [];
  const issues: ParseIssue[] = [];
  const ids = new Set<string>();
  list.forEach((entry: unknown, index) => {
    const id = typeof entry === "object" && entry !== null ? (entry as { id?: unknown }).id : undefined;
    const name = typeof id === "string" && id !== "" ? `rule ${id}` : `rule #${index}`;
    const at = (p: string) => (p ? `${path}.${index}.${p}` : `${path}.${index}`);
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      issues.push({
        path: at(""),
        message: `${name}: expected a rule object (the agent needs whole rules, as Neutron's firewall_rule_list carries them)`,
      });
      return;
    }
    const { rule, issues: ruleIssues } = parseFirewallRule(entry);
    for (const i of ruleIssues) issues.push({ path: at(i.path), message: `${name}: ${i.path ? `${i.path}: ` : ""}${i.message}` });
    if (!rule) return;
    if (rule.id !== undefined) {
      if (ids.has(rule.id)) {
        issues.push({ path: at("id"), message: `${name}: duplicate rule id in one list` });
        return;
      }
      ids.add(rule.id);
    }
    rules.push(rule);
  });
  return issues.length ? { issues } : { rules, issues };
}
