import { applyObserverExtensionPoint, createPlugin, resourceHandlerExtensionPoint, type ResourceHandler } from "@chainwarden/agent";
import { l3AgentRouterExtensionPoint } from "@chainwarden/l3-nat";
import { z } from "zod";
import { FwaasCoordinator } from "./fwaas-coordinator.js";
import { FwaasResourceHandler, FwaasStateParser } from "./fwaas-resource-handler.js";
import type { RouterBoundFirewall, RouterBoundGroup } from "./fwaas-state.js";

/** The plugin's options (`plugin_options.fwaas-iptables`). */
export const fwaasIptablesOptionsSchema = z.strictObject({
  /** Remove the connections a new or changed firewall forbids, as neutron-fwaas does. */
  conntrack_cleanup: z.boolean().default(true),
});

export type FwaasIptablesOptions = z.output<typeof fwaasIptablesOptionsSchema>;

const NAMESPACE_PREFIX = /^(?![.-])[A-Za-z0-9_.-]{1,28}$/;

/**
 * `@chainwarden/fwaas-iptables`: FWaaS v1 firewalls and v2 firewall groups on the l3 agent's
 * routers. Registers
 * - the `firewall` and `firewall_group` resource handlers (the document's `firewalls` and
 *   `firewall_groups`, next to `routers`),
 * - a router extension on `@chainwarden/l3-nat`'s `l3AgentRouterExtensionPoint`, so routers that
 *   are added, rebuilt or changed get the firewalls covering them in the same apply,
 * - an apply observer that removes stale connections once the new rules are in.
 * Register it after `l3-nat` (the l3-agent app does): in a namespace the router handler then runs
 * first and the firewalls land in a router that is set up. Reads the agent config's
 * `namespace_prefix` (as l3-nat does) to know router namespaces.
 */
export const fwaasIptablesPlugin = createPlugin<FwaasIptablesOptions>({
  name: "fwaas-iptables",
  version: "0.1.0",
  framework: "^0.1.0",
  options: fwaasIptablesOptionsSchema,
  register(env) {
    const prefix = env.config["namespace_prefix"] ?? "qrouter-";
    if (typeof prefix !== "string" || !NAMESPACE_PREFIX.test(prefix)) {
      throw new Error(`invalid agent config for fwaas-iptables: namespace_prefix ${JSON.stringify(prefix)} must be 1 to 28 letters, digits, _ . - (not first)`);
    }
    const coordinator = new FwaasCoordinator({ conntrackCleanup: env.options.conntrack_cleanup, logger: env.logger });
    const parser = new FwaasStateParser(prefix);
    env.addExtension(l3AgentRouterExtensionPoint, coordinator.routerExtension);
    env.addExtension(resourceHandlerExtensionPoint, new FwaasResourceHandler<RouterBoundFirewall>("firewall", coordinator, parser) as ResourceHandler);
    env.addExtension(resourceHandlerExtensionPoint, new FwaasResourceHandler<RouterBoundGroup>("firewall_group", coordinator, parser) as ResourceHandler);
    env.addExtension(applyObserverExtensionPoint, { onApply: (event) => coordinator.afterApply(event) });
    env.logger.debug({ namespacePrefix: prefix, conntrackCleanup: env.options.conntrack_cleanup }, "fwaas-iptables registered");
  },
});
