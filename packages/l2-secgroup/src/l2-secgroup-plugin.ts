/**
 * The l2-agent plugin: Neutron's iptables security groups for the ports in the l2 state document.
 *
 * Settings (the agent's keys it owns, with flags; `l2SecgroupSettingsKeys`): `firewall_driver`,
 * `enable_ipset`, `wait_for_devices`, `polling_interval`. Options (`plugin_options.l2-secgroup`):
 * `wrap_name`, `max_rules_per_port` (default 10,000; remote groups expanded when ipsets are off) and
 * `max_members_per_group` (default 65,536, an ipset's `maxelem`): a port over a limit is invalid
 * input (kept as the kernel has it, or filtered closed), so one port cannot cost unbounded memory.
 */
import { applyObserverExtensionPoint, createPlugin, resourceHandlerExtensionPoint } from "@chainwarden/agent";
import { l2SecgroupNeutronOptions, l2SecgroupOptionsSchema, l2SecgroupSettingsFlags, l2SecgroupSettingsKeys, resolveL2SecgroupSettings } from "./l2-secgroup-settings.js";
import { PortFilterHandler } from "./port-filter-handler.js";

/**
 * The plugin (also the package's default export): registers the `PortFilterHandler` (Neutron's security group agent with `IptablesFirewallDriver`)
 * for the state document's ports, and its apply observer. Throws `PluginError` at registration for an unknown `firewall_driver`.
 */
export const l2SecgroupPlugin = createPlugin({
  name: "l2-secgroup",
  version: "0.1.0",
  framework: "^0.1.0",
  options: l2SecgroupOptionsSchema,
  settings: { keys: l2SecgroupSettingsKeys, flags: l2SecgroupSettingsFlags, neutron: l2SecgroupNeutronOptions },
  register(env) {
    const settings = resolveL2SecgroupSettings(env.settings, env.options);
    const handler = new PortFilterHandler({ settings, logger: env.logger, metrics: env.metrics });
    env.addExtension(resourceHandlerExtensionPoint, handler);
    env.addExtension(applyObserverExtensionPoint, handler.observer);
    env.logger.debug(
      { firewallDriver: settings.flavor.alias, enableIpset: settings.enableIpset, waitForDevices: settings.waitForDevices, pollingIntervalMs: settings.devicePollIntervalMs, wrapName: settings.wrapName ?? env.config.wrap_name },
      "security group firewall registered",
    );
  },
});
