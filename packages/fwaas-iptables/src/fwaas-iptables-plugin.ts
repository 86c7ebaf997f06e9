import { applyObserverExtensionPoint, createPlugin, resourceHandlerExtensionPoint, type PluginNeutronOptions, type ResourceHandler } from "@chainwarden/agent";
import { l3AgentRouterExtensionPoint, l3NatSettingsService } from "@chainwarden/l3-nat";
import { z } from "zod";
import { FwaasCoordinator } from "./fwaas-coordinator.js";
import { FwaasResourceHandler, FwaasStateParser } from "./fwaas-resource-handler.js";
import type { RouterBoundFirewall, RouterBoundGroup } from "./fwaas-state.js";

/** The plugin's options (`plugin_options.fwaas-iptables`). */
export const fwaasIptablesOptionsSchema = z.strictObject({
  conntrack_cleanup: z.boolean().default(true).describe("Remove the connections a new or changed firewall forbids, as neutron-fwaas does."),
});

/** `plugin_options.fwaas-iptables` as `fwaasIptablesOptionsSchema` leaves it: validated, defaults filled in. */
export type FwaasIptablesOptions = z.output<typeof fwaasIptablesOptionsSchema>;

/**
 * The Neutron options of the l3 agent's FWaaS extension it checks (neutron-fwaas: `[AGENT]
 * extensions` in `l3_agent.ini`, `[fwaas]` in `fwaas_driver.ini`): FWaaS here is always on and
 * always iptables, so other l3 extensions and other drivers are refused rather than silently not
 * done. No key or option of the plugin has a Neutron option.
 */
export const fwaasIptablesNeutronOptions: PluginNeutronOptions<{}> = {
  reads: [
    {
      // Registered by Neutron in the group `agent`.
      section: "agent",
      option: "extensions",
      type: "list",
      default: [],
      values: { fwaas: "fwaas", fwaas_v2: "fwaas_v2" },
      unsupported: "of the l3 agent's extensions only FWaaS is implemented (port_forwarding, fip_qos, gateway_ip_qos, conntrack_helper, ndp_proxy, snat_log, fwaas_v2_log are not)",
    },
    {
      section: "fwaas",
      option: "driver",
      type: "string",
      default: "",
      values: {
        "": "",
        iptables: "iptables",
        iptables_v2: "iptables_v2",
        "neutron_fwaas.services.firewall.service_drivers.agents.drivers.linux.iptables_fwaas_v2.IptablesFwaasDriver": "iptables_v2",
        "neutron_fwaas.services.firewall.drivers.linux.iptables_fwaas_v2.IptablesFwaasDriver": "iptables_v2",
        "neutron_fwaas.services.firewall.drivers.linux.iptables_fwaas.IptablesFwaasDriver": "iptables",
      },
      unsupported: "firewalls are programmed with iptables, as neutron-fwaas's iptables drivers do; other drivers are not supported",
    },
  ],
};

/**
 * `@chainwarden/fwaas-iptables`: FWaaS v1 firewalls and v2 firewall groups on the l3 agent's
 * routers. Registers
 * - the `firewall` and `firewall_group` resource handlers (the document's `firewalls` and
 *   `firewall_groups`, next to `routers`),
 * - a router extension on `@chainwarden/l3-nat`'s `l3AgentRouterExtensionPoint`, so routers that
 *   are added, rebuilt or changed get the firewalls covering them in the same apply,
 * - an apply observer that removes stale connections once the new rules are in.
 * Register it after `l3-nat` (the l3-agent app does): in a namespace the router handler then runs
 * first and the firewalls land in a router that is set up. It knows router namespaces from
 * l3-nat's settings (`l3NatSettingsService`), so the two can never disagree.
 */
export const fwaasIptablesPlugin = createPlugin<FwaasIptablesOptions>({
  name: "fwaas-iptables",
  version: "0.1.0",
  framework: "^0.1.0",
  options: fwaasIptablesOptionsSchema,
  settings: { keys: {}, neutron: fwaasIptablesNeutronOptions },
  register(env) {
    const prefix = env.use(l3NatSettingsService).namespacePrefix;
    const coordinator = new FwaasCoordinator({ conntrackCleanup: env.options.conntrack_cleanup, logger: env.logger });
    const parser = new FwaasStateParser(prefix);
    env.addExtension(l3AgentRouterExtensionPoint, coordinator.routerExtension);
    env.addExtension(resourceHandlerExtensionPoint, new FwaasResourceHandler<RouterBoundFirewall>("firewall", coordinator, parser) as ResourceHandler);
    env.addExtension(resourceHandlerExtensionPoint, new FwaasResourceHandler<RouterBoundGroup>("firewall_group", coordinator, parser) as ResourceHandler);
    env.addExtension(applyObserverExtensionPoint, { onApply: (event) => coordinator.afterApply(event) });
    env.logger.debug({ namespacePrefix: prefix, conntrackCleanup: env.options.conntrack_cleanup }, "fwaas-iptables registered");
  },
});
