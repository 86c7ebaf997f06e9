import { ChainwardenError } from "@chainwarden/core";

export type OsloMessagingErrorCode =
  | "INVALID_TRANSPORT_URL"
  | "INVALID_RABBIT_OPTION"
  | "INVALID_TARGET"
  | "RPC_TIMEOUT"
  | "RPC_REMOTE_ERROR"
  | "RPC_SEND_FAILED"
  | "RPC_DECLARE_FAILED"
  | "RPC_CONNECT_FAILED"
  | "RPC_TRANSPORT_CLOSED"
  | "RPC_ENDPOINT_FAILURE"
  | "RPC_NO_SUCH_METHOD"
  | "RPC_UNSUPPORTED_VERSION";

/**
 * Errors of the oslo.messaging client and server (`ChainwardenError`s): a stable `code`, the RPC
 * target or URL part they are about, and the cause. None of them ever carries a password: URLs are
 * only named by their hosts.
 */
export class OsloMessagingError extends ChainwardenError<OsloMessagingErrorCode> {
  constructor(code: OsloMessagingErrorCode, message: string, options: { cause?: unknown; resource?: string } = {}) {
    super(code, message, options);
  }
}

/** A `transport_url` oslo.messaging would refuse, or one this client cannot use; says which part is wrong. */
export class InvalidTransportUrlError extends OsloMessagingError {
  constructor(
    /** The URL with every password replaced by `***`. */
    readonly url: string,
    readonly reason: string,
  ) {
    super("INVALID_TRANSPORT_URL", `invalid transport_url ${url}: ${reason}`);
  }
}

/** An `[oslo_messaging_rabbit]` option (in the URL's query or the options) with a value oslo would refuse. */
export class InvalidRabbitOptionError extends OsloMessagingError {
  constructor(
    readonly option: string,
    readonly reason: string,
  ) {
    super("INVALID_RABBIT_OPTION", `invalid [oslo_messaging_rabbit] ${option}: ${reason}`);
  }
}

/** A target that cannot be used for what was asked (a call to a fanout target, a server without a name, ...). */
export class InvalidTargetError extends OsloMessagingError {
  constructor(reason: string, resource?: string) {
    super("INVALID_TARGET", `invalid RPC target${resource ? ` ${resource}` : ""}: ${reason}`, resource === undefined ? {} : { resource });
  }
}

/**
 * No reply came for a call within its timeout. As with oslo.messaging, the request may still be
 * processed by a server later: a call is never resent. `connectionLost` says whether the broker
 * connection dropped while the call waited (the request or its reply may have been lost with it).
 */
export class RpcTimeoutError extends OsloMessagingError {
  constructor(
    readonly method: string,
    /** The routing key the request was sent with: `<topic>` or `<topic>.<server>`. */
    readonly topic: string,
    readonly exchange: string,
    readonly timeoutMs: number,
    readonly msgId: string,
    readonly connectionLost: boolean,
    /** Set when the call-monitor timeout, not the overall timeout, expired (no heartbeat from the server). */
    readonly callMonitor = false,
  ) {
    super(
      "RPC_TIMEOUT",
      `RPC call ${method} to topic ${topic} (exchange ${exchange}) got no ${callMonitor ? "heartbeat" : "reply"} within ${timeoutMs} ms (msg_id ${msgId})` +
        (connectionLost ? "; the broker connection was lost while it waited, the request or its reply may be gone with it" : ""),
      { resource: `topic/${topic}` },
    );
  }
}

/**
 * The server's endpoint raised: the remote exception's class and module as oslo.messaging reports
 * them (`ValueError`/`builtins`, `NoSuchMethod`/`oslo_messaging.rpc.dispatcher`, ...), its message,
 * traceback lines, and its constructor `args`/`kwargs`.
 */
export class RemoteError extends OsloMessagingError {
  constructor(
    readonly className: string,
    readonly module: string,
    readonly remoteMessage: string,
    readonly traceback: readonly string[],
    readonly args: readonly unknown[],
    readonly kwargs: Readonly<Record<string, unknown>>,
    /** What was called: `<method> on topic <routing key>`. */
    readonly call?: { method: string; topic: string },
  ) {
    super(
      "RPC_REMOTE_ERROR",
      `remote ${module ? `${module}.` : ""}${className}${call ? ` from ${call.method} on topic ${call.topic}` : ""}: ${remoteMessage}`,
      call === undefined ? {} : { resource: `topic/${call.topic}` },
    );
  }
}

/** A message could not be handed to the broker (not connected in time, refused, or nacked). */
export class RpcSendError extends OsloMessagingError {
  constructor(
    readonly exchange: string,
    readonly routingKey: string,
    reason: string,
    cause?: unknown,
  ) {
    super("RPC_SEND_FAILED", `could not send to exchange ${JSON.stringify(exchange)} with routing key ${JSON.stringify(routingKey)}: ${reason}`, {
      cause,
      resource: `topic/${routingKey}`,
    });
  }
}

/** The broker refused to declare or consume a queue or exchange (e.g. one that exists with other flags). */
export class RpcDeclareError extends OsloMessagingError {
  constructor(
    readonly what: string,
    cause: unknown,
  ) {
    super("RPC_DECLARE_FAILED", `cannot set up ${what}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

/** The first connection to the broker did not succeed in time; names every host tried (never a password). */
export class RpcConnectError extends OsloMessagingError {
  constructor(
    readonly hosts: readonly string[],
    readonly timeoutMs: number,
    cause?: unknown,
  ) {
    super(
      "RPC_CONNECT_FAILED",
      `could not connect to any RabbitMQ host (${hosts.join(", ")}) within ${timeoutMs} ms` +
        (cause instanceof Error ? `; last error: ${cause.message}` : ""),
      { cause },
    );
  }
}

/** The transport was closed: pending calls, sends and servers end with this. */
export class TransportClosedError extends OsloMessagingError {
  constructor(what: string) {
    super("RPC_TRANSPORT_CLOSED", `${what}: the RPC transport is closed`);
  }
}

/**
 * Thrown by an endpoint to send a failure of a given Python class: a Python oslo.messaging client
 * rebuilds it as that exception when `module` is `builtins` or one of its `allowed_remote_exmods`
 * (e.g. `new RpcFailure("ValueError", "builtins", "bad host")`), and as `oslo_messaging.RemoteError`
 * otherwise. Any other error an endpoint throws is sent with its JavaScript class name and the
 * module `chainwarden`, which Python clients see as a `RemoteError`.
 */
export class RpcFailure extends OsloMessagingError {
  readonly args: readonly unknown[];
  readonly kwargs: Readonly<Record<string, unknown>>;
  constructor(
    readonly className: string,
    readonly module: string,
    message: string,
    options: { args?: readonly unknown[]; kwargs?: Record<string, unknown>; cause?: unknown } = {},
  ) {
    super("RPC_ENDPOINT_FAILURE", message, options.cause === undefined ? {} : { cause: options.cause });
    this.args = options.args ?? [message];
    this.kwargs = options.kwargs ?? {};
  }
}

/** No endpoint compatible with the request's namespace and version has the method (oslo's `NoSuchMethod`). */
export class NoSuchMethodError extends OsloMessagingError {
  constructor(readonly method: string) {
    super("RPC_NO_SUCH_METHOD", `Endpoint does not support RPC method ${method}`);
  }
}

/** No endpoint serves the request's namespace and version (oslo's `UnsupportedVersion`). */
export class UnsupportedVersionError extends OsloMessagingError {
  constructor(
    readonly version: string,
    readonly method: string | undefined,
  ) {
    super("RPC_UNSUPPORTED_VERSION", `Endpoint does not support RPC version ${version}${method ? `. Attempted method: ${method}` : ""}`);
  }
}
