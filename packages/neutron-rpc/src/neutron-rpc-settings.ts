import { hostname } from "node:os";
import { neutronOptions, type PluginNeutronOptions, type SettingFlag } from "@chainwarden/agent";
import { z } from "zod";

/**
 * The config keys of the Neutron RPC plugins, named as Neutron names them (`[DEFAULT] host`,
 * `transport_url`, `control_exchange`, `rpc_response_timeout`, `[AGENT] report_interval`,
 * `[oslo_messaging_rabbit] ssl*`). Without `transport_url` the plugins do nothing and the agent
 * reads its state from files, as before.
 */
export const neutronRpcSettingsKeys = {
  host: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/, "a host name (letters, digits, _ . -)")
    .default(() => hostname())
    .meta({ description: "Neutron `[DEFAULT] host`: the name neutron-server knows this agent by (default: the machine's host name, as Neutron's).", defaultText: "the host name" }),
  transport_url: z.string().min(1).optional().describe("Neutron `[DEFAULT] transport_url` (`rabbit://user:pass@host:5672/vhost`); unset: no RPC, state from files."),
  control_exchange: z.string().regex(/^[A-Za-z0-9_.-]+$/, "an exchange name").default("neutron").describe("The exchange Neutron's RPC topics live in (Neutron `[DEFAULT] control_exchange`)."),
  rpc_response_timeout: z.number().min(1).max(3600).default(60).describe("Seconds an RPC call to neutron-server waits for its answer (Neutron `[DEFAULT] rpc_response_timeout`)."),
  report_interval: z.number().min(0).max(3600).default(30).describe("Neutron `[AGENT] report_interval`, seconds (0: no heartbeats, the server shows the agent dead)."),
  server_resync_interval: z.number().min(0).max(86_400).default(600).describe("Seconds between full resyncs from neutron-server when nothing asked for one (0: never); the framework's `resync_interval` is the kernel drift check, this one asks the server again. Neutron has no such option: it resyncs after failures and reconnects, as we do too; this also repairs a cast lost without a reconnect."),
  rabbit_ssl: z.boolean().default(false).describe("Neutron `[oslo_messaging_rabbit] ssl`: connect to the broker with TLS."),
  rabbit_ssl_ca_file: z.string().min(1).optional().describe("The CA certificates that sign the broker's certificate (Neutron `[oslo_messaging_rabbit] ssl_ca_file`); unset: the system's."),
  rabbit_ssl_cert_file: z.string().min(1).optional().describe("The client certificate presented to the broker (Neutron `[oslo_messaging_rabbit] ssl_cert_file`)."),
  rabbit_ssl_key_file: z.string().min(1).optional().describe("The client certificate's private key (Neutron `[oslo_messaging_rabbit] ssl_key_file`)."),
  heartbeat_timeout_threshold: z.number().int().min(0).max(3600).default(60).describe("Seconds without an AMQP heartbeat from the broker before the connection counts as lost (Neutron `[oslo_messaging_rabbit] heartbeat_timeout_threshold`; 0: no heartbeats)."),
};

export type NeutronRpcSettings = z.output<z.ZodObject<typeof neutronRpcSettingsKeys>>;

export const neutronRpcSettingsFlags: readonly SettingFlag[] = [
  { flag: "host", key: "host", type: "string", description: "the host name neutron-server knows this agent by (Neutron [DEFAULT] host)" },
  { flag: "transport-url", key: "transport_url", type: "string", description: "take desired state from neutron-server over this broker (Neutron [DEFAULT] transport_url)" },
  { flag: "report-interval", key: "report_interval", type: "number", description: "seconds between heartbeats to neutron-server (Neutron [AGENT] report_interval)" },
];

/** Neutron's spelling of "not set" for a path is an empty value; ours is no key. */
const emptyIsUnset = (value: string): string | undefined => value || undefined;

/**
 * The same keys read from Neutron's own files (`--config-file /etc/neutron/neutron.conf`), so an
 * operator swapping `neutron-l3-agent` for ours keeps `transport_url` and `host` where they are.
 */
export const neutronRpcNeutronOptions: PluginNeutronOptions<typeof neutronRpcSettingsKeys> = {
  keys: {
    host: neutronOptions.host,
    transport_url: { ...neutronOptions.transport_url, convert: emptyIsUnset },
    control_exchange: neutronOptions.control_exchange,
    rpc_response_timeout: neutronOptions.rpc_response_timeout,
    report_interval: neutronOptions.report_interval,
    rabbit_ssl: neutronOptions.ssl,
    rabbit_ssl_ca_file: { ...neutronOptions.ssl_ca_file, convert: emptyIsUnset },
    rabbit_ssl_cert_file: { ...neutronOptions.ssl_cert_file, convert: emptyIsUnset },
    rabbit_ssl_key_file: { ...neutronOptions.ssl_key_file, convert: emptyIsUnset },
    heartbeat_timeout_threshold: neutronOptions.heartbeat_timeout_threshold,
  },
};
