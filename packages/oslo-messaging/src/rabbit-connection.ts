/**
 * One AMQP connection that stays up: it connects to the first host of the transport URL that
 * answers (trying the others in turn when one fails), and when the connection is lost (broker
 * restart, `rabbitmqctl close_connection`, a missed heartbeat) it reconnects with a bounded,
 * jittered exponential backoff and *restores* what was built on it before anyone may use it again.
 *
 * What is built on it are attachments: a reply queue and its consumer, an RPC server's three queues
 * and consumers. Each attachment declares its exchanges and queues and starts its consumers on a
 * fresh connection, every time one is made, in the order they were added. Only when all are back
 * does the connection count as ready again and emit `connected` with `reconnect: true`, so a
 * listener that resyncs on that event knows its consumers already receive.
 *
 * Invariants: at most one live AMQP connection per instance; `ready` implies every attachment that
 * was ever attached is attached to the current connection; a new attachment whose declaration fails
 * on a live connection is refused (its caller gets the broker's error) rather than retried forever,
 * whereas a restored one that fails makes the whole connection start again with backoff (a broker
 * that is half up). Publishing waits for `ready` up to the caller's deadline and, when the connection
 * drops before the broker confirmed, publishes again on the next one (at least once, as oslo's
 * `ensure()`; receivers drop duplicates by `_unique_id`).
 */
import { EventEmitter } from "node:events";
import { hostname as osHostname } from "node:os";
import { basename } from "node:path";
import { connect, credentials, type ChannelModel, type ConfirmChannel, type Options } from "amqplib";
import type { CoreLogger } from "@chainwarden/core";
import { hexId } from "./envelope.js";
import { InvalidRabbitOptionError, RpcSendError, TransportClosedError } from "./oslo-messaging-errors.js";
import type { RabbitOptions } from "./rabbit-options.js";
import { RECONNECT_JITTER, reconnectDelayMs } from "./reconnect-delay.js";
import { tlsOptions } from "./tls-options.js";
import { unquote, type TransportUrl } from "./transport-url.js";

export type ConnectionPurpose = "send" | "listen";

/** Something declared and consumed on the connection, restored on every new connection. */
export interface Attachment {
  readonly name: string;
  /** Declares exchanges and queues and starts consuming on a fresh connection. */
  attach(model: ChannelModel): Promise<void>;
  /** The connection is gone, and the channels with it. */
  detach(): void;
}

/** An exchange to declare before publishing to it (oslo declares on first use per connection). */
export interface ExchangeSpec {
  name: string;
  type: "topic" | "fanout" | "direct";
  durable: boolean;
  autoDelete: boolean;
}

export interface PublishRequest {
  /** `null`: the default exchange (replies), never declared. */
  exchange: ExchangeSpec | null;
  routingKey: string;
  body: Buffer;
  properties?: Options.Publish;
  /** Ask the broker to return the message when no queue takes it (replies: the caller's queue is gone). */
  mandatory?: boolean;
}

export interface ConnectedEvent {
  host: string;
  /** `false` for the first connection, `true` after a loss. */
  reconnect: boolean;
}

export interface DisconnectedEvent {
  host: string;
  error: Error | undefined;
}

export interface RabbitConnectionOptions {
  url: TransportUrl;
  rabbit: RabbitOptions;
  purpose: ConnectionPurpose;
  logger: CoreLogger;
  /** Bound on one connection attempt (TCP, TLS and the AMQP handshake). */
  attemptTimeoutMs: number;
}

interface Broker {
  hostname: string;
  port: number;
  username: string;
  password: string;
  label: string;
}

interface Entry {
  attachment: Attachment;
  attached: boolean;
  everAttached: boolean;
  settle?: { resolve(): void; reject(error: unknown): void };
}

export class RabbitConnection extends EventEmitter<{ connected: [ConnectedEvent]; disconnected: [DisconnectedEvent] }> {
  private readonly brokers: Broker[];
  private readonly vhost: string | undefined;
  private readonly log: CoreLogger;
  private readonly connectionName: string;
  private next = 0;
  private model: ChannelModel | undefined;
  private modelOpen = false;
  private ready = false;
  private closed = false;
  private everConnected = false;
  private loop: Promise<void> | undefined;
  private readonly entries: Entry[] = [];
  private readonly readyWaiters = new Set<() => void>();
  private wakeSleep: (() => void) | undefined;
  private publishChannel: Promise<ConfirmChannel> | undefined;
  private readonly declaredExchanges = new Set<string>();
  private readonly returned = new Set<string>();
  private readonly channelErrors = new WeakMap<ConfirmChannel, Error>();
  private attachChain: Promise<unknown> = Promise.resolve();
  /** The host of the current connection (`host:port`), for logs and events. */
  host: string | undefined;
  /** The last connection error, kept for the error a caller gets when nothing connects. */
  lastError: Error | undefined;
  /** Counts connections lost since the start; a caller compares it to tell whether a loss happened meanwhile. */
  losses = 0;

  constructor(private readonly options: RabbitConnectionOptions) {
    super();
    const { url, rabbit } = options;
    if (!["rabbit", "kombu"].includes(url.transport.split("+")[0]!)) {
      throw new InvalidRabbitOptionError("transport_url", `transport ${JSON.stringify(url.transport)} is not the rabbit driver (rabbit:// or kombu://)`);
    }
    if (rabbit.rabbit_login_method === "RABBIT-CR-DEMO") throw new InvalidRabbitOptionError("rabbit_login_method", "RABBIT-CR-DEMO is not supported");
    // oslo connects to guest:guest@localhost:5672 when the URL names no host.
    const hosts = url.hosts.length ? url.hosts : [{ hostname: "localhost", port: null, username: null, password: null }];
    this.brokers = hosts.map((h, i) => {
      if (h.hostname === null) throw new InvalidRabbitOptionError("transport_url", `host ${i + 1} has no host name`);
      // kombu fills an empty user or password with guest, and connects to 127.0.0.1 for localhost (IPv4).
      const hostname = !h.hostname || h.hostname === "localhost" ? "127.0.0.1" : h.hostname;
      const port = h.port ?? 5672;
      return { hostname, port, username: h.username || "guest", password: h.password || "guest", label: `${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}` };
    });
    // kombu url-decodes the virtual host once more after oslo did; an empty one is "/".
    const vhost = url.virtualHost ? unquote(url.virtualHost) : "";
    this.vhost = vhost ? vhost : undefined;
    this.log = options.logger;
    this.connectionName = `${basename(process.argv[1] ?? "node")}:${process.pid}:${options.purpose}:${hexId().slice(0, 12)}@${osHostname()}`;
  }

  /** Starts connecting in the background (once). */
  start(): void {
    this.loop ??= this.run();
  }

  get isReady(): boolean {
    return this.ready;
  }

  /** Whether `model` is this connection's live AMQP connection (not one that was lost). */
  isCurrent(model: ChannelModel): boolean {
    return this.model === model && this.modelOpen && !this.closed;
  }

  /** Resolves with the connection once it is ready; rejects at `deadline` (epoch ms) or when closed. */
  waitReady(deadline: number, what: string): Promise<ChannelModel> {
    if (this.closed) return Promise.reject(new TransportClosedError(what));
    if (this.ready && this.model) return Promise.resolve(this.model);
    return new Promise((resolve, reject) => {
      // An infinite deadline waits as oslo does; setTimeout cannot count that far.
      const timer = Number.isFinite(deadline)
        ? setTimeout(
            () => {
              this.readyWaiters.delete(wake);
              reject(new NotReadyError(this.lastError));
            },
            Math.min(2 ** 31 - 1, Math.max(0, deadline - Date.now())),
          )
        : undefined;
      const wake = () => {
        if (this.closed) reject(new TransportClosedError(what));
        else if (this.ready && this.model) resolve(this.model);
        else return;
        clearTimeout(timer);
        this.readyWaiters.delete(wake);
      };
      this.readyWaiters.add(wake);
    });
  }

  /**
   * Adds an attachment: attached now when the connection is ready, else as soon as it is, and on
   * every later connection. Resolves once attached; rejects (and forgets it) when its first
   * declaration fails on a live connection, or when the connection is closed.
   */
  addAttachment(attachment: Attachment): Promise<void> {
    if (this.closed) return Promise.reject(new TransportClosedError(attachment.name));
    return new Promise<void>((resolve, reject) => {
      const entry: Entry = { attachment, attached: false, everAttached: false, settle: { resolve, reject } };
      this.entries.push(entry);
      if (this.ready) {
        void this.serial(async () => {
          // Attached meanwhile by a reconnect's pass, or removed: nothing to do.
          if (entry.attached || !this.entries.includes(entry)) return;
          if (this.ready && this.model) await this.attachNew(entry, this.model);
        });
      }
    });
  }

  /** Forgets an attachment (its owner closes its own channel). */
  removeAttachment(attachment: Attachment): void {
    const index = this.entries.findIndex((e) => e.attachment === attachment);
    if (index >= 0) this.entries.splice(index, 1);
  }

  /**
   * Publishes and waits for the broker's confirm. Returns `returned` when a mandatory message was
   * returned as unroutable. Waits for the connection up to `deadline`; throws `RpcSendError` when
   * it passes, or when the broker refuses the message on a live connection (a nack, an exchange
   * declared with other flags); `TransportClosedError` when closed.
   */
  async publish(request: PublishRequest, deadline: number): Promise<"ok" | "returned"> {
    const exchangeName = request.exchange?.name ?? "";
    let redeclared = false;
    for (;;) {
      let model: ChannelModel;
      try {
        model = await this.waitReady(deadline, `publish to ${exchangeName || "(default exchange)"}`);
      } catch (error) {
        if (error instanceof NotReadyError) {
          throw new RpcSendError(exchangeName, request.routingKey, `not connected to a broker (${this.brokers.map((b) => b.label).join(", ")}) in time`, error.cause);
        }
        throw error;
      }
      const used: { channel?: ConfirmChannel } = {};
      try {
        return await this.publishOn(model, request, used);
      } catch (failure) {
        // A channel the broker closed fails its publishes with "channel closed"; the reason came as an error event.
        const error = (used.channel && this.channelErrors.get(used.channel)) || failure;
        if (this.closed) throw new TransportClosedError(`publish to ${exchangeName || "(default exchange)"}`);
        if (await this.survives(model)) {
          // An auto-delete exchange (a fanout's) vanishes with its last queue while we still count it
          // as declared: the broker closes the channel with 404; declare it again, once.
          if (request.exchange && !redeclared && (error as { code?: unknown }).code === 404) {
            redeclared = true;
            this.declaredExchanges.delete(exchangeName);
            continue;
          }
          throw new RpcSendError(exchangeName, request.routingKey, error instanceof Error ? error.message : String(error), error);
        }
        // The connection went down under the message: send it again on the next one.
        this.log.warn({ exchange: exchangeName, routingKey: request.routingKey, err: error }, "publish interrupted by a lost connection; sending again once reconnected");
        if (Date.now() >= deadline) throw new RpcSendError(exchangeName, request.routingKey, "the connection was lost before the broker confirmed, and the deadline passed", error);
      }
    }
  }

  private async publishOn(model: ChannelModel, request: PublishRequest, used: { channel?: ConfirmChannel }): Promise<"ok" | "returned"> {
    const channel = await this.confirmChannel(model);
    used.channel = channel;
    const exchange = request.exchange;
    if (exchange && !this.declaredExchanges.has(exchange.name)) {
      await channel.assertExchange(exchange.name, exchange.type, { durable: exchange.durable, autoDelete: exchange.autoDelete });
      this.declaredExchanges.add(exchange.name);
    }
    const messageId = hexId();
    return new Promise((resolve, reject) => {
      channel.publish(exchange?.name ?? "", request.routingKey, request.body, { ...request.properties, messageId, mandatory: request.mandatory ?? false }, (error) => {
        if (error) return reject(error instanceof Error ? error : new Error(String(error)));
        // The broker sends basic.return before the basic.ack of a returned message.
        resolve(this.returned.delete(messageId) ? "returned" : "ok");
      });
    });
  }

  private confirmChannel(model: ChannelModel): Promise<ConfirmChannel> {
    if (!this.publishChannel) {
      const opening = model.createConfirmChannel().then((channel) => {
        channel.on("error", (error: Error) => {
          this.channelErrors.set(channel, error);
          this.log.warn({ err: error, purpose: this.options.purpose }, "publish channel closed by the broker");
        });
        channel.on("close", () => {
          if (this.publishChannel === opening) this.publishChannel = undefined;
          // Exchanges may be gone with a broker that restarted; declare again on first use.
          this.declaredExchanges.clear();
        });
        channel.on("return", (message) => {
          const id = message.properties.messageId;
          if (typeof id === "string") this.returned.add(id);
        });
        return channel;
      });
      opening.catch(() => {
        if (this.publishChannel === opening) this.publishChannel = undefined;
      });
      this.publishChannel = opening;
    }
    return this.publishChannel;
  }

  /** Stops reconnecting, closes the connection; pending waits reject with `TransportClosedError`. */
  async close(): Promise<void> {
    if (this.closed) return this.loop;
    this.closed = true;
    this.wakeSleep?.();
    for (const wake of [...this.readyWaiters]) wake();
    for (const entry of this.entries.splice(0)) entry.settle?.reject(new TransportClosedError(entry.attachment.name));
    const model = this.model;
    if (model) await closeQuietly(model);
    await this.loop;
  }

  private async run(): Promise<void> {
    let round = 0;
    let triedThisRound = 0;
    let afterLoss = false;
    while (!this.closed) {
      if (afterLoss) {
        afterLoss = false;
        await this.sleep(jittered(this.options.rabbit.kombu_reconnect_delay * 1000));
        if (this.closed) break;
      }
      const broker = this.pickBroker();
      let model: ChannelModel;
      try {
        model = await this.open(broker);
      } catch (error) {
        this.lastError = error instanceof Error ? error : new Error(String(error));
        triedThisRound++;
        const roundDone = triedThisRound >= this.brokers.length;
        const delay = roundDone ? reconnectDelayMs(round + 1, this.options.rabbit) : 0;
        this.log.warn({ host: broker.label, purpose: this.options.purpose, err: this.lastError, retryInMs: delay }, "cannot connect to the broker");
        if (roundDone) {
          round++;
          triedThisRound = 0;
          await this.sleep(delay);
        }
        continue;
      }
      if (this.closed) {
        await closeQuietly(model);
        break;
      }
      round = 0;
      triedThisRound = 0;
      // Marked closed in the event itself, before the failures it causes are looked at.
      const closedBy = new Promise<Error | undefined>((resolve) =>
        model.once("close", (error?: Error) => {
          this.modelOpen = false;
          resolve(error);
        }),
      );
      model.on("error", (error: Error) => this.log.warn({ host: broker.label, purpose: this.options.purpose, err: error }, "broker connection error"));
      model.on("blocked", (reason: string) => this.log.error({ host: broker.label, purpose: this.options.purpose, reason }, "the broker has blocked the connection"));
      model.on("unblocked", () => this.log.info({ host: broker.label, purpose: this.options.purpose }, "the broker has unblocked the connection"));
      this.model = model;
      this.modelOpen = true;
      this.host = broker.label;
      this.publishChannel = undefined;
      this.declaredExchanges.clear();
      this.returned.clear();

      const restored = await this.serial(() => this.attachAll(model));
      if (restored && this.modelOpen && !this.closed) {
        const reconnect = this.everConnected;
        this.everConnected = true;
        this.ready = true;
        this.lastError = undefined;
        this.log.info({ host: broker.label, purpose: this.options.purpose, reconnect, attachments: this.entries.length }, reconnect ? "reconnected to the broker; consumers restored" : "connected to the broker");
        for (const wake of [...this.readyWaiters]) wake();
        this.emit("connected", { host: broker.label, reconnect });
      } else if (this.modelOpen) {
        await closeQuietly(model);
      }

      const error = await closedBy;
      this.ready = false;
      this.model = undefined;
      this.publishChannel = undefined;
      for (const entry of this.entries) {
        if (entry.attached) entry.attachment.detach();
        entry.attached = false;
      }
      if (this.closed) break;
      this.lastError = error;
      if (restored) {
        this.losses++;
        this.log.warn({ host: broker.label, purpose: this.options.purpose, err: error }, "lost the broker connection; reconnecting");
        this.emit("disconnected", { host: broker.label, error });
        afterLoss = true;
      } else {
        round++;
        await this.sleep(reconnectDelayMs(round, this.options.rabbit));
      }
    }
    this.ready = false;
  }

  /** Attaches every entry (including those added meanwhile); false when a restored one failed. */
  private async attachAll(model: ChannelModel): Promise<boolean> {
    for (let i = 0; i < this.entries.length; i++) {
      const entry = this.entries[i]!;
      if (entry.attached) continue;
      if (!this.modelOpen || this.closed) return false;
      if (!entry.everAttached) {
        if (!(await this.attachNew(entry, model))) i--;
        continue;
      }
      try {
        await entry.attachment.attach(model);
        entry.attached = true;
      } catch (error) {
        this.log.error({ host: this.host, purpose: this.options.purpose, attachment: entry.attachment.name, err: error }, "cannot restore a consumer on the new connection; reconnecting");
        return false;
      }
    }
    return true;
  }

  /** Attaches a new entry; on failure on a live connection, drops it and rejects its caller. Returns whether it stays. */
  private async attachNew(entry: Entry, model: ChannelModel): Promise<boolean> {
    try {
      await entry.attachment.attach(model);
      entry.attached = true;
      entry.everAttached = true;
      entry.settle?.resolve();
      entry.settle = undefined;
      return true;
    } catch (error) {
      if (await this.survives(model)) {
        const index = this.entries.indexOf(entry);
        if (index >= 0) this.entries.splice(index, 1);
        entry.settle?.reject(error);
        return false;
      }
      // The connection dropped meanwhile: the next connection attaches it.
      return true;
    }
  }

  /**
   * Whether a failure on `model` was the broker refusing something on a live connection (true)
   * rather than the connection going down. amqplib fails a channel's pending operations a moment
   * before it reports the connection closed, so look again after a short while.
   */
  private async survives(model: ChannelModel): Promise<boolean> {
    await new Promise((resolve) => setTimeout(resolve, 100));
    return this.isCurrent(model);
  }

  /** Runs attach work one at a time, so that a reconnect's pass and a new attachment never attach the same entry twice. */
  private serial<T>(work: () => Promise<T>): Promise<T> {
    const result = this.attachChain.then(work);
    this.attachChain = result.catch(() => undefined);
    return result;
  }

  private pickBroker(): Broker {
    if (this.options.rabbit.kombu_failover_strategy === "shuffle" && this.brokers.length > 1) {
      return this.brokers[Math.floor(Math.random() * this.brokers.length)]!;
    }
    const broker = this.brokers[this.next % this.brokers.length]!;
    this.next = (this.next + 1) % this.brokers.length;
    return broker;
  }

  private async open(broker: Broker): Promise<ChannelModel> {
    const rabbit = this.options.rabbit;
    const tls = tlsOptions(rabbit);
    const login =
      rabbit.rabbit_login_method === "EXTERNAL"
        ? credentials.external()
        : rabbit.rabbit_login_method === "PLAIN"
          ? credentials.plain(broker.username, broker.password)
          : credentials.amqplain(broker.username, broker.password);
    const model = await connect(
      {
        protocol: tls ? "amqps" : "amqp",
        hostname: broker.hostname,
        port: broker.port,
        username: broker.username,
        password: broker.password,
        // amqplib url-decodes the vhost it is given.
        ...(this.vhost === undefined ? {} : { vhost: encodeURIComponent(this.vhost) }),
        heartbeat: rabbit.heartbeat_timeout_threshold,
      },
      {
        ...tls,
        credentials: login,
        timeout: this.options.attemptTimeoutMs,
        noDelay: true,
        clientProperties: { connection_name: this.connectionName },
      },
    );
    return model;
  }

  private sleep(ms: number): Promise<void> {
    if (this.closed || ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeSleep = () => {
        this.wakeSleep = undefined;
        done();
      };
    });
  }
}

/** `waitReady` passed its deadline; `cause` is the last connection error. */
export class NotReadyError extends Error {
  constructor(cause: Error | undefined) {
    super("not connected in time", { cause });
  }
}

function jittered(ms: number): number {
  return Math.round(ms * (1 + RECONNECT_JITTER * (2 * Math.random() - 1)));
}

async function closeQuietly(model: ChannelModel): Promise<void> {
  try {
    await model.close();
  } catch {
    // already closed
  }
}
