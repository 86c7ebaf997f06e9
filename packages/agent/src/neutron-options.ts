/**
 * The Neutron options the framework knows, as Neutron, oslo.messaging and oslo.log register them
 * (section, name, type, default, deprecated names). Some set framework keys (`state_path`,
 * `comment_iptables_rules`, `debug` → `log_level`: `FRAMEWORK_NEUTRON` in agent-config.ts); the
 * messaging ones are for the RPC client (`neutronRpcConfig`).
 */
import { hostname } from "node:os";
import { neutronOption } from "./neutron-option.js";

const rabbit = "oslo_messaging_rabbit";

/** The Neutron, oslo.messaging and oslo.log options the framework reads, by name (see the file's comment). */
export const neutronOptions = {
  // neutron/conf/common.py
  state_path: neutronOption({ section: "DEFAULT", option: "state_path", type: "string", default: "/var/lib/neutron" }),
  // Neutron's `net.get_hostname()`: the host's name, as Node gives it.
  host: neutronOption({ section: "DEFAULT", option: "host", type: "string", default: hostname() }),
  // oslo.log
  debug: neutronOption({ section: "DEFAULT", option: "debug", type: "boolean", default: false }),
  // neutron/conf/agent/common.py (IPTABLES_OPTS, AGENT_STATE_OPTS)
  comment_iptables_rules: neutronOption({ section: "AGENT", option: "comment_iptables_rules", type: "boolean", default: true }),
  report_interval: neutronOption({ section: "AGENT", option: "report_interval", type: "float", default: 30 }),
  // neutron/conf/service.py
  periodic_interval: neutronOption({ section: "DEFAULT", option: "periodic_interval", type: "integer", default: 40 }),
  periodic_fuzzy_delay: neutronOption({ section: "DEFAULT", option: "periodic_fuzzy_delay", type: "integer", default: 5 }),
  rpc_response_max_timeout: neutronOption({ section: "DEFAULT", option: "rpc_response_max_timeout", type: "integer", default: 600 }),
  // oslo.messaging (transport.py, rpc/client.py); Neutron sets the exchange's default to `neutron`.
  transport_url: neutronOption({ section: "DEFAULT", option: "transport_url", type: "string", default: "rabbit://" }),
  control_exchange: neutronOption({ section: "DEFAULT", option: "control_exchange", type: "string", default: "neutron" }),
  rpc_response_timeout: neutronOption({ section: "DEFAULT", option: "rpc_response_timeout", type: "integer", default: 60 }),
  // oslo.messaging's rabbit driver (_drivers/impl_rabbit.py, _drivers/amqp.py)
  ssl: neutronOption({ section: rabbit, option: "ssl", type: "boolean", default: false, deprecatedNames: [{ option: "rabbit_use_ssl" }] }),
  ssl_ca_file: neutronOption({ section: rabbit, option: "ssl_ca_file", type: "string", default: "", deprecatedNames: [{ option: "kombu_ssl_ca_certs" }] }),
  ssl_cert_file: neutronOption({ section: rabbit, option: "ssl_cert_file", type: "string", default: "", deprecatedNames: [{ option: "kombu_ssl_certfile" }] }),
  ssl_key_file: neutronOption({ section: rabbit, option: "ssl_key_file", type: "string", default: "", deprecatedNames: [{ option: "kombu_ssl_keyfile" }] }),
  ssl_version: neutronOption({ section: rabbit, option: "ssl_version", type: "string", default: "", deprecatedNames: [{ option: "kombu_ssl_version" }] }),
  heartbeat_timeout_threshold: neutronOption({ section: rabbit, option: "heartbeat_timeout_threshold", type: "integer", default: 60 }),
  heartbeat_rate: neutronOption({ section: rabbit, option: "heartbeat_rate", type: "integer", default: 2 }),
  rabbit_retry_interval: neutronOption({ section: rabbit, option: "rabbit_retry_interval", type: "integer", default: 1 }),
  rabbit_retry_backoff: neutronOption({ section: rabbit, option: "rabbit_retry_backoff", type: "integer", default: 2, deprecatedNames: [{ section: "DEFAULT" }] }),
  rabbit_interval_max: neutronOption({ section: rabbit, option: "rabbit_interval_max", type: "integer", default: 30 }),
  rabbit_ha_queues: neutronOption({ section: rabbit, option: "rabbit_ha_queues", type: "boolean", default: false, deprecatedNames: [{ section: "DEFAULT" }] }),
  amqp_durable_queues: neutronOption({ section: rabbit, option: "amqp_durable_queues", type: "boolean", default: false }),
  amqp_auto_delete: neutronOption({ section: rabbit, option: "amqp_auto_delete", type: "boolean", default: false, deprecatedNames: [{ section: "DEFAULT" }] }),
} as const;
