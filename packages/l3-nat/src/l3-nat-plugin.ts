import { applyObserverExtensionPoint, createPlugin, resourceHandlerExtensionPoint } from "@chainwarden/agent";
import { l3InterfaceDriverExtensionPoint } from "./interface-driver.js";
import { bridgeMark } from "./device-names.js";
import {
  createL3NatControlPlane,
  l3NatControlPlaneService,
  l3NatNeutronOptions,
  l3NatOptionsSchema,
  l3NatSettingsFlags,
  l3NatSettingsKeys,
  l3NatSettingsService,
  resolveBridgeMode,
  resolveL3NatSettings,
} from "./l3-nat-settings.js";
import { LinuxbridgeInterfaceDriver } from "./linuxbridge-interface-driver.js";
import { MetadataProxyMonitor } from "./metadata-proxy-monitor.js";
import { MetadataProxyProcess } from "./metadata-proxy-process.js";
import { NoopInterfaceDriver } from "./noop-interface-driver.js";
import { l3AgentRouterExtensionPoint } from "./router-extension-point.js";
import { RouterHandler } from "./router-handler.js";

/**
 * `@chainwarden/l3-nat`: the l3 agent's routers. Registers
 * - the `router` resource handler (Neutron router dicts under `routers`, one namespace each),
 * - the interface drivers `linuxbridge` and `noop` (`l3InterfaceDriverExtensionPoint`),
 * - an apply observer that finishes each router's floating IP addresses and conntrack cleanup
 *   once its rules are applied.
 * It owns `l3AgentRouterExtensionPoint`, through which FWaaS and other plugins get the routers.
 *
 * Settings (the agent's keys it owns, with flags): `namespace_prefix`, `metadata_port`,
 * `enable_metadata_proxy`. Options (`plugin_options.l3-nat`): `interface_driver`,
 * `bridge_namespace`, `bridge_mode`, `metadata_upstream`, `metadata_proxy`, `use_random_fully`,
 * `metadata_access_mark`, `external_ingress_mark`, `check_child_processes_interval`. Framework keys
 * read: `use_ipv6`, `state_path`. It provides its resolved settings as `l3NatSettingsService`, and
 * `l3NatControlPlaneService`, where a source of routers from neutron-server says so (`bridge_mode: auto`).
 */
export const l3NatPlugin = createPlugin({
  name: "l3-nat",
  version: "0.1.0",
  framework: "^0.1.0",
  options: l3NatOptionsSchema,
  settings: { keys: l3NatSettingsKeys, flags: l3NatSettingsFlags, neutron: l3NatNeutronOptions },
  register(env) {
    const settings = resolveL3NatSettings(env.settings, env.options, env.config);
    env.provide(l3NatSettingsService, settings);
    const controlPlane = createL3NatControlPlane();
    env.provide(l3NatControlPlaneService, controlPlane);
    env.addExtension(
      l3InterfaceDriverExtensionPoint,
      new LinuxbridgeInterfaceDriver({
        bridgeNamespace: settings.bridgeNamespace,
        bridgeMark: bridgeMark(settings.namespacePrefix),
        // Decided on first use: the RPC plugin registers after this one.
        mode: () => {
          const { mode, why } = resolveBridgeMode(settings.bridgeMode, controlPlane);
          env.logger.info({ bridgeMode: mode, why }, "linuxbridge interface driver: bridge mode");
          return mode;
        },
      }),
    );
    env.addExtension(l3InterfaceDriverExtensionPoint, new NoopInterfaceDriver());
    // Neutron's ProcessMonitor for the metadata proxies: one per agent, its metrics in the agent's registry.
    const proxies = new MetadataProxyMonitor({
      checkIntervalMs: settings.checkChildProcessesIntervalMs,
      logger: env.logger.child({ component: "metadata-proxy" }),
      ...(settings.runMetadataProxy ? { metrics: env.metrics } : {}),
    });
    const handler = new RouterHandler({
      settings,
      proxyFactory: (params) => new MetadataProxyProcess({ ...params, monitor: proxies }),
      // Read when the first router is reconciled: by then every plugin has registered.
      drivers: () => env.extensions(l3InterfaceDriverExtensionPoint),
      extensions: () => env.extensions(l3AgentRouterExtensionPoint),
    });
    env.addExtension(resourceHandlerExtensionPoint, handler);
    env.addExtension(applyObserverExtensionPoint, { onApply: (event) => handler.afterApply(event) });
    env.logger.debug({ interfaceDriver: settings.interfaceDriver, namespacePrefix: settings.namespacePrefix, metadataProxy: settings.enableMetadataProxy }, "l3-nat registered");
  },
});
