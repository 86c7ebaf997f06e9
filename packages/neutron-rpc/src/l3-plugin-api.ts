import { describeAnswer, NeutronRpcError } from "./neutron-rpc-error.js";
import type { RpcTransport } from "./rpc-transport.js";

/** A router dict as the server sends it: kept as it comes, the l3 handler validates it. */
export type RouterDict = Record<string, unknown> & { id?: unknown };

/** A floating IP status Neutron knows (`neutron_lib.constants.FLOATINGIP_STATUS_*`). */
export type FloatingIpStatus = "ACTIVE" | "DOWN" | "ERROR";

/** Neutron's topic for the l3 plugin (`neutron_lib.agent.topics.L3PLUGIN`). */
export const L3_PLUGIN_TOPIC = "q-l3-plugin";

/**
 * The server side of Neutron's `L3PluginApi` (`neutron.agent.l3.agent`) that a legacy router agent
 * uses, with the versions Neutron's agent asks for.
 */
export class L3PluginApi {
  constructor(
    private readonly rpc: RpcTransport,
    private readonly host: string,
    private readonly timeoutMs: number,
  ) {}

  /** The routers the server schedules to this host. */
  async getRouterIds(): Promise<string[]> {
    const ids = await this.rpc.call<unknown>({ topic: L3_PLUGIN_TOPIC, version: "1.9" }, "get_router_ids", { host: this.host }, { timeoutMs: this.timeoutMs });
    if (!Array.isArray(ids) || !ids.every((id) => typeof id === "string")) {
      throw new NeutronRpcError("NEUTRON_RPC_BAD_ANSWER", `get_router_ids answered ${describeAnswer(ids)}, not a list of router ids`);
    }
    return ids;
  }

  /** The full router dicts (interfaces, gateway, floating IPs) for these ids, as this host should have them. */
  async syncRouters(routerIds: readonly string[], timeoutMs = this.timeoutMs): Promise<RouterDict[]> {
    const routers = await this.rpc.call<unknown>({ topic: L3_PLUGIN_TOPIC, version: "1.0" }, "sync_routers", { host: this.host, router_ids: routerIds }, { timeoutMs });
    if (!Array.isArray(routers)) throw new NeutronRpcError("NEUTRON_RPC_BAD_ANSWER", `sync_routers answered ${describeAnswer(routers)}, not a list of routers`);
    return routers as RouterDict[];
  }

  async updateFloatingipStatuses(routerId: string, statuses: Record<string, FloatingIpStatus>): Promise<void> {
    await this.rpc.call({ topic: L3_PLUGIN_TOPIC, version: "1.1" }, "update_floatingip_statuses", { router_id: routerId, fip_statuses: statuses }, { timeoutMs: this.timeoutMs });
  }
}

