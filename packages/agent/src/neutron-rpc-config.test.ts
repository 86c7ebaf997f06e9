import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { NeutronConfig } from "./neutron-config.js";
import { neutronRpcConfig } from "./neutron-rpc-config.js";

const tmp = mkdtempSync(join(tmpdir(), "neutron-rpc-config-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("neutronRpcConfig", () => {
  it("is Neutron's and oslo.messaging's defaults without files", () => {
    const rpc = neutronRpcConfig(NeutronConfig.none);
    expect(rpc).toMatchObject({ host: hostname(), transportUrl: "rabbit://", controlExchange: "neutron", rpcResponseTimeout: 60, reportInterval: 30, periodicInterval: 40 });
    expect(rpc.rabbit).toEqual({
      ssl: false,
      sslCaFile: "",
      sslCertFile: "",
      sslKeyFile: "",
      sslVersion: "",
      heartbeatTimeoutThreshold: 60,
      heartbeatRate: 2,
      retryInterval: 1,
      retryBackoff: 2,
      intervalMax: 30,
      haQueues: false,
      durableQueues: false,
      autoDeleteQueues: false,
    });
    expect(Object.values(rpc.sources).every((s) => s === undefined)).toBe(true);
  });

  it("reads the files, deprecated names included, with where each value came from", () => {
    const conf = join(tmp, "neutron.conf");
    writeFileSync(
      conf,
      [
        "[DEFAULT]",
        "host = net1",
        "transport_url = rabbit://neutron:secret@10.0.0.5:5672/",
        "rpc_response_timeout = 120",
        "rabbit_retry_backoff = 4",
        "[agent]",
        "report_interval =",
        "[oslo_messaging_rabbit]",
        "rabbit_use_ssl = true",
        "kombu_ssl_ca_certs = /etc/ssl/ca.pem",
        "ssl_cert_file = /etc/ssl/agent.pem",
        "heartbeat_timeout_threshold = 0",
      ].join("\n"),
    );
    const rpc = neutronRpcConfig(NeutronConfig.read([{ file: conf }]));
    expect(rpc).toMatchObject({ host: "net1", transportUrl: "rabbit://neutron:secret@10.0.0.5:5672/", rpcResponseTimeout: 120, reportInterval: 0 });
    expect(rpc.rabbit).toMatchObject({ ssl: true, sslCaFile: "/etc/ssl/ca.pem", sslCertFile: "/etc/ssl/agent.pem", heartbeatTimeoutThreshold: 0, retryBackoff: 4 });
    expect(rpc.sources["rabbit.sslCaFile"]).toEqual({ file: conf, line: 10, section: "oslo_messaging_rabbit", option: "kombu_ssl_ca_certs", value: "/etc/ssl/ca.pem" });
    expect(rpc.sources["rabbit.retryBackoff"]).toMatchObject({ section: "DEFAULT", option: "rabbit_retry_backoff", line: 5 });
    expect(rpc.sources.controlExchange).toBeUndefined();
  });
});
