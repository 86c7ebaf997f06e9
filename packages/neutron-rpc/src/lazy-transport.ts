import type { RpcTransport } from "./rpc-transport.js";

/** The connection is made when the source starts (a `plan` without `transport_url` never connects). */
export function lazyTransport(make: () => RpcTransport): RpcTransport {
  let rpc: RpcTransport | undefined;
  const get = () => (rpc ??= make());
  return {
    call: (target, method, args, options) => get().call(target, method, args, options),
    cast: (target, method, args) => get().cast(target, method, args),
    serve: (target, endpoints) => get().serve(target, endpoints),
    onReconnected: (listener) => get().onReconnected(listener),
    // Not made yet: not connected.
    connected: () => (rpc ? rpc.connected?.() : false),
    close: async () => {
      await rpc?.close();
    },
  };
}
