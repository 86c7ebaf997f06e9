/**
 * @chainwarden/l2-secgroup: Neutron's iptables security groups (`IptablesFirewallDriver` and the
 * OVS-hybrid variant) on Chainwarden's IptablesManager, and the l2-agent plugin that runs them.
 * The default export is the plugin, for the agent's plugin loader.
 *
 * @packageDocumentation
 */
import { l2SecgroupPlugin } from "./l2-secgroup-plugin.js";

export { l2SecgroupPlugin } from "./l2-secgroup-plugin.js";
export {
  l2SecgroupOptionsSchema,
  l2SecgroupSettingsKeys,
  l2SecgroupSettingsFlags,
  resolveL2SecgroupSettings,
  type L2SecgroupOptions,
  type L2SecgroupSettings,
  type L2SecgroupAgentSettings,
} from "./l2-secgroup-settings.js";
export { PortFilterHandler, DEVICE_POLL_INTERVAL_MS, type PortFilterHandlerOptions } from "./port-filter-handler.js";
export { FirewallNamespace, type FirewallNamespaceOptions, type NamespaceReconcileOptions, type NamespaceReconcileResult, type AfterApplyResult } from "./firewall-namespace.js";
export { IptablesFirewallDriver, type IptablesFirewallDriverOptions, type IpsetUse, type SyncSummary, type HeldPortSpec } from "./iptables-firewall-driver.js";
export { kernelPortRules, type KernelCopy, type KernelPortRules, type PortKernelNames } from "./kernel-port-rules.js";
export { IpsetError } from "./ipset-error.js";
export { FIREWALL_DRIVERS, firewallFlavor, iptablesFlavor, ovsHybridFlavor, type FirewallFlavor, type FirewallDriverAlias } from "./firewall-flavor.js";
export {
  parseL2State,
  L2ParseCache,
  ipsetName,
  trustedDeviceId,
  DEFAULT_L2_LIMITS,
  type HeldPortResource,
  type L2Limits,
  type L2Resource,
  type L2StateOptions,
  type MemberIps,
  type PortFilterResource,
  type TrustedDeviceResource,
} from "./l2-state.js";
export { parsePortInfo, type PortInfo, type AllowedAddressPair } from "./port-info.js";
export { parseSecurityGroupRule, type SecurityGroupRule } from "./security-group-rule.js";
export { buildPortRules, securityGroupRuleText, conntrackRules, type PortRules, type RuleSpec } from "./port-rules.js";
export { IpsetManager, type IpsetManagerOptions } from "./ipset-manager.js";
export { DeviceWatch, parseLinkEvent, type DeviceWatchOptions, type LinkEvent } from "./device-watch.js";
export { ConntrackZones, ConntrackZoneExhaustedError } from "./conntrack-zones.js";
export { conntrackCommands, type ConntrackDeletion } from "./conntrack-cleanup.js";
export { COMMENTS, SG_CHAIN, SG_FALLBACK_CHAIN, ZONE_START } from "./neutron-constants.js";

export default l2SecgroupPlugin;
