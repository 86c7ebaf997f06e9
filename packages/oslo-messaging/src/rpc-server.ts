import type { Channel, ConsumeMessage } from "amqplib";
import type { CoreLogger } from "@chainwarden/core";
import { consumeOptions, fanoutExchange, topicExchange, topicQueueOptions, transientQueueOptions } from "./amqp-topology.js";
import { ChannelAttachment } from "./channel-attachment.js";
import { DuplicateFilter } from "./duplicate-filter.js";
import { deserializeMessage, hexId, isObject, unpackContext, type RpcContext } from "./envelope.js";
import { InvalidTargetError, RpcFailure } from "./oslo-messaging-errors.js";
import type { RabbitOptions } from "./rabbit-options.js";
import type { RabbitConnection } from "./rabbit-connection.js";
import { serializeFailure } from "./remote-failure.js";
import { findMethod, type RpcEndpoint, type RpcRequest } from "./rpc-dispatcher.js";

/** Where a server listens: `<topic>`, `<topic>.<server>` and the fanout `<topic>_fanout`, on `exchange`. */
export interface ServeTarget {
  topic: string;
  /** This server's name, usually the host name (`<topic>.<server>` receives what is sent to it alone). */
  server: string;
  /** The topic exchange; default: the transport's control exchange. */
  exchange?: string;
}

export interface ServeOptions {
  /** How many requests run at once (oslo's `executor_thread_pool_size`); more wait in order. Default 64. */
  maxConcurrency?: number;
}

/** Sends a reply to a caller's reply queue; `returned` when the queue does not exist. */
export type ReplySender = (replyQueue: string, payload: Record<string, unknown>, deadline: number) => Promise<"ok" | "returned">;

/** What a server needs from its transport. */
export interface RpcServerDeps {
  /** The listening connection. */
  connection: RabbitConnection;
  sendReply: ReplySender;
  controlExchange: string;
  rabbit: RabbitOptions;
  log: CoreLogger;
  onStop?: () => void;
}

interface Incoming {
  data: Record<string, unknown>;
  context: RpcContext;
  msgId: string | null;
  replyQueue: string | null;
  clientTimeout: unknown;
  routingKey: string;
  fanout: boolean;
}

/** Reply queues found missing for longer than the retry timeout, not retried for a minute (oslo's `ObsoleteReplyQueuesCache`). */
const OBSOLETE_TTL_MS = 60_000;
const OBSOLETE_SIZE = 200;

/**
 * An oslo.messaging RPC server (the rabbit driver's listener with oslo's RPC dispatcher): it consumes
 * `<topic>` (shared with the topic's other servers, one of them gets each request),
 * `<topic>.<server>` (requests to this server) and its own queue on `<topic>_fanout` (every server
 * gets each fanout cast), declared as oslo declares them and again after every reconnection.
 *
 * Each request is acknowledged when it arrives, before it runs, as oslo does (a request is never
 * run twice; one in flight when the process dies is lost). It is dispatched to the first endpoint
 * whose namespace and version accept it (`findMethod`); a call's result, or its failure in oslo's
 * format, goes back to the caller's reply queue, retried every 250 ms while that queue is missing,
 * for `kombu_missing_consumer_retry_timeout` (the caller may be reconnecting). When the caller asked
 * for a call monitor (`_timeout`), a heartbeat reply is sent every `_timeout / 2` seconds while the
 * method runs.
 */
export class RpcServer extends ChannelAttachment {
  readonly topic: string;
  readonly server: string;
  readonly exchange: string;
  readonly fanoutQueue: string;
  private readonly dedup = new DuplicateFilter();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly waitingTurn: Array<() => void> = [];
  private readonly obsolete = new Map<string, number>();
  private readonly maxConcurrency: number;
  private consumerTags: string[] = [];
  private stopped: Promise<void> | undefined;
  private running = 0;

  private readonly sendReply: ReplySender;
  private readonly onStop: (() => void) | undefined;

  constructor(
    target: ServeTarget,
    private readonly endpoints: readonly RpcEndpoint[],
    deps: RpcServerDeps,
    options: ServeOptions = {},
  ) {
    if (!target.topic) throw new InvalidTargetError("a server needs a topic");
    if (!target.server) throw new InvalidTargetError("a server needs a server name (the host)", `topic/${target.topic}`);
    super(`rpc server ${target.topic}.${target.server}`, deps.connection, deps.rabbit, deps.log);
    this.sendReply = deps.sendReply;
    this.onStop = deps.onStop;
    this.topic = target.topic;
    this.server = target.server;
    this.exchange = target.exchange ?? deps.controlExchange;
    this.fanoutQueue = `${this.topic}_fanout_${hexId()}`;
    this.maxConcurrency = Math.max(1, options.maxConcurrency ?? 64);
  }

  /** The queues this server consumes. */
  get queues(): string[] {
    return [this.topic, `${this.topic}.${this.server}`, this.fanoutQueue];
  }

  protected async setup(channel: Channel): Promise<void> {
    const topic = topicExchange(this.exchange, this.rabbit);
    await channel.assertExchange(topic.name, topic.type, { durable: topic.durable, autoDelete: topic.autoDelete });
    const fanout = fanoutExchange(this.topic);
    await channel.assertExchange(fanout.name, fanout.type, { durable: fanout.durable, autoDelete: fanout.autoDelete });
    const tags: string[] = [];
    for (const queue of [this.topic, `${this.topic}.${this.server}`]) {
      await channel.assertQueue(queue, topicQueueOptions(this.rabbit));
      await channel.bindQueue(queue, topic.name, queue);
      const { consumerTag } = await channel.consume(queue, this.consumer(queue, (m, ch) => this.onMessage(m, ch, false)), consumeOptions(this.rabbit));
      tags.push(consumerTag);
    }
    await channel.assertQueue(this.fanoutQueue, transientQueueOptions(this.rabbit));
    await channel.bindQueue(this.fanoutQueue, fanout.name, this.topic);
    const { consumerTag } = await channel.consume(this.fanoutQueue, this.consumer(this.fanoutQueue, (m, ch) => this.onMessage(m, ch, true)), consumeOptions(this.rabbit));
    tags.push(consumerTag);
    this.consumerTags = tags;
  }

  /**
   * Stops consuming, lets the requests already received finish (and their replies go out), deletes
   * this server's fanout queue (as oslo does on close) and forgets the server on the connection.
   */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.onStop?.();
      const channel = this.channel;
      if (channel) for (const tag of this.consumerTags) await channel.cancel(tag).catch(() => undefined);
      this.connection.removeAttachment(this);
      while (this.inFlight.size) await Promise.allSettled([...this.inFlight]);
      if (this.channel) await this.channel.deleteQueue(this.fanoutQueue).catch(() => undefined);
      await this.closeChannel();
    })();
    return this.stopped;
  }

  private onMessage(message: ConsumeMessage, channel: Channel, fanout: boolean): void {
    let data: Record<string, unknown>;
    try {
      data = deserializeMessage(message.content);
    } catch (error) {
      // oslo rejects (drops) a message its driver cannot read.
      this.log.error({ topic: this.topic, routingKey: message.fields.routingKey, err: error }, "dropping a message that is not an oslo RPC message");
      channel.reject(message, false);
      return;
    }
    channel.ack(message);
    if (this.dedup.isDuplicate(data)) {
      this.log.warn({ topic: this.topic, method: data.method }, "ignoring a duplicate message");
      return;
    }
    const { context, msgId, replyQueue, clientTimeout } = unpackContext(data);
    const incoming: Incoming = { data, context, msgId, replyQueue, clientTimeout, routingKey: fanout ? this.topic : message.fields.routingKey, fanout };
    const task = this.takeTurn()
      .then(() => this.handle(incoming))
      .catch((error: unknown) => this.log.error({ topic: this.topic, err: error }, "failed to handle a message"))
      .finally(() => this.releaseTurn());
    this.inFlight.add(task);
    void task.finally(() => this.inFlight.delete(task));
  }

  private async handle(incoming: Incoming): Promise<void> {
    const { data, context, msgId } = incoming;
    const method = typeof data.method === "string" ? data.method : "";
    const args = isObject(data.args) ? data.args : {};
    const namespace = typeof data.namespace === "string" ? data.namespace : null;
    const version = "version" in data ? (data.version as string) : "1.0";
    const request: RpcRequest = { method, namespace, version, routingKey: incoming.routingKey, isCall: msgId !== null, fanout: incoming.fanout };
    const watchdog = this.startWatchdog(incoming, method);
    let reply: Record<string, unknown>;
    try {
      const fn = findMethod(this.endpoints, method, namespace, version);
      const result = await fn(context, args, request);
      reply = { result: result === undefined ? null : result, failure: null };
      // A result JSON cannot carry is the method's failure, not a lost reply.
      JSON.stringify(reply);
    } catch (error) {
      const fields = { topic: this.topic, method, routingKey: incoming.routingKey, err: error };
      if (error instanceof RpcFailure) this.log.info(fields, "endpoint method failed");
      else this.log.error(fields, "exception during message handling");
      reply = { result: null, failure: serializeFailure(error) };
    } finally {
      clearInterval(watchdog);
    }
    if (msgId !== null && incoming.replyQueue !== null) await this.reply(incoming, method, { ...reply, ending: true });
  }

  /** oslo's call-monitor watchdog: heartbeats every `_timeout / 2` seconds while a call runs. */
  private startWatchdog(incoming: Incoming, method: string): NodeJS.Timeout | undefined {
    if (incoming.msgId === null || !incoming.clientTimeout) return undefined;
    const seconds = Math.trunc(Number(incoming.clientTimeout));
    if (!Number.isFinite(seconds) || seconds / 2 < 1) {
      this.log.warn({ topic: this.topic, method, clientTimeout: incoming.clientTimeout }, "client provided an invalid call-monitor timeout");
      return undefined;
    }
    return setInterval(() => {
      this.log.debug({ topic: this.topic, method }, "sending a call-monitor heartbeat");
      void this.reply(incoming, method, { result: null, failure: null, ending: false }, true);
    }, (seconds / 2) * 1000);
  }

  private async reply(incoming: Incoming, method: string, body: Record<string, unknown>, heartbeat = false): Promise<void> {
    const replyQueue = incoming.replyQueue!;
    const gone = this.obsolete.get(replyQueue);
    if (gone !== undefined && gone > Date.now()) {
      this.log.warn({ replyQueue, msgId: incoming.msgId }, "reply queue does not exist; dropping the reply");
      return;
    }
    const payload = { ...body, _msg_id: incoming.msgId, _unique_id: hexId() };
    const deadline = Date.now() + this.rabbit.kombu_missing_consumer_retry_timeout * 1000;
    for (;;) {
      let outcome: "ok" | "returned" | "failed";
      try {
        outcome = await this.sendReply(replyQueue, payload, deadline);
      } catch (error) {
        this.log.error({ replyQueue, msgId: incoming.msgId, method, err: error }, heartbeat ? "could not send a call-monitor heartbeat" : "could not send a reply");
        outcome = "failed";
      }
      if (outcome === "ok" || heartbeat || outcome === "failed") return;
      if (Date.now() >= deadline) {
        this.markObsolete(replyQueue);
        this.log.error({ replyQueue, msgId: incoming.msgId, method, retriedForS: this.rabbit.kombu_missing_consumer_retry_timeout }, "reply queue still missing; abandoning the reply");
        return;
      }
      this.log.debug({ replyQueue, msgId: incoming.msgId }, "reply queue missing; retrying the reply");
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  private markObsolete(replyQueue: string): void {
    const now = Date.now();
    for (const [queue, until] of this.obsolete) if (until <= now) this.obsolete.delete(queue);
    if (this.obsolete.size >= OBSOLETE_SIZE) this.obsolete.delete(this.obsolete.keys().next().value!);
    this.obsolete.set(replyQueue, now + OBSOLETE_TTL_MS);
  }

  private takeTurn(): Promise<void> {
    if (this.running < this.maxConcurrency) {
      this.running++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waitingTurn.push(() => (this.running++, resolve())));
  }

  private releaseTurn(): void {
    this.running--;
    this.waitingTurn.shift()?.();
  }
}
