export { RpcTransport, type RpcTarget, type CallOptions, type CastOptions, type RpcTransportOptions, type ReconnectedEvent, type DisconnectedEvent } from "./rpc-transport.js";
export { RpcClient, type ClientDefaults, type PrepareOptions } from "./rpc-client.js";
export { RpcServer, type ServeTarget, type ServeOptions } from "./rpc-server.js";
export { findMethod, type RpcEndpoint, type RpcMethod, type RpcRequest } from "./rpc-dispatcher.js";
export { parseTransportUrl, redactTransportUrl, type TransportUrl, type TransportHost } from "./transport-url.js";
export { resolveRabbitOptions, RABBIT_DEFAULTS, type RabbitOptions } from "./rabbit-options.js";
export { serializeMessage, deserializeMessage, ENVELOPE_VERSION, type RpcContext } from "./envelope.js";
export { serializeFailure, deserializeFailure, JAVASCRIPT_MODULE, type RemoteFailure } from "./remote-failure.js";
export { versionIsCompatible } from "./rpc-version.js";
export { neutronAdminContext } from "./neutron-context.js";
export {
  OsloMessagingError,
  InvalidTransportUrlError,
  InvalidRabbitOptionError,
  InvalidTargetError,
  RpcTimeoutError,
  RemoteError,
  RpcSendError,
  RpcDeclareError,
  RpcConnectError,
  TransportClosedError,
  RpcFailure,
  NoSuchMethodError,
  UnsupportedVersionError,
  type OsloMessagingErrorCode,
} from "./oslo-messaging-errors.js";
