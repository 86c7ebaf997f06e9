import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { composeAgentConfig, mapNeutronConfig, NeutronConfig } from "@chainwarden/agent";
import { afterAll, describe, expect, it } from "vitest";
import { neutronL3RpcPlugin } from "./neutron-l3-rpc-plugin.js";

const tmp = mkdtempSync(join(tmpdir(), "neutron-rpc-settings-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("neutron-rpc's settings from Neutron's own files", () => {
  it("takes host, transport_url, the RPC timeouts and [oslo_messaging_rabbit] from neutron.conf; empty paths stay unset", () => {
    const conf = join(tmp, "neutron.conf");
    writeFileSync(
      conf,
      [
        "[DEFAULT]",
        "host = network-1",
        "transport_url = rabbit://neutron:secret@10.0.0.5:5672/",
        "rpc_response_timeout = 30",
        "[agent]",
        "report_interval = 10",
        "[oslo_messaging_rabbit]",
        "ssl = true",
        "ssl_ca_file =",
        "heartbeat_timeout_threshold = 20",
      ].join("\n"),
    );
    const layer = mapNeutronConfig(NeutronConfig.read([{ file: conf }]), composeAgentConfig([neutronL3RpcPlugin]).neutron);
    expect(layer.problems).toEqual([]);
    expect(layer.values).toMatchObject({
      host: "network-1",
      transport_url: "rabbit://neutron:secret@10.0.0.5:5672/",
      rpc_response_timeout: 30,
      report_interval: 10,
      rabbit_ssl: true,
      heartbeat_timeout_threshold: 20,
    });
    expect(layer.values).not.toHaveProperty("rabbit_ssl_ca_file");
  });
});
