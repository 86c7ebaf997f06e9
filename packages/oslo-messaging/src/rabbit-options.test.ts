import { describe, expect, it } from "vitest";
import { InvalidRabbitOptionError } from "./oslo-messaging-errors.js";
import { RABBIT_DEFAULTS, resolveRabbitOptions } from "./rabbit-options.js";

describe("resolveRabbitOptions", () => {
  it("starts from oslo's defaults, applies the config section, then the URL's query over it", () => {
    const options = resolveRabbitOptions({ heartbeat_timeout_threshold: 30, ssl: false }, { ssl: "Yes", heartbeat_timeout_threshold: " 10 ", ssl_ca_file: "/etc/ca.pem", kombu_reconnect_delay: "0.5" });
    expect(options).toEqual({ ...RABBIT_DEFAULTS, ssl: true, heartbeat_timeout_threshold: 10, ssl_ca_file: "/etc/ca.pem", kombu_reconnect_delay: 0.5 });
  });

  it("refuses what oslo.config refuses, naming the option", () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ heartbeat_timeout: "10" }, /heartbeat_timeout: given in the transport_url query but not an \[oslo_messaging_rabbit\] option/],
      [{ ssl: "maybe" }, /ssl: unexpected boolean value "maybe"/],
      [{ rabbit_retry_interval: "1.5" }, /rabbit_retry_interval: "1.5" is not an integer/],
      [{ rabbit_transient_queues_ttl: "0" }, /less than the minimum 1/],
      [{ kombu_reconnect_delay: "9" }, /more than the maximum 4.5/],
      [{ kombu_failover_strategy: "random" }, /not one of round-robin, shuffle/],
      [{ rabbit_ha_queues: "1", rabbit_quorum_queue: "true" }, /both enabled/],
    ];
    for (const [query, message] of cases) {
      expect(() => resolveRabbitOptions({}, query)).toThrow(message);
      expect(() => resolveRabbitOptions({}, query)).toThrow(InvalidRabbitOptionError);
    }
    expect(() => resolveRabbitOptions({ ssl: "yes" as unknown as boolean })).toThrow(/ssl: expected a boolean/);
  });
});
