/**
 * @chainwarden/fwaas-iptables: FWaaS on router ports with iptables.
 * - Model and validation: `parseFirewall` (v1), `parseFirewallGroup` (v2), `parseFirewallRule`.
 * - The driver: `RouterFirewall` programs one router's IptablesManager (v1 and v2 layouts).
 * - Conntrack: `ConntrackCleaner` removes the connections a new or changed firewall forbids.
 * - The agent plugin: `fwaasIptablesPlugin` (kinds `firewall` and `firewall_group`, a router
 *   extension of `@chainwarden/l3-nat`), also the default export.
 *
 * @packageDocumentation
 */
export { parseFirewallRule, firewallRuleInputSchema, type FirewallRule, type FirewallAction, type IpVersion, type PortRange, type ParseIssue } from "./firewall-rule.js";
export { parseFirewall, firewallInputSchema, type Firewall } from "./firewall.js";
export { parseFirewallGroup, firewallGroupInputSchema, type FirewallGroup } from "./firewall-group.js";
export { parseRuleList, RESOURCE_ID } from "./rule-list.js";
export { parseIpNetwork, networkContains, type IpNetwork } from "./ip-network.js";
export { translateRule, V1_ACTION_TARGETS, V2_ACTION_TARGETS, type ActionTargets } from "./rule-translation.js";
export * from "./fwaas-chains.js";
export { firewallCoversRouter, type RouterIdentity } from "./firewall-coverage.js";
export { RouterFirewall, type RouterFirewallInput, type RouterFirewallOptions, type RouterFirewallSyncResult } from "./router-firewall.js";
export {
  ConntrackCleaner,
  conntrackFilterMatches,
  conntrackFilterOf,
  mergeConntrackPlans,
  isEmptyConntrackPlan,
  EMPTY_CONNTRACK_PLAN,
  type ConntrackFilter,
  type ConntrackPlan,
  type ConntrackResult,
} from "./conntrack-cleaner.js";
export { parseConntrackEntries, deleteEntryArgs, type ConntrackEntry } from "./conntrack-entry.js";
export { parseFwaasState, type FwaasState, type FwaasStateOptions, type RouterBoundFirewall, type RouterBoundGroup, type RouterBoundResource } from "./fwaas-state.js";
export { FwaasCoordinator, type FwaasCoordinatorOptions } from "./fwaas-coordinator.js";
export { FwaasResourceHandler, FwaasStateParser, type FirewallHandler, type FirewallGroupHandler } from "./fwaas-resource-handler.js";
export { fwaasIptablesPlugin, fwaasIptablesOptionsSchema, type FwaasIptablesOptions } from "./fwaas-iptables-plugin.js";
export { fwaasIptablesPlugin as default } from "./fwaas-iptables-plugin.js";
