import type { FirewallAction, FirewallRule, PortRange } from "./firewall-rule.js";

/** Where a rule's action sends the packet: a target or a (`$`-wrapped) chain. */
export type ActionTargets = Readonly<Record<FirewallAction, string>>;

/** The v1 driver's targets (the seed): the verdict itself. */
export const V1_ACTION_TARGETS: ActionTargets = { allow: "ACCEPT", deny: "DROP", reject: "REJECT" };

/**
 * The v2 driver's targets: neutron-fwaas Zed sends every verdict through a chain of its own
 * (`accepted`, `dropped`, `rejected`) so that firewall logging can hook in there.
 */
export const V2_ACTION_TARGETS: ActionTargets = { allow: "$accepted", deny: "$dropped", reject: "$rejected" };

/**
 * The iptables rule for one firewall rule, written in the order `iptables-save` prints
 * (`-s`, `-d`, `-p`, `-m <proto>`, `--sport`, `--dport`, `-j`), so it needs no reordering. The
 * match module is only loaded when a port is matched, as neutron-fwaas does (and as iptables-save
 * shows it). Every value was validated by `parseFirewallRule`.
 */
export function translateRule(rule: FirewallRule, targets: ActionTargets): string {
  const parts: string[] = [];
  if (rule.source) parts.push("-s", rule.source.canonical);
  if (rule.destination) parts.push("-d", rule.destination.canonical);
  if (rule.protocol !== undefined) parts.push("-p", rule.protocol);
  if (rule.sourcePort || rule.destinationPort) {
    // Ports exist only with tcp or udp (validated); a numeric 6/17 loads the module by its name.
    parts.push("-m", rule.protocolNumber === 6 ? "tcp" : "udp");
    const sport = portText(rule.sourcePort);
    const dport = portText(rule.destinationPort);
    if (sport !== undefined) parts.push("--sport", sport);
    if (dport !== undefined) parts.push("--dport", dport);
  }
  const target = targets[rule.action];
  parts.push("-j", target);
  // iptables-save always names the ICMP reply; writing it keeps the text canonical.
  if (target === "REJECT") parts.push("--reject-with", rule.ipVersion === 4 ? "icmp-port-unreachable" : "icmp6-port-unreachable");
  return parts.join(" ");
}

/** iptables-save prints nothing for the full range 0:65535 (the module stays), `N` for `N:N`. */
function portText(range: PortRange | undefined): string | undefined {
  if (range === undefined || (range.min === 0 && range.max === 65535)) return undefined;
  return range.min === range.max ? String(range.min) : `${range.min}:${range.max}`;
}
