import type { PluginEnvironment } from "@chainwarden/agent";
import { createL3NatControlPlane, l3NatControlPlaneService, l3NatSettingsService, resolveBridgeMode } from "@chainwarden/l3-nat";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import type { ConnectRpc } from "./connect-rpc.js";
import { createNeutronL3RpcPlugin } from "./neutron-l3-rpc-plugin.js";
import { neutronRpcSettingsKeys } from "./neutron-rpc-settings.js";

/** Registers the plugin against l3-nat's services as the agent would (it connects only when started). */
function register(settings: Record<string, unknown>) {
  const controlPlane = createL3NatControlPlane();
  const services = new Map<unknown, unknown>([
    [l3NatSettingsService, { interfaceDriver: "linuxbridge" }],
    [l3NatControlPlaneService, controlPlane],
  ]);
  const extensions: unknown[] = [];
  const env = {
    plugin: "neutron-l3-rpc",
    settings: z.object(neutronRpcSettingsKeys).parse(settings),
    logger: pino({ level: "silent" }),
    use: (token: unknown) => services.get(token),
    addExtension: (_point: unknown, extension: unknown) => void extensions.push(extension),
  } as unknown as PluginEnvironment<never, z.output<z.ZodObject<typeof neutronRpcSettingsKeys>>>;
  const connect: ConnectRpc = () => {
    throw new Error("not connected in this test");
  };
  createNeutronL3RpcPlugin(connect).register(env);
  return { controlPlane, extensions };
}

describe("neutron-l3-rpc tells l3-nat that a Neutron control plane drives it", () => {
  it("with transport_url: the routers come from neutron-server, so bridge_mode auto leaves the bridges to the l2 agent", () => {
    const { controlPlane, extensions } = register({ transport_url: "rabbit://u:p@127.0.0.1:5672/", host: "network-1" });
    expect(extensions).toHaveLength(2);
    expect(controlPlane.neutronSource).toBe("neutron-rpc");
    expect(resolveBridgeMode("auto", controlPlane).mode).toBe("neutron");
    // An explicit mode wins.
    expect(resolveBridgeMode("standalone", controlPlane).mode).toBe("standalone");
  });

  it("without transport_url: files, standalone", () => {
    const { controlPlane, extensions } = register({ host: "network-1" });
    expect(extensions).toEqual([]);
    expect(controlPlane.neutronSource).toBeUndefined();
    expect(resolveBridgeMode("auto", controlPlane).mode).toBe("standalone");
  });
});
