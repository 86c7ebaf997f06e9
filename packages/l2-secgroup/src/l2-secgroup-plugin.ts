/**
 * The l2-agent plugin: Neutron's iptables security groups for the ports in the l2 state document.
 *
 * Options (in the plugin's config entry or `plugin_options.l2-secgroup`), each falling back to the
 * app's config key of the same name when the app has one, then to Neutron's default:
 * - `firewall_driver`: `iptables` (Linux bridge; default) or `iptables_hybrid` (OVS hybrid plug), or
 *   Neutron's class paths for them;
 * - `enable_ipset` (default true): remote groups as ipsets;
 * - `wait_for_devices` (default true): a port's rules appear once its tap exists (a device monitor
 *   reports taps as they come and go); false filters every desired port at once;
 * - `polling_interval` (seconds, default 2, Neutron's name): while a port waits for its tap, look
 *   for it this often too (the safety net for an event the monitor missed);
 * - `wrap_name`: the chain prefix; default the agent's `wrap_name` for `iptables`, `neutron-openvswi`
 *   (what Neutron's OVS agent uses) for `iptables_hybrid`;
 * - `max_rules_per_port` (default 10,000; remote groups expanded when ipsets are off) and
 *   `max_members_per_group` (default 65,536, an ipset's `maxelem`): a port over a limit is invalid
 *   input (kept as the kernel has it, or filtered closed), so one port cannot cost unbounded memory.
 */
import { AGENT_METRICS, applyObserverExtensionPoint, createPlugin, resourceHandlerExtensionPoint, type AgentConfig, type AgentMetrics } from "@chainwarden/agent";
import { z } from "zod";
import { FIREWALL_DRIVERS, firewallFlavor } from "./firewall-flavor.js";
import { DEFAULT_L2_LIMITS } from "./l2-state.js";
import { DEVICE_POLL_INTERVAL_MS, PortFilterHandler } from "./port-filter-handler.js";

const driverAlias = z.string().refine((v) => FIREWALL_DRIVERS.has(v), { message: `expected one of ${[...FIREWALL_DRIVERS.keys()].join(", ")}` });
/** Seconds; an hour at most (a poll that rare is no safety net). */
const pollingInterval = z.number().positive().max(3_600);

export const l2SecgroupOptionsSchema = z.strictObject({
  firewall_driver: driverAlias.optional(),
  enable_ipset: z.boolean().optional(),
  wait_for_devices: z.boolean().optional(),
  polling_interval: pollingInterval.optional(),
  wrap_name: z
    .string()
    .min(1)
    .max(16)
    .regex(/^[A-Za-z0-9_.-]+$/, "letters, digits, _ . - only")
    .optional(),
  max_rules_per_port: z.number().int().min(1).max(1_000_000).default(DEFAULT_L2_LIMITS.maxRulesPerPort),
  max_members_per_group: z.number().int().min(1).max(DEFAULT_L2_LIMITS.maxMembersPerGroup).default(DEFAULT_L2_LIMITS.maxMembersPerGroup),
});

export type L2SecgroupOptions = z.output<typeof l2SecgroupOptionsSchema>;

/** A value the app's config may carry under the same key, checked here as the app may not check it. */
function fromConfig<T>(config: AgentConfig, key: string, schema: z.ZodType<T>): T | undefined {
  const v = config[key];
  if (v === undefined) return undefined;
  const r = schema.safeParse(v);
  if (!r.success) throw new Error(`config key ${key}: ${r.error.issues.map((i) => i.message).join("; ")}`);
  return r.data;
}

export const l2SecgroupPlugin = createPlugin<L2SecgroupOptions>({
  name: "l2-secgroup",
  version: "0.1.0",
  framework: "^0.1.0",
  options: l2SecgroupOptionsSchema,
  register(env) {
    const alias = env.options.firewall_driver ?? fromConfig(env.config, "firewall_driver", driverAlias) ?? "iptables";
    const flavor = firewallFlavor(alias);
    const enableIpset = env.options.enable_ipset ?? fromConfig(env.config, "enable_ipset", z.boolean()) ?? true;
    const waitForDevices = env.options.wait_for_devices ?? fromConfig(env.config, "wait_for_devices", z.boolean()) ?? true;
    const pollingSeconds = env.options.polling_interval ?? fromConfig(env.config, "polling_interval", pollingInterval);
    const wrapName = env.options.wrap_name ?? (flavor.alias === "iptables" ? undefined : flavor.defaultWrapName);
    const handler = new PortFilterHandler({
      flavor,
      enableIpset,
      waitForDevices,
      limits: { maxRulesPerPort: env.options.max_rules_per_port, maxMembersPerGroup: env.options.max_members_per_group },
      logger: env.logger,
      ...(wrapName !== undefined ? { wrapName } : {}),
      ...(pollingSeconds !== undefined ? { devicePollIntervalMs: pollingSeconds * 1000 } : {}),
      ...(env.container.isRegistered(AGENT_METRICS) ? { metrics: env.container.resolve<AgentMetrics>(AGENT_METRICS) } : {}),
    });
    env.addExtension(resourceHandlerExtensionPoint, handler);
    env.addExtension(applyObserverExtensionPoint, handler.observer);
    env.logger.debug({ firewallDriver: flavor.alias, enableIpset, waitForDevices, pollingInterval: pollingSeconds ?? DEVICE_POLL_INTERVAL_MS / 1000, wrapName: wrapName ?? env.config.wrap_name }, "security group firewall registered");
  },
});
