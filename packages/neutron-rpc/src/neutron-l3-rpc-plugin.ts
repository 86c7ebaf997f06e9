import { applyObserverExtensionPoint, createPlugin, stateSourceExtensionPoint } from "@chainwarden/agent";
import { l3NatControlPlaneService, l3NatSettingsService } from "@chainwarden/l3-nat";
import { FIRST_SYNC_WAIT_MS, type ConnectRpc } from "./connect-rpc.js";
import { L3RpcSource } from "./l3-rpc-source.js";
import { redactTransportUrl } from "@chainwarden/oslo-messaging";
import { lazyTransport } from "./lazy-transport.js";
import { neutronRpcNeutronOptions, neutronRpcSettingsFlags, neutronRpcSettingsKeys } from "./neutron-rpc-settings.js";
import { connectOsloMessaging } from "./oslo-transport.js";

/**
 * `neutron-l3-rpc`: the l3 agent driven by neutron-server, in place of `neutron-l3-agent`. With
 * `transport_url` set, its routers come from the server (`L3RpcSource`) and floating IP statuses go
 * back, and l3-nat is told that a Neutron control plane drives it (`bridge_mode: auto` leaves the
 * bridges to neutron-linuxbridge-agent); without it, the plugin does nothing and the agent reads
 * files. Register after l3-nat.
 */
export function createNeutronL3RpcPlugin(connect: ConnectRpc = connectOsloMessaging) {
  return createPlugin({
    name: "neutron-l3-rpc",
    version: "0.1.0",
    framework: "^0.1.0",
    settings: { keys: neutronRpcSettingsKeys, flags: neutronRpcSettingsFlags, neutron: neutronRpcNeutronOptions },
    register(env) {
      const settings = env.settings;
      if (settings.transport_url === undefined) return;
      const l3 = env.use(l3NatSettingsService);
      const logger = env.logger;
      const source = new L3RpcSource({
        rpc: lazyTransport(() => connect({ ...settings, transport_url: settings.transport_url! }, logger)),
        host: settings.host,
        timeoutMs: settings.rpc_response_timeout * 1000,
        reportIntervalMs: settings.report_interval * 1000,
        resyncIntervalMs: settings.server_resync_interval * 1000,
        firstSyncWaitMs: FIRST_SYNC_WAIT_MS,
        configurations: { interface_driver: l3.interfaceDriver },
        logger,
      });
      env.addExtension(stateSourceExtensionPoint, source);
      env.addExtension(applyObserverExtensionPoint, source.floatingIpStatuses);
      // Under Neutron, neutron-linuxbridge-agent owns the bridges (l3-nat's bridge_mode auto).
      env.use(l3NatControlPlaneService).neutron(source.name);
      logger.info({ host: settings.host, broker: redactTransportUrl(settings.transport_url) }, "routers come from neutron-server");
    },
  });
}

export const neutronL3RpcPlugin = createNeutronL3RpcPlugin();
