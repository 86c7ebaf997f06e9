import { applyObserverExtensionPoint, createPlugin, stateSourceExtensionPoint, type BaseConfig } from "@chainwarden/agent";
import { l3NatSettingsService } from "@chainwarden/l3-nat";
import type { Logger } from "pino";
import { L2RpcSource } from "./l2-rpc-source.js";
import { L3RpcSource } from "./l3-rpc-source.js";
import { neutronRpcSettingsFlags, neutronRpcSettingsKeys, type NeutronRpcSettings } from "./neutron-rpc-settings.js";
import { connectOsloMessaging } from "./oslo-transport.js";
import type { RpcTransport } from "./rpc-transport.js";

/** Makes the connection to the broker (tests pass their own; the default is `@chainwarden/oslo-messaging`). */
export type ConnectRpc = (settings: NeutronRpcSettings & { transport_url: string }, logger: Logger) => RpcTransport;

/** How long `start` waits for the server's first answer before the agent runs without state (it goes on trying). */
const FIRST_SYNC_WAIT_MS = 120_000;

/**
 * `neutron-l3-rpc`: the l3 agent driven by neutron-server, in place of `neutron-l3-agent`. With
 * `transport_url` set, its routers come from the server (`L3RpcSource`) and floating IP statuses go
 * back; without it, the plugin does nothing and the agent reads files. Register after l3-nat.
 */
export function createNeutronL3RpcPlugin(connect: ConnectRpc = connectOsloMessaging) {
  return createPlugin({
    name: "neutron-l3-rpc",
    version: "0.1.0",
    framework: "^0.1.0",
    settings: { keys: neutronRpcSettingsKeys, flags: neutronRpcSettingsFlags },
    register(env) {
      const settings = env.settings;
      if (settings.transport_url === undefined) return;
      const l3 = env.use(l3NatSettingsService);
      const logger = env.logger;
      const source = new L3RpcSource({
        rpc: lazy(() => connect({ ...settings, transport_url: settings.transport_url! }, logger)),
        host: settings.host,
        timeoutMs: settings.rpc_response_timeout * 1000,
        reportIntervalMs: settings.report_interval * 1000,
        resyncIntervalMs: settings.resync_interval * 1000,
        firstSyncWaitMs: FIRST_SYNC_WAIT_MS,
        configurations: { interface_driver: l3.interfaceDriver },
        logger,
      });
      env.addExtension(stateSourceExtensionPoint, source);
      env.addExtension(applyObserverExtensionPoint, source.floatingIpStatuses);
      logger.info({ host: settings.host, broker: redactedUrl(settings.transport_url) }, "routers come from neutron-server");
    },
  });
}

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
    settings: { keys: neutronRpcSettingsKeys, flags: neutronRpcSettingsFlags },
    register(env) {
      const settings = env.settings;
      if (settings.transport_url === undefined) return;
      const logger = env.logger;
      const source = new L2RpcSource({
        rpc: lazy(() => connect({ ...settings, transport_url: settings.transport_url! }, logger)),
        host: settings.host,
        runner: env.runner,
        namespace: (env.config as BaseConfig).netns,
        timeoutMs: settings.rpc_response_timeout * 1000,
        step: 20,
        resyncIntervalMs: settings.resync_interval * 1000,
        firstSyncWaitMs: FIRST_SYNC_WAIT_MS,
        logger,
      });
      env.addExtension(stateSourceExtensionPoint, source);
      logger.info({ host: settings.host, broker: redactedUrl(settings.transport_url) }, "security groups come from neutron-server");
    },
  });
}

export const neutronL3RpcPlugin = createNeutronL3RpcPlugin();
export const neutronL2RpcPlugin = createNeutronL2RpcPlugin();

/** The connection is made when the source starts (a `plan` without `transport_url` never connects). */
function lazy(make: () => RpcTransport): RpcTransport {
  let rpc: RpcTransport | undefined;
  const get = () => (rpc ??= make());
  return {
    call: (target, method, args, options) => get().call(target, method, args, options),
    cast: (target, method, args) => get().cast(target, method, args),
    serve: (target, endpoints) => get().serve(target, endpoints),
    onReconnected: (listener) => get().onReconnected(listener),
    close: async () => {
      await rpc?.close();
    },
  };
}

/** A transport URL for logs: the password never leaves. */
export function redactedUrl(url: string): string {
  return url.replace(/(\/\/|,)([^:@/,]+):([^@/,]*)@/g, "$1$2:***@");
}
