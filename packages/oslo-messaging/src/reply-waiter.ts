import type { Channel, ConsumeMessage } from "amqplib";
import type { CoreLogger } from "@chainwarden/core";
import { consumeOptions, transientQueueOptions } from "./amqp-topology.js";
import { ChannelAttachment } from "./channel-attachment.js";
import { deserializeMessage, hexId } from "./envelope.js";
import { RpcTimeoutError, TransportClosedError } from "./oslo-messaging-errors.js";
import type { RabbitOptions } from "./rabbit-options.js";
import type { RabbitConnection } from "./rabbit-connection.js";
import { deserializeFailure } from "./remote-failure.js";

export interface WaitOptions {
  method: string;
  routingKey: string;
  exchange: string;
  timeoutMs: number;
  /** Epoch ms at which the call times out. */
  deadline: number;
  /** When set, the call also fails when no reply or heartbeat came for this long. */
  callMonitorTimeoutMs?: number;
}

interface Pending {
  options: WaitOptions;
  resolve(value: unknown): void;
  reject(error: unknown): void;
  timer: NodeJS.Timeout;
  monitor: NodeJS.Timeout | undefined;
  final: { result: unknown } | { failure: unknown } | undefined;
  lossesAtStart: number;
}

/**
 * The caller side of oslo's reply protocol (`ReplyWaiter` of the AMQP driver): one reply queue
 * `reply_<uuid>` per transport, declared when the first call is made and again on every
 * reconnection under the same name, so that a server answering while the connection was down still
 * reaches it (oslo keeps it for `rabbit_transient_queues_ttl` unused).
 *
 * A reply is `{_msg_id, result, failure, ending}`. oslo 14 servers send one message with
 * `ending: true`; older ones sent the result first and an empty `ending` message after it; a server
 * whose caller asked for a call monitor (`_timeout`) sends `{result: null, failure: null,
 * ending: false}` heartbeats while the method runs. So: a non-null result or a failure is kept as
 * the answer, a message with neither and no ending is a heartbeat (it renews the call-monitor
 * timer), and the call settles on `ending`.
 */
export class ReplyWaiter extends ChannelAttachment {
  readonly queue = `reply_${hexId()}`;
  private readonly pending = new Map<string, Pending>();
  private attaching: Promise<void> | undefined;
  private closed = false;

  constructor(connection: RabbitConnection, rabbit: RabbitOptions, log: CoreLogger) {
    super("reply queue", connection, rabbit, log);
  }

  /** Declares the reply queue and consumes it (once; again after a failure). */
  ensure(): Promise<void> {
    if (this.closed) return Promise.reject(new TransportClosedError("call"));
    if (!this.attaching) {
      this.attaching = this.connection.addAttachment(this);
      this.attaching.catch(() => (this.attaching = undefined));
    }
    return this.attaching;
  }

  protected async setup(channel: Channel): Promise<void> {
    await channel.assertQueue(this.queue, transientQueueOptions(this.rabbit));
    await channel.consume(this.queue, this.consumer(this.queue, (message, ch) => this.onReply(message, ch)), consumeOptions(this.rabbit));
  }

  /**
   * Registers a call before its request is published (a fast server must not find nobody
   * waiting). Resolves with the result, rejects with `RemoteError` or `RpcTimeoutError`.
   */
  wait(msgId: string, options: WaitOptions): Promise<unknown> {
    if (this.closed) return Promise.reject(new TransportClosedError(`call ${options.method}`));
    return new Promise((resolve, reject) => {
      const pending: Pending = {
        options,
        resolve,
        reject,
        final: undefined,
        lossesAtStart: this.connection.losses,
        timer: setTimeout(() => this.timeOut(msgId, false), Math.max(0, options.deadline - Date.now())),
        monitor: undefined,
      };
      this.pending.set(msgId, pending);
      this.restartMonitor(msgId, pending);
    });
  }

  /** Forgets a call whose request could not be sent. */
  cancel(msgId: string): void {
    const pending = this.pending.get(msgId);
    if (!pending) return;
    this.pending.delete(msgId);
    clearTimeout(pending.timer);
    clearTimeout(pending.monitor);
  }

  get waiting(): number {
    return this.pending.size;
  }

  /** Rejects every pending call, stops consuming and deletes the reply queue (no one will read it again). */
  async close(): Promise<void> {
    this.closed = true;
    for (const [msgId, pending] of [...this.pending]) {
      this.cancel(msgId);
      pending.reject(new TransportClosedError(`call ${pending.options.method} to topic ${pending.options.routingKey}`));
    }
    this.connection.removeAttachment(this);
    const channel = this.channel;
    if (channel && this.attaching) await channel.deleteQueue(this.queue).catch(() => undefined);
    await this.closeChannel();
  }

  private onReply(message: ConsumeMessage, channel: Channel): void {
    channel.ack(message);
    let data: Record<string, unknown>;
    try {
      data = deserializeMessage(message.content);
    } catch (error) {
      this.log.warn({ queue: this.queue, err: error }, "dropping a reply that is not an oslo message");
      return;
    }
    const msgId = data._msg_id;
    delete data._msg_id;
    delete data._unique_id;
    const pending = typeof msgId === "string" ? this.pending.get(msgId) : undefined;
    if (!pending) {
      this.log.info({ msgId }, "no call waiting for this reply (timed out or cancelled)");
      return;
    }
    const ending = data.ending === true;
    if (data.failure !== undefined && data.failure !== null && data.failure !== "") {
      pending.final = { failure: data.failure };
    } else if (data.result !== undefined && data.result !== null) {
      pending.final = { result: data.result };
    } else if (!ending) {
      this.log.debug({ msgId, method: pending.options.method }, "call-monitor heartbeat received; renewing the timer");
      this.restartMonitor(msgId as string, pending);
    }
    if (!ending) return;
    this.cancel(msgId as string);
    const final = pending.final;
    if (final && "failure" in final) {
      pending.reject(deserializeFailure(final.failure, { method: pending.options.method, topic: pending.options.routingKey }));
    } else {
      pending.resolve(final ? final.result : null);
    }
  }

  private restartMonitor(msgId: string, pending: Pending): void {
    clearTimeout(pending.monitor);
    const ms = pending.options.callMonitorTimeoutMs;
    if (ms !== undefined && ms > 0) pending.monitor = setTimeout(() => this.timeOut(msgId, true), ms);
  }

  private timeOut(msgId: string, callMonitor: boolean): void {
    const pending = this.pending.get(msgId);
    if (!pending) return;
    this.cancel(msgId);
    const o = pending.options;
    pending.reject(
      new RpcTimeoutError(o.method, o.routingKey, o.exchange, callMonitor ? o.callMonitorTimeoutMs! : o.timeoutMs, msgId, this.connection.losses !== pending.lossesAtStart, callMonitor),
    );
  }
}
