import { EventEmitter } from "node:events";
import { silentLogger, type CoreLogger } from "@chainwarden/core";
import { fanoutExchange, topicExchange } from "./amqp-topology.js";
import { hexId, MESSAGE_PROPERTIES, packContext, serializeMessage, type RpcContext } from "./envelope.js";
import { InvalidTargetError, RpcConnectError, RpcDeclareError, RpcSendError, TransportClosedError } from "./oslo-messaging-errors.js";
import { resolveRabbitOptions, type RabbitOptions } from "./rabbit-options.js";
import { NotReadyError, RabbitConnection, type PublishRequest } from "./rabbit-connection.js";
import { ReplyWaiter } from "./reply-waiter.js";
import { RpcClient, type ClientDefaults } from "./rpc-client.js";
import type { RpcEndpoint } from "./rpc-dispatcher.js";
import { RpcServer, type ServeOptions, type ServeTarget } from "./rpc-server.js";
import { describeHosts, parseTransportUrl, type TransportUrl } from "./transport-url.js";

/** Where a call or cast goes: oslo's `Target` as a client uses it. */
export interface RpcTarget {
  topic: string;
  /** Send to this server only (routing key `<topic>.<server>`). */
  server?: string;
  /** Cast to every server of the topic (exchange `<topic>_fanout`); calls cannot fan out. */
  fanout?: boolean;
  /** The `major.minor` version the request needs from the server's endpoint. */
  version?: string;
  /** The endpoint namespace; absent or `null`: the null namespace (all of neutron 21's agent APIs are in it). */
  namespace?: string | null;
  /** The topic exchange; default: the transport's control exchange. Ignored by fanout casts, as in oslo. */
  exchange?: string;
}

export interface CallOptions {
  /** How long to wait for the reply, including for a connection; default `rpcResponseTimeoutMs`. */
  timeoutMs?: number;
  /** Sent as `_context_*`; default the transport's `defaultContext()`. */
  context?: RpcContext;
  /** Ask the server for heartbeats (oslo's `call_monitor_timeout`): fail when none came for this long. Whole seconds, at least 2 s, for a Python server to send them. */
  callMonitorTimeoutMs?: number;
}

export interface CastOptions {
  /** How long to wait for a connection and the broker's confirm; default `rpcResponseTimeoutMs`. */
  timeoutMs?: number;
  context?: RpcContext;
}

export interface RpcTransportOptions {
  /** oslo's `transport_url`: `rabbit://user:pass@host:5672[,user:pass@host2:5672]/vhost?option=value`. */
  transportUrl: string;
  /** oslo's `control_exchange`: neutron sets `neutron`; oslo's default is `openstack`. */
  controlExchange?: string;
  /** The `[oslo_messaging_rabbit]` section; the URL's query overrides it, as in oslo. */
  rabbit?: Partial<RabbitOptions>;
  /** A pino logger or anything with its call shape; nothing is logged without one. */
  logger?: CoreLogger;
  /** oslo's `rpc_response_timeout` in ms: the default call timeout. Default 60000. */
  rpcResponseTimeoutMs?: number;
  /** How long `connect` waits for the first connection before failing. Default 60000; `Infinity` waits as oslo does. */
  connectTimeoutMs?: number;
  /** Bound on one connection attempt to one host. Default 10000. */
  attemptTimeoutMs?: number;
  /** The context of calls and casts that give none. Default `{}`; neutron agents send an admin context (`neutronAdminContext`). */
  defaultContext?: () => RpcContext;
}

/** The listening connection is back and every server and the reply queue consume again. */
export interface ReconnectedEvent {
  host: string;
}

export interface DisconnectedEvent {
  host: string;
  error: Error | undefined;
}

/**
 * An oslo.messaging RPC transport over RabbitMQ (the `rabbit` driver of oslo.messaging 14): calls,
 * casts and fanout casts to Python services, and servers that Python clients call.
 *
 * Two AMQP connections, as oslo separates them by purpose: one sends (requests, casts, replies,
 * with publisher confirms), one listens (the reply queue and the servers' consumers), so that a
 * broker blocking publishers never stops consumers and acks. Both reconnect on their own; the
 * listening one emits `reconnected` once everything consumes again. Messages cast while it was away
 * may be lost (non-durable queues die with a broker restart), so that is the moment to resync.
 */
export class RpcTransport extends EventEmitter<{ reconnected: [ReconnectedEvent]; disconnected: [DisconnectedEvent] }> {
  readonly url: TransportUrl;
  readonly controlExchange: string;
  readonly rabbit: RabbitOptions;
  readonly rpcResponseTimeoutMs: number;
  private readonly send: RabbitConnection;
  private readonly listen: RabbitConnection;
  private readonly replies: ReplyWaiter;
  private readonly servers = new Set<RpcServer>();
  private readonly log: CoreLogger;
  private readonly defaultContext: () => RpcContext;
  private closing: Promise<void> | undefined;

  private constructor(options: RpcTransportOptions) {
    super();
    this.url = parseTransportUrl(options.transportUrl);
    this.rabbit = resolveRabbitOptions(options.rabbit, this.url.query);
    this.controlExchange = options.controlExchange ?? "openstack";
    this.rpcResponseTimeoutMs = options.rpcResponseTimeoutMs ?? 60_000;
    this.log = options.logger ?? silentLogger;
    this.defaultContext = options.defaultContext ?? (() => ({}));
    const common = { url: this.url, rabbit: this.rabbit, logger: this.log, attemptTimeoutMs: options.attemptTimeoutMs ?? 10_000 };
    this.send = new RabbitConnection({ ...common, purpose: "send" });
    this.listen = new RabbitConnection({ ...common, purpose: "listen" });
    this.replies = new ReplyWaiter(this.listen, this.rabbit, this.log);
    this.listen.on("connected", ({ host, reconnect }) => {
      if (reconnect) this.emit("reconnected", { host });
    });
    this.listen.on("disconnected", (event) => this.emit("disconnected", event));
  }

  /**
   * Parses the URL and options (throwing `InvalidTransportUrlError`/`InvalidRabbitOptionError`),
   * connects, and resolves once both connections are up; `RpcConnectError` when no host answered
   * within `connectTimeoutMs`.
   */
  static async connect(options: RpcTransportOptions): Promise<RpcTransport> {
    const transport = new RpcTransport(options);
    const timeoutMs = options.connectTimeoutMs ?? 60_000;
    const deadline = Date.now() + timeoutMs;
    transport.send.start();
    transport.listen.start();
    try {
      await Promise.all([transport.send.waitReady(deadline, "connect"), transport.listen.waitReady(deadline, "connect")]);
    } catch (error) {
      const last = transport.send.lastError ?? transport.listen.lastError;
      await transport.close();
      if (error instanceof NotReadyError) throw new RpcConnectError(describeHosts(transport.url), timeoutMs, last);
      throw error;
    }
    return transport;
  }

  /** Both connections (sending and listening) are up, and the transport is not closing. */
  get connected(): boolean {
    return !this.closing && this.send.isReady && this.listen.isReady;
  }

  /** The host the listening connection is on (`host:port`), `undefined` while disconnected. */
  get host(): string | undefined {
    return this.listen.isReady ? this.listen.host : undefined;
  }

  /**
   * Calls `method` on a server of the target's topic and resolves with its result. Rejects with
   * `RemoteError` when the method raised, `RpcTimeoutError` when no reply came within the timeout
   * (the request was sent and may still run), `RpcSendError` when the request could not be sent
   * in that time (not connected), `InvalidTargetError` for a fanout target.
   *
   * A call pending while the connection drops is neither failed nor resent (as oslo): its reply
   * queue is declared again under the same name on the new connection, and the reply still arrives
   * if the server sends it in time; otherwise the timeout says the connection was lost meanwhile.
   */
  async call<T = unknown>(target: RpcTarget, method: string, args: Record<string, unknown> = {}, options: CallOptions = {}): Promise<T> {
    checkTarget(target);
    if (target.fanout) throw new InvalidTargetError("a call cannot be used with fanout", `topic/${target.topic}`);
    if (this.closing) throw new TransportClosedError(`call ${method}`);
    const timeoutMs = options.timeoutMs ?? this.rpcResponseTimeoutMs;
    const deadline = Date.now() + timeoutMs;
    const exchange = target.exchange ?? this.controlExchange;
    const routingKey = target.server ? `${target.topic}.${target.server}` : target.topic;
    await this.ensureReplyQueue(exchange, routingKey, deadline);

    const msgId = hexId();
    const monitorMs = options.callMonitorTimeoutMs;
    const message = this.request(target, method, args, options.context);
    Object.assign(message, { _msg_id: msgId, _reply_q: this.replies.queue, _timeout: monitorMs ? Math.ceil(monitorMs / 1000) : null });
    const reply = this.replies.wait(msgId, { method, routingKey, exchange, timeoutMs, deadline, ...(monitorMs ? { callMonitorTimeoutMs: monitorMs } : {}) });
    // Settled later by the await below; a timeout while still sending must not count as unhandled.
    reply.catch(() => undefined);
    this.log.debug({ msgId, method, exchange, routingKey }, "CALL");
    try {
      // The request expires with the call, as oslo sets it, but counting only the time left.
      await this.publish({ exchange: topicExchange(exchange, this.rabbit), routingKey, body: serializeMessage(message), properties: { ...MESSAGE_PROPERTIES, expiration: String(Math.max(1, deadline - Date.now())) } }, deadline);
    } catch (error) {
      this.replies.cancel(msgId);
      throw error;
    }
    return (await reply) as T;
  }

  /**
   * Sends `method` without waiting for a result: to one server of the topic, to the named server,
   * or (`fanout: true`) to every server of the topic. Resolves once the broker confirmed it;
   * `RpcSendError` when that did not happen within the timeout. A message to a topic no server
   * consumes is dropped by the broker, as with oslo.
   */
  async cast(target: RpcTarget, method: string, args: Record<string, unknown> = {}, options: CastOptions = {}): Promise<void> {
    checkTarget(target);
    if (this.closing) throw new TransportClosedError(`cast ${method}`);
    const deadline = Date.now() + (options.timeoutMs ?? this.rpcResponseTimeoutMs);
    const body = serializeMessage(this.request(target, method, args, options.context));
    if (target.fanout) {
      this.log.debug({ method, topic: target.topic }, "CAST FANOUT");
      await this.publish({ exchange: fanoutExchange(target.topic), routingKey: "", body, properties: { ...MESSAGE_PROPERTIES } }, deadline);
      return;
    }
    const exchange = target.exchange ?? this.controlExchange;
    const routingKey = target.server ? `${target.topic}.${target.server}` : target.topic;
    this.log.debug({ method, exchange, routingKey }, "CAST");
    await this.publish({ exchange: topicExchange(exchange, this.rabbit), routingKey, body, properties: { ...MESSAGE_PROPERTIES } }, deadline);
  }

  /**
   * Serves `endpoints` as an oslo RPC server on `<topic>`, `<topic>.<server>` and `<topic>_fanout`.
   * Resolves once it consumes (waiting for the connection if it is down); rejects with
   * `RpcDeclareError` when the broker refuses its queues (e.g. declared elsewhere with other flags). It keeps consuming across
   * reconnections until `stop()` or `close()`.
   */
  async serve(target: ServeTarget, endpoints: readonly RpcEndpoint[], options: ServeOptions = {}): Promise<RpcServer> {
    if (this.closing) throw new TransportClosedError(`serve ${target.topic}`);
    const server: RpcServer = new RpcServer(
      target,
      endpoints,
      {
        connection: this.listen,
        sendReply: (replyQueue, payload, deadline) =>
          this.send.publish({ exchange: null, routingKey: replyQueue, body: serializeMessage(payload), properties: { ...MESSAGE_PROPERTIES }, mandatory: true }, deadline),
        controlExchange: this.controlExchange,
        rabbit: this.rabbit,
        log: this.log,
        onStop: () => this.servers.delete(server),
      },
      options,
    );
    try {
      await this.listen.addAttachment(server);
    } catch (error) {
      if (error instanceof TransportClosedError) throw error;
      throw new RpcDeclareError(`RPC server ${server.topic}.${server.server} (queues ${server.queues.join(", ")} on exchange ${server.exchange})`, error);
    }
    this.servers.add(server);
    this.log.info({ topic: server.topic, server: server.server, exchange: server.exchange }, "RPC server consuming");
    return server;
  }

  /** A client bound to a target, with oslo's `prepare()` to vary it per call. */
  client(target: RpcTarget, defaults: ClientDefaults = {}): RpcClient {
    return new RpcClient(this, target, defaults);
  }

  /** Stops every server (letting running requests finish), fails pending calls, closes both connections. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await Promise.allSettled([...this.servers].map((s) => s.stop()));
      await this.replies.close().catch(() => undefined);
      await Promise.all([this.listen.close(), this.send.close()]);
    })();
    return this.closing;
  }

  private async ensureReplyQueue(exchange: string, routingKey: string, deadline: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.replies.ensure().catch((error: unknown) => {
          throw error instanceof TransportClosedError ? error : new RpcDeclareError(`reply queue ${this.replies.queue}`, error);
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new RpcSendError(exchange, routingKey, "the reply queue could not be set up in time: not connected to a broker", this.listen.lastError)), Math.max(0, deadline - Date.now()));
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  private publish(request: PublishRequest, deadline: number): Promise<"ok" | "returned"> {
    return this.send.publish(request, deadline);
  }

  /** The message oslo's `_make_message` and `pack_context` build (namespace and version only when set). */
  private request(target: RpcTarget, method: string, args: Record<string, unknown>, context: RpcContext | undefined): Record<string, unknown> {
    const message: Record<string, unknown> = { method, args };
    if (target.namespace !== undefined && target.namespace !== null) message.namespace = target.namespace;
    if (target.version !== undefined) message.version = target.version;
    message._unique_id = hexId();
    packContext(message, context ?? this.defaultContext());
    return message;
  }
}

function checkTarget(target: RpcTarget): void {
  if (!target || typeof target.topic !== "string" || !target.topic) throw new InvalidTargetError("a topic is required");
}
