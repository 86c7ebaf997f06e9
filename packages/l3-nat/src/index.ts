/**
 * @chainwarden/l3-nat: Neutron's l3 agent for legacy routers. Each router is a network namespace
 * with its interfaces, SNAT, floating IPs, the metadata redirect and a metadata proxy. The default
 * export is the plugin.
 *
 * @packageDocumentation
 */
import { l3NatPlugin } from "./l3-nat-plugin.js";

export { l3NatPlugin };
export default l3NatPlugin;
export { l3AgentRouterExtensionPoint, type L3RouterExtension, type RouterExtensionContext } from "./router-extension-point.js";
export { l3InterfaceDriverExtensionPoint, type InterfaceDriver, type InterfaceDriverContext, type InterfaceDriverSweepContext, type PlugRequest } from "./interface-driver.js";
export { LinuxbridgeInterfaceDriver, type LinuxbridgeInterfaceDriverOptions, type BridgeMode } from "./linuxbridge-interface-driver.js";
export { NoopInterfaceDriver } from "./noop-interface-driver.js";
export { RouterHandler, type RouterHandlerOptions } from "./router-handler.js";
export { RouterRules, FLOATING_IP_TAG, ROUTER_MARK_MASK, METADATA_V4_CIDR, METADATA_V6_CIDR, type RouterRulesOptions, type RouterRulesChange } from "./router-rules.js";
export { AddressScopeMarks, ADDRESS_SCOPE_MARK_MASK, DEFAULT_ADDRESS_SCOPE } from "./address-scope-marks.js";
export { parseFloatingIp, parseRouter, RESOURCE_ID, type Router, type RouterPort, type FixedIp, type Subnet, type FloatingIp, type FloatingIpLookup, type ParseFloatingIpResult, type ParseRouterResult } from "./router.js";
export { parseRouters, RouterParseCache, type ParseRoutersOptions } from "./parse-routers.js";
export {
  l3NatOptionsSchema,
  l3NatSettingsKeys,
  l3NatSettingsFlags,
  l3NatSettingsService,
  l3NatControlPlaneService,
  createL3NatControlPlane,
  resolveBridgeMode,
  resolveL3NatSettings,
  DEFAULT_METADATA_UPSTREAM,
  type L3NatControlPlane,
  type L3NatOptions,
  type L3NatSettings,
  type L3NatAgentSettings,
} from "./l3-nat-settings.js";
export { L3NatError, RouterExtensionError, RouterDevicesMissingError, InterfaceDriverUnknownError, FloatingIpAddressError, type FloatingIpBatchFailure, type L3NatErrorCode } from "./l3-nat-errors.js";
export { createMetadataProxyServer, parseMetadataUpstream, formatMetadataUpstream, forwardedHeaders, type MetadataUpstream, type MetadataProxyOptions } from "./metadata-proxy.js";
export { MetadataProxyProcess, defaultMetadataProxyScript, type MetadataProxyHandle, type MetadataProxyFactory, type MetadataProxyParams, type MetadataProxyProcessOptions } from "./metadata-proxy-process.js";
export * from "./device-names.js";
