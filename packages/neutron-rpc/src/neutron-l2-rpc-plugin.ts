import { createPlugin, stateSourceExtensionPoint } from "@chainwarden/agent";
import { FIRST_SYNC_WAIT_MS, type ConnectRpc } from "./connect-rpc.js";
import { L2RpcSource } from "./l2-rpc-source.js";
import { redactTransportUrl } from "@chainwarden/oslo-messaging";
import { lazyTransport } from "./lazy-transport.js";
import { neutronRpcNeutronOptions, neutronRpcSettingsFlags, neutronRpcSettingsKeys } from "./neutron-rpc-settings.js";
import { connectOsloMessaging } from "./oslo-transport.js";

/**
 * `neutron-l2-rpc`: the l2 agent as the security group firewall of a Linux bridge host beside
 * `neutron-linuxbridge-agent` (`firewall_driver = noop` there). With `transport_url` set, the ports
 * to filter are the host's taps as the server describes them (`L2RpcSource`).
 */
export function createNeutronL2RpcPlugin(connect: ConnectRpc = connectOsloMessaging) {
  return createPlugin({
    name: "neutron-l2-rpc",
    version: "0.1.0",
    framework: "^0.1.0",
    settings: { keys: neutronRpcSettingsKeys, flags: neutronRpcSettingsFlags, neutron: neutronRpcNeutronOptions },
    register(env) {
      const settings = env.settings;
      if (settings.transport_url === undefined) return;
      const logger = env.logger;
      const source = new L2RpcSource({
        rpc: lazyTransport(() => connect({ ...settings, transport_url: settings.transport_url! }, logger)),
        host: settings.host,
        runner: env.runner,
        namespace: env.config.netns,
        timeoutMs: settings.rpc_response_timeout * 1000,
        step: 20,
        resyncIntervalMs: settings.server_resync_interval * 1000,
        firstSyncWaitMs: FIRST_SYNC_WAIT_MS,
        logger,
      });
      env.addExtension(stateSourceExtensionPoint, source);
      logger.info({ host: settings.host, broker: redactTransportUrl(settings.transport_url) }, "security groups come from neutron-server");
    },
  });
}

export const neutronL2RpcPlugin = createNeutronL2RpcPlugin();
