import { InvalidRabbitOptionError } from "./oslo-messaging-errors.js";
import { pythonInt } from "./transport-url.js";

/**
 * The `[oslo_messaging_rabbit]` options of oslo.messaging 14, under their oslo names and units
 * (seconds), so an agent's config section maps onto them one to one. Those marked *accepted only* are
 * recognised (a URL's query may carry them, as oslo allows) but change nothing here.
 */
export interface RabbitOptions {
  /** Connect over TLS. */
  ssl: boolean;
  /** `TLSv1`, `TLSv1_1`, `TLSv1_2`, `SSLv23` (any); empty: Node's default (TLS 1.2 or later). */
  ssl_version: string;
  ssl_key_file: string;
  ssl_cert_file: string;
  /** CA bundle the broker's certificate must chain to; empty: the system's CAs (as Python's default context). */
  ssl_ca_file: string;
  /** Check the broker's host name against its certificate (only with `ssl_ca_file`, as oslo). */
  ssl_enforce_hostname_verification: boolean;
  /** Accepted only. */
  ssl_enforce_fips_mode: boolean;
  /** Accepted only (Node has no threads to choose from). */
  heartbeat_in_pthread: boolean;
  /** Seconds to wait after a lost connection before the first reconnect attempt. */
  kombu_reconnect_delay: number;
  /** Accepted only: compressing is not supported (received compressed messages are rejected). */
  kombu_compression: string | null;
  /** Seconds a server keeps retrying a reply whose reply queue is missing (e.g. a client reconnecting). */
  kombu_missing_consumer_retry_timeout: number;
  /** `round-robin` or `shuffle`: how the next host is chosen after a failure. */
  kombu_failover_strategy: string;
  /** `AMQPLAIN`, `PLAIN` or `EXTERNAL` (with a client certificate). */
  rabbit_login_method: string;
  /** Seconds before the first retry of a failed connection attempt. */
  rabbit_retry_interval: number;
  /** Multiplier of the retry delay after each failed round over the hosts (oslo adds it in seconds; we double by default). */
  rabbit_retry_backoff: number;
  /** Upper bound of the retry delay, seconds. */
  rabbit_interval_max: number;
  /** Declare queues with `x-ha-policy: all`. */
  rabbit_ha_queues: boolean;
  /** Declare topic queues as quorum queues (durable). */
  rabbit_quorum_queue: boolean;
  rabbit_quorum_delivery_limit: number;
  rabbit_quroum_max_memory_length: number;
  rabbit_quroum_max_memory_bytes: number;
  /** `x-expires` (seconds) of reply and fanout queues. */
  rabbit_transient_queues_ttl: number;
  /** basic.qos prefetch of consumers; 0: unlimited. */
  rabbit_qos_prefetch_count: number;
  /** AMQP heartbeat in seconds; 0 disables heartbeats. */
  heartbeat_timeout_threshold: number;
  /** Accepted only (the AMQP library checks heartbeats itself). */
  heartbeat_rate: number;
  /** Accepted only: replies are always published mandatory, as oslo 14 does. */
  direct_mandatory_flag: boolean;
  /** Consume with `x-cancel-on-ha-failover`. */
  enable_cancel_on_failover: boolean;
  /** Durable topic exchanges and queues. */
  amqp_durable_queues: boolean;
  /** Auto-delete topic exchanges and queues. */
  amqp_auto_delete: boolean;
  /** Accepted only (one connection per purpose, no pool). */
  rpc_conn_pool_size: number;
  /** Accepted only. */
  conn_pool_min_size: number;
  /** Accepted only. */
  conn_pool_ttl: number;
}

type Kind = { type: "bool" } | { type: "int"; min?: number } | { type: "float"; min?: number; max?: number } | { type: "str"; choices?: readonly string[]; nullable?: boolean };

const SPEC: { readonly [K in keyof RabbitOptions]: Kind } = {
  ssl: { type: "bool" },
  ssl_version: { type: "str" },
  ssl_key_file: { type: "str" },
  ssl_cert_file: { type: "str" },
  ssl_ca_file: { type: "str" },
  ssl_enforce_hostname_verification: { type: "bool" },
  ssl_enforce_fips_mode: { type: "bool" },
  heartbeat_in_pthread: { type: "bool" },
  kombu_reconnect_delay: { type: "float", min: 0, max: 4.5 },
  kombu_compression: { type: "str", nullable: true },
  kombu_missing_consumer_retry_timeout: { type: "int" },
  kombu_failover_strategy: { type: "str", choices: ["round-robin", "shuffle"] },
  rabbit_login_method: { type: "str", choices: ["PLAIN", "AMQPLAIN", "EXTERNAL", "RABBIT-CR-DEMO"] },
  rabbit_retry_interval: { type: "int" },
  rabbit_retry_backoff: { type: "int" },
  rabbit_interval_max: { type: "int" },
  rabbit_ha_queues: { type: "bool" },
  rabbit_quorum_queue: { type: "bool" },
  rabbit_quorum_delivery_limit: { type: "int" },
  rabbit_quroum_max_memory_length: { type: "int" },
  rabbit_quroum_max_memory_bytes: { type: "int" },
  rabbit_transient_queues_ttl: { type: "int", min: 1 },
  rabbit_qos_prefetch_count: { type: "int" },
  heartbeat_timeout_threshold: { type: "int" },
  heartbeat_rate: { type: "int" },
  direct_mandatory_flag: { type: "bool" },
  enable_cancel_on_failover: { type: "bool" },
  amqp_durable_queues: { type: "bool" },
  amqp_auto_delete: { type: "bool" },
  rpc_conn_pool_size: { type: "int", min: 1 },
  conn_pool_min_size: { type: "int" },
  conn_pool_ttl: { type: "int" },
};

/** oslo.messaging 14's defaults. */
export const RABBIT_DEFAULTS: Readonly<RabbitOptions> = Object.freeze({
  ssl: false,
  ssl_version: "",
  ssl_key_file: "",
  ssl_cert_file: "",
  ssl_ca_file: "",
  ssl_enforce_hostname_verification: false,
  ssl_enforce_fips_mode: false,
  heartbeat_in_pthread: false,
  kombu_reconnect_delay: 1,
  kombu_compression: null,
  kombu_missing_consumer_retry_timeout: 60,
  kombu_failover_strategy: "round-robin",
  rabbit_login_method: "AMQPLAIN",
  rabbit_retry_interval: 1,
  rabbit_retry_backoff: 2,
  rabbit_interval_max: 30,
  rabbit_ha_queues: false,
  rabbit_quorum_queue: false,
  rabbit_quorum_delivery_limit: 0,
  rabbit_quroum_max_memory_length: 0,
  rabbit_quroum_max_memory_bytes: 0,
  rabbit_transient_queues_ttl: 1800,
  rabbit_qos_prefetch_count: 0,
  heartbeat_timeout_threshold: 60,
  heartbeat_rate: 2,
  direct_mandatory_flag: true,
  enable_cancel_on_failover: false,
  amqp_durable_queues: false,
  amqp_auto_delete: false,
  rpc_conn_pool_size: 30,
  conn_pool_min_size: 2,
  conn_pool_ttl: 1200,
});

/**
 * The options in effect: oslo's defaults, then `configured` (the config section), then the
 * transport URL's query, which overrides both as in oslo (`ConfigOptsProxy`). A query key that is
 * not an `[oslo_messaging_rabbit]` option, or a value oslo's type would refuse, throws
 * `InvalidRabbitOptionError`. Numbers given in code may be fractional (tests shorten delays); from a
 * query, integer options take integers, as oslo.config parses them.
 */
export function resolveRabbitOptions(configured: Partial<RabbitOptions> = {}, query: Readonly<Record<string, string>> = {}): RabbitOptions {
  const options: RabbitOptions = { ...RABBIT_DEFAULTS };
  const target = options as unknown as Record<string, unknown>;
  for (const [name, value] of Object.entries(configured)) {
    if (value === undefined) continue;
    const kind = (SPEC as Record<string, Kind>)[name];
    if (!kind) throw new InvalidRabbitOptionError(name, "not an [oslo_messaging_rabbit] option");
    target[name] = checkValue(name, kind, value);
  }
  for (const [name, text] of Object.entries(query)) {
    const kind = (SPEC as Record<string, Kind>)[name];
    if (!kind) throw new InvalidRabbitOptionError(name, `given in the transport_url query but not an [oslo_messaging_rabbit] option`);
    target[name] = checkValue(name, kind, convert(name, kind, text));
  }
  if (options.rabbit_quorum_queue && options.rabbit_ha_queues) {
    throw new InvalidRabbitOptionError("rabbit_quorum_queue", "rabbit_quorum_queue and rabbit_ha_queues are both enabled: a queue is quorum or HA (mirrored), not both");
  }
  return options;
}

/** oslo.config's conversion of a string to the option's type. */
function convert(name: string, kind: Kind, text: string): unknown {
  switch (kind.type) {
    case "bool": {
      const lower = text.toLowerCase();
      if (["true", "1", "on", "yes"].includes(lower)) return true;
      if (["false", "0", "off", "no"].includes(lower)) return false;
      throw new InvalidRabbitOptionError(name, `unexpected boolean value ${JSON.stringify(text)}`);
    }
    case "int": {
      const value = pythonInt(text);
      if (value === undefined) throw new InvalidRabbitOptionError(name, `${JSON.stringify(text)} is not an integer`);
      return value;
    }
    case "float": {
      const value = /^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/.test(text) ? Number(text) : NaN;
      if (Number.isNaN(value)) throw new InvalidRabbitOptionError(name, `${JSON.stringify(text)} is not a number`);
      return value;
    }
    case "str":
      return text;
  }
}

function checkValue(name: string, kind: Kind, value: unknown): unknown {
  switch (kind.type) {
    case "bool":
      if (typeof value !== "boolean") throw new InvalidRabbitOptionError(name, `expected a boolean, got ${JSON.stringify(value)}`);
      return value;
    case "int":
    case "float":
      if (typeof value !== "number" || !Number.isFinite(value)) throw new InvalidRabbitOptionError(name, `expected a number, got ${JSON.stringify(value)}`);
      if (kind.min !== undefined && value < kind.min) throw new InvalidRabbitOptionError(name, `${value} is less than the minimum ${kind.min}`);
      if (kind.type === "float" && kind.max !== undefined && value > kind.max) throw new InvalidRabbitOptionError(name, `${value} is more than the maximum ${kind.max}`);
      return value;
    case "str":
      if (value === null && kind.nullable) return value;
      if (typeof value !== "string") throw new InvalidRabbitOptionError(name, `expected a string, got ${JSON.stringify(value)}`);
      if (kind.choices && !kind.choices.includes(value)) throw new InvalidRabbitOptionError(name, `${JSON.stringify(value)} is not one of ${kind.choices.join(", ")}`);
      return value;
  }
}
