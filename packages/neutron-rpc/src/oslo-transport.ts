import { neutronAdminContext, RpcConnectError, RpcTransport as OsloTransport, TransportClosedError, type RpcEndpoint } from "@chainwarden/oslo-messaging";
import type { Logger } from "pino";
import { NotConnectedError } from "./neutron-rpc-error.js";
import type { NeutronRpcSettings } from "./neutron-rpc-settings.js";
import type { RpcEndpoints, RpcTransport } from "./rpc-transport.js";

/**
 * `RpcTransport` on `@chainwarden/oslo-messaging`, configured from the Neutron options: the
 * `neutron` control exchange, an admin context on every request as Neutron's agents send, the
 * `[oslo_messaging_rabbit]` TLS and heartbeat options. It connects in the background and keeps
 * trying, as oslo does: calls made meanwhile wait within their own timeout; servers register at once
 * and consume once connected.
 */
/** One round of waiting for the broker; close() ends the waiting after the round. */
const CONNECT_ROUND_MS = 10_000;

export function connectOsloMessaging(settings: NeutronRpcSettings & { transport_url: string }, logger: Logger): RpcTransport {
  let closed = false;
  let current: OsloTransport | undefined;
  const listeners: (() => void)[] = [];
  // oslo waits for the broker forever; we try in rounds, so that close() can end the waiting.
  const connecting: Promise<OsloTransport> = (async () => {
    for (let round = 1; ; round++) {
      if (closed) throw new TransportClosedError("connect");
      try {
        const transport = await OsloTransport.connect({
          transportUrl: settings.transport_url,
          controlExchange: settings.control_exchange,
          rpcResponseTimeoutMs: settings.rpc_response_timeout * 1000,
          connectTimeoutMs: CONNECT_ROUND_MS,
          defaultContext: () => neutronAdminContext(),
          logger: logger.child({ component: "oslo.messaging" }),
          rabbit: {
            ssl: settings.rabbit_ssl,
            ...(settings.rabbit_ssl_ca_file ? { ssl_ca_file: settings.rabbit_ssl_ca_file } : {}),
            ...(settings.rabbit_ssl_cert_file ? { ssl_cert_file: settings.rabbit_ssl_cert_file } : {}),
            ...(settings.rabbit_ssl_key_file ? { ssl_key_file: settings.rabbit_ssl_key_file } : {}),
            heartbeat_timeout_threshold: settings.heartbeat_timeout_threshold,
          },
        });
        if (closed) {
          await transport.close();
          throw new TransportClosedError("connect");
        }
        transport.on("reconnected", () => listeners.forEach((l) => l()));
        current = transport;
        return transport;
      } catch (err) {
        // A bad URL or option does not get better by waiting.
        if (err instanceof TransportClosedError || !(err instanceof RpcConnectError)) throw err;
        logger.warn({ err, round }, "message broker not reachable yet; still trying");
      }
    }
  })();
  connecting.catch((err: unknown) => {
    if (!(err instanceof TransportClosedError)) logger.error({ err }, "cannot connect to the message broker");
  });

  const within = async <T>(timeoutMs: number | undefined, what: string, work: (t: OsloTransport) => Promise<T>): Promise<T> => {
    const limit = timeoutMs ?? settings.rpc_response_timeout * 1000;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new NotConnectedError(what, limit)), limit);
    });
    try {
      const transport = await Promise.race([connecting, late]);
      return await work(transport);
    } finally {
      clearTimeout(timer);
    }
  };

  return {
    call: (target, method, args, options) => within(options?.timeoutMs, `call ${method}`, (t) => t.call(target, method, args, { timeoutMs: options?.timeoutMs })),
    cast: (target, method, args) => within(undefined, `cast ${method}`, (t) => t.cast(target, method, args)),
    serve: async (target, endpoints) => {
      void connecting.then(
        (t) => (closed ? undefined : t.serve({ topic: target.topic, server: target.server }, [endpoint(target.version, endpoints)])),
        () => undefined,
      ).catch((err: unknown) => logger.error({ err, topic: target.topic }, "could not consume a topic"));
    },
    onReconnected: (listener) => void listeners.push(listener),
    connected: () => !closed && current?.connected === true,
    close: async () => {
      closed = true;
      const transport = await connecting.catch(() => undefined);
      await transport?.close();
    },
  };
}

function endpoint(version: string, endpoints: RpcEndpoints): RpcEndpoint {
  const methods: Record<string, RpcEndpoint["methods"][string]> = {};
  for (const [name, fn] of Object.entries(endpoints)) methods[name] = (_context, args) => fn(args);
  return { version, methods };
}
