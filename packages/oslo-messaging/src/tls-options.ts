import { readFileSync } from "node:fs";
import type { ConnectionOptions, SecureVersion } from "node:tls";
import { InvalidRabbitOptionError } from "./oslo-messaging-errors.js";
import type { RabbitOptions } from "./rabbit-options.js";

const VERSIONS: Record<string, { minVersion?: SecureVersion; maxVersion?: SecureVersion } | undefined> = {
  tlsv1: { minVersion: "TLSv1", maxVersion: "TLSv1" },
  tlsv1_1: { minVersion: "TLSv1.1", maxVersion: "TLSv1.1" },
  tlsv1_2: { minVersion: "TLSv1.2", maxVersion: "TLSv1.2" },
  // Python's PROTOCOL_SSLv23 negotiates the highest version both ends have.
  sslv23: { minVersion: "TLSv1" },
};

/**
 * Node TLS options equivalent to what oslo's rabbit driver hands py-amqp when `ssl` is set: the
 * broker's certificate chain is always verified (against `ssl_ca_file`, or the system's CAs as
 * Python's default context does); its host name only when `ssl_enforce_hostname_verification` is
 * set together with `ssl_ca_file` (SNI carries the host name, unless it is an IP address); a client
 * certificate and key when given. Files are read here, so
 * a missing one fails at connect time with the option's name. `undefined` when `ssl` is off.
 */
export function tlsOptions(options: RabbitOptions): ConnectionOptions | undefined {
  if (!options.ssl) return undefined;
  const tls: ConnectionOptions = { rejectUnauthorized: true };
  if (options.ssl_ca_file) tls.ca = readOption(options, "ssl_ca_file");
  if (options.ssl_cert_file) tls.cert = readOption(options, "ssl_cert_file");
  if (options.ssl_key_file) tls.key = readOption(options, "ssl_key_file");
  // Node checks the host name by default; oslo (py-amqp) only when asked to and given a CA file.
  if (!(options.ssl_ca_file && options.ssl_enforce_hostname_verification)) tls.checkServerIdentity = () => undefined;
  if (options.ssl_version) {
    const version = VERSIONS[options.ssl_version.toLowerCase()];
    if (!version) throw new InvalidRabbitOptionError("ssl_version", `${JSON.stringify(options.ssl_version)} is not supported (TLSv1, TLSv1_1, TLSv1_2 or SSLv23)`);
    Object.assign(tls, version);
  }
  return tls;
}

function readOption(options: RabbitOptions, name: "ssl_ca_file" | "ssl_cert_file" | "ssl_key_file"): Buffer {
  try {
    return readFileSync(options[name]);
  } catch (cause) {
    throw new InvalidRabbitOptionError(name, `cannot read ${options[name]}: ${cause instanceof Error ? cause.message : String(cause)}`);
  }
}
