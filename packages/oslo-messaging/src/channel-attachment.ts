import type { Channel, ChannelModel, ConsumeMessage } from "amqplib";
import type { CoreLogger } from "@chainwarden/core";
import type { RabbitOptions } from "./rabbit-options.js";
import type { Attachment, RabbitConnection } from "./rabbit-connection.js";

/**
 * An attachment that owns one channel: opened, configured (prefetch) and set up by the subclass on
 * every connection. Two things can end its consumers while the connection lives on, and both are
 * repaired here after `kombu_reconnect_delay`, as kombu does through a reconnect: the broker
 * cancelling a consumer (its queue was deleted) and the broker closing the channel (a channel-level
 * error). The repair re-runs the setup, which declares the queues again.
 */
export abstract class ChannelAttachment implements Attachment {
  protected channel: Channel | undefined;
  private model: ChannelModel | undefined;
  private stopping = false;
  private repairTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly name: string,
    protected readonly connection: RabbitConnection,
    protected readonly rabbit: RabbitOptions,
    protected readonly log: CoreLogger,
  ) {}

  /** Declares and consumes on the given channel. */
  protected abstract setup(channel: Channel): Promise<void>;

  async attach(model: ChannelModel): Promise<void> {
    const channel = await model.createChannel();
    channel.on("error", (error: Error) => this.log.warn({ attachment: this.name, err: error }, "channel closed by the broker"));
    channel.on("close", () => this.onChannelClosed(channel, model));
    this.channel = channel;
    this.model = model;
    try {
      if (this.rabbit.rabbit_qos_prefetch_count > 0) await channel.prefetch(this.rabbit.rabbit_qos_prefetch_count);
      await this.setup(channel);
    } catch (error) {
      this.channel = undefined;
      await channel.close().catch(() => undefined);
      throw error;
    }
  }

  detach(): void {
    this.channel = undefined;
    this.model = undefined;
    clearTimeout(this.repairTimer);
  }

  /** Wraps a consumer callback: `null` is amqplib's word for "the broker cancelled this consumer". */
  protected consumer(queue: string, handle: (message: ConsumeMessage, channel: Channel) => void): (message: ConsumeMessage | null) => void {
    const channel = this.channel!;
    return (message) => {
      if (message) {
        handle(message, channel);
        return;
      }
      if (this.stopping || this.channel !== channel) return;
      this.log.warn({ attachment: this.name, queue }, "the broker cancelled a consumer (queue deleted?); declaring and consuming again");
      this.scheduleRepair();
    };
  }

  /** Stops repairing and closes the channel (the subclass has cancelled or deleted what it must first). */
  protected async closeChannel(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.repairTimer);
    const channel = this.channel;
    this.channel = undefined;
    if (channel) await channel.close().catch(() => undefined);
  }

  private onChannelClosed(channel: Channel, model: ChannelModel): void {
    if (this.stopping || this.channel !== channel) return;
    // When the whole connection went, RabbitConnection re-attaches everything on the next one.
    if (!this.connection.isCurrent(model)) return;
    this.channel = undefined;
    this.scheduleRepair();
  }

  private scheduleRepair(delayMs = Math.max(100, this.rabbit.kombu_reconnect_delay * 1000)): void {
    clearTimeout(this.repairTimer);
    const model = this.model;
    this.repairTimer = setTimeout(() => {
      if (this.stopping || !model || !this.connection.isCurrent(model)) return;
      const broken = this.channel;
      this.channel = undefined;
      if (broken) void broken.close().catch(() => undefined);
      this.attach(model).then(
        () => this.log.info({ attachment: this.name }, "consumer restored"),
        (error: unknown) => {
          this.log.error({ attachment: this.name, err: error }, "cannot restore a consumer; retrying");
          this.scheduleRepair(Math.max(1000, this.rabbit.rabbit_retry_interval * 1000));
        },
      );
    }, delayMs);
  }
}
