import type { NeutronConfig, NeutronValueSource } from "./neutron-config.js";
import type { NeutronOption, NeutronOptionType, NeutronValueOf } from "./neutron-option.js";
import { neutronOptions as o } from "./neutron-options.js";

/**
 * What an RPC client of Neutron's needs from Neutron's files (oslo.messaging's and Neutron's
 * options, with their defaults): where and as whom to connect, how long to wait, how often to
 * report. Durations are in seconds, as Neutron's options give them.
 */
export interface NeutronRpcConfig {
  /** `[DEFAULT] host`: the agent's name to the server (default: this host's name). */
  readonly host: string;
  /** `[DEFAULT] transport_url` (`rabbit://user:pass@host:5672/vhost`; default `rabbit://`). */
  readonly transportUrl: string;
  /** `[DEFAULT] control_exchange` (Neutron's default: `neutron`). */
  readonly controlExchange: string;
  /** `[DEFAULT] rpc_response_timeout`: seconds a call waits for its reply. */
  readonly rpcResponseTimeout: number;
  /** `[DEFAULT] rpc_response_max_timeout`: the most a call's timeout grows to after timeouts. */
  readonly rpcResponseMaxTimeout: number;
  /** `[AGENT] report_interval`: seconds between state reports (0: none). */
  readonly reportInterval: number;
  /** `[DEFAULT] periodic_interval`: seconds between periodic tasks (the l3 agent's router resync). */
  readonly periodicInterval: number;
  /** `[DEFAULT] periodic_fuzzy_delay`: at most this many seconds of random delay before the first. */
  readonly periodicFuzzyDelay: number;
  readonly rabbit: {
    /** `ssl` (deprecated `rabbit_use_ssl`). */
    readonly ssl: boolean;
    /** `ssl_ca_file`, `ssl_cert_file`, `ssl_key_file`, `ssl_version`: empty when unset. */
    readonly sslCaFile: string;
    readonly sslCertFile: string;
    readonly sslKeyFile: string;
    readonly sslVersion: string;
    /** `heartbeat_timeout_threshold`: seconds without a heartbeat before the broker is down (0: no heartbeats). */
    readonly heartbeatTimeoutThreshold: number;
    /** `heartbeat_rate`: heartbeat checks per threshold. */
    readonly heartbeatRate: number;
    /** `rabbit_retry_interval`, `rabbit_retry_backoff`, `rabbit_interval_max`: reconnecting, in seconds. */
    readonly retryInterval: number;
    readonly retryBackoff: number;
    readonly intervalMax: number;
    /** `rabbit_ha_queues`, `amqp_durable_queues`, `amqp_auto_delete`: how queues are declared. */
    readonly haQueues: boolean;
    readonly durableQueues: boolean;
    readonly autoDeleteQueues: boolean;
  };
  /**
   * Where each value came from, by its field (`transportUrl`, `rabbit.sslCaFile`): the line that
   * set it, or undefined for Neutron's default.
   */
  readonly sources: Readonly<Record<string, NeutronValueSource | undefined>>;
}

/** The options `neutronRpcConfig` reads, in the order of its fields. */
export const NEUTRON_RPC_OPTIONS: readonly NeutronOption[] = [
  o.host,
  o.transport_url,
  o.control_exchange,
  o.rpc_response_timeout,
  o.rpc_response_max_timeout,
  o.report_interval,
  o.periodic_interval,
  o.periodic_fuzzy_delay,
  o.ssl,
  o.ssl_ca_file,
  o.ssl_cert_file,
  o.ssl_key_file,
  o.ssl_version,
  o.heartbeat_timeout_threshold,
  o.heartbeat_rate,
  o.rabbit_retry_interval,
  o.rabbit_retry_backoff,
  o.rabbit_interval_max,
  o.rabbit_ha_queues,
  o.amqp_durable_queues,
  o.amqp_auto_delete,
];

/**
 * The messaging options out of the agent's Neutron files (`env.neutron` in a plugin), each with
 * Neutron's default where no file sets it.
 * @throws OsloConfigError naming the file, line, section, option and value of one that is invalid
 *   (the agent checks them at start, so a plugin's `register` does not meet one).
 */
export function neutronRpcConfig(neutron: NeutronConfig): NeutronRpcConfig {
  const sources: Record<string, NeutronValueSource | undefined> = {};
  function read<T extends NeutronOptionType>(field: string, option: NeutronOption<T>, empty: unknown = option.default): NeutronValueOf<T> {
    const value = neutron.get(option);
    sources[field] = value.source;
    // An empty number is no value (None) in oslo.config.
    return (value.value ?? empty) as NeutronValueOf<T>;
  }
  return {
    host: read("host", o.host),
    transportUrl: read("transportUrl", o.transport_url),
    controlExchange: read("controlExchange", o.control_exchange),
    rpcResponseTimeout: read("rpcResponseTimeout", o.rpc_response_timeout),
    rpcResponseMaxTimeout: read("rpcResponseMaxTimeout", o.rpc_response_max_timeout),
    // Neutron reports state only when report_interval is truthy: empty means no reports.
    reportInterval: read("reportInterval", o.report_interval, 0),
    periodicInterval: read("periodicInterval", o.periodic_interval),
    periodicFuzzyDelay: read("periodicFuzzyDelay", o.periodic_fuzzy_delay),
    rabbit: {
      ssl: read("rabbit.ssl", o.ssl),
      sslCaFile: read("rabbit.sslCaFile", o.ssl_ca_file),
      sslCertFile: read("rabbit.sslCertFile", o.ssl_cert_file),
      sslKeyFile: read("rabbit.sslKeyFile", o.ssl_key_file),
      sslVersion: read("rabbit.sslVersion", o.ssl_version),
      heartbeatTimeoutThreshold: read("rabbit.heartbeatTimeoutThreshold", o.heartbeat_timeout_threshold),
      heartbeatRate: read("rabbit.heartbeatRate", o.heartbeat_rate),
      retryInterval: read("rabbit.retryInterval", o.rabbit_retry_interval),
      retryBackoff: read("rabbit.retryBackoff", o.rabbit_retry_backoff),
      intervalMax: read("rabbit.intervalMax", o.rabbit_interval_max),
      haQueues: read("rabbit.haQueues", o.rabbit_ha_queues),
      durableQueues: read("rabbit.durableQueues", o.amqp_durable_queues),
      autoDeleteQueues: read("rabbit.autoDeleteQueues", o.amqp_auto_delete),
    },
    sources,
  };
}
