import type { Options } from "amqplib";
import type { RabbitOptions } from "./rabbit-options.js";
import type { ExchangeSpec } from "./rabbit-connection.js";

/**
 * The exchanges and queues oslo.messaging 14's rabbit driver declares, with the same flags and
 * arguments, so that a Python peer declaring the same names finds them equivalent (RabbitMQ closes
 * the channel on a declaration that differs):
 *
 * - topic exchange `<control_exchange>` (type topic), and the queues `<topic>` and
 *   `<topic>.<server>` bound to it by their own name: durable per `amqp_durable_queues` (or quorum
 *   queues), auto-delete per `amqp_auto_delete`;
 * - fanout exchange `<topic>_fanout` (not durable, auto-delete) with one queue per server,
 *   `<topic>_fanout_<uuid>`, not durable, not auto-delete, expiring after
 *   `rabbit_transient_queues_ttl` unused;
 * - reply queue `reply_<uuid>` on the default exchange, the same flags as a fanout queue.
 */
export function topicExchange(name: string, rabbit: RabbitOptions): ExchangeSpec {
  return { name, type: "topic", durable: durable(rabbit), autoDelete: rabbit.amqp_auto_delete };
}

export function fanoutExchange(topic: string): ExchangeSpec {
  return { name: `${topic}_fanout`, type: "fanout", durable: false, autoDelete: true };
}

export function topicQueueOptions(rabbit: RabbitOptions): Options.AssertQueue {
  return { durable: durable(rabbit), autoDelete: rabbit.amqp_auto_delete, arguments: queueArguments(rabbit, { transient: false }) };
}

export function transientQueueOptions(rabbit: RabbitOptions): Options.AssertQueue {
  return { durable: false, autoDelete: false, arguments: queueArguments(rabbit, { transient: true }) };
}

export function consumeOptions(rabbit: RabbitOptions): Options.Consume {
  return { noAck: false, ...(rabbit.enable_cancel_on_failover ? { arguments: { "x-cancel-on-ha-failover": true } } : {}) };
}

function durable(rabbit: RabbitOptions): boolean {
  return rabbit.amqp_durable_queues || rabbit.rabbit_quorum_queue;
}

/** oslo's `_get_queue_arguments`: HA policy, quorum settings (topic queues), `x-expires` (transient queues). */
function queueArguments(rabbit: RabbitOptions, { transient }: { transient: boolean }): Record<string, unknown> {
  const args: Record<string, unknown> = {};
  if (rabbit.rabbit_ha_queues) args["x-ha-policy"] = "all";
  // oslo passes the quorum settings to topic consumers only; reply and fanout queues stay classic.
  if (rabbit.rabbit_quorum_queue && !transient) {
    args["x-queue-type"] = "quorum";
    if (rabbit.rabbit_quorum_delivery_limit) args["x-delivery-limit"] = rabbit.rabbit_quorum_delivery_limit;
    if (rabbit.rabbit_quroum_max_memory_length) args["x-max-in-memory-length"] = rabbit.rabbit_quroum_max_memory_length;
    if (rabbit.rabbit_quroum_max_memory_bytes) args["x-max-in-memory-bytes"] = rabbit.rabbit_quroum_max_memory_bytes;
  }
  if (transient && rabbit.rabbit_transient_queues_ttl > 0) args["x-expires"] = Math.round(rabbit.rabbit_transient_queues_ttl * 1000);
  return args;
}
