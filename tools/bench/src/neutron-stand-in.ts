/**
 * A stand-in for neutron-server's agent RPC, on our own `@chainwarden/oslo-messaging`: the l3 plugin
 * (`q-l3-plugin`), the agents' heartbeats (`q-reports-plugin`) and the security group / port calls
 * of the core plugin (`q-plugin`), answering with dicts generated in the real server's shapes
 * (`neutron-shapes.ts`), and the casts the real server sends when a floating IP or a security group
 * rule changes, with the recorded methods, versions, arguments and context.
 *
 * Why not neutron-server itself (`NeutronServerLab`): building 200 routers × 10 floating IPs through
 * its API and database takes many minutes per run, and its own CPU would share the bench's two cores
 * with the agents being measured. What the agents see on the wire is the same.
 */
import { RpcTransport, type RpcContext, type RpcEndpoint } from "@chainwarden/oslo-messaging";
import { recordedCast, serverContext, type SecurityGroupFactory } from "./neutron-shapes.js";

type Dict = Record<string, any>;

/** Topics and versions as neutron 21's server serves them and its agents call them. */
const L3_PLUGIN = { topic: "q-l3-plugin", version: "1.12" };
const REPORTS = { topic: "q-reports-plugin", version: "1.2" };
const PLUGIN = { topic: "q-plugin", version: "1.9" };
const ROUTERS_UPDATED = recordedCast("floating IP associated", "routers_updated");
const RULE_UPDATED = recordedCast("security group rule created", "security_groups_rule_updated");

export class NeutronStandIn {
  /** Routers by host, then by id, as the server schedules them. */
  private readonly routers = new Map<string, Map<string, Dict>>();
  private securityGroups: SecurityGroupFactory | undefined;
  private readonly reported = new Set<string>();
  /** Calls served, by method. */
  readonly calls = new Map<string, number>();
  /** When each host first called anything, and each method was first called (epoch ms). */
  readonly firstCall = new Map<string, number>();
  /** When each method was last called (epoch ms). */
  readonly lastCall = new Map<string, number>();

  private constructor(private readonly transport: RpcTransport) {}

  static async start(transportUrl: string, name: string): Promise<NeutronStandIn> {
    const transport = await RpcTransport.connect({ transportUrl, controlExchange: "neutron", rpcResponseTimeoutMs: 60_000 });
    const standIn = new NeutronStandIn(transport);
    try {
      await transport.serve({ topic: L3_PLUGIN.topic, server: name }, [{ version: L3_PLUGIN.version, methods: standIn.l3PluginMethods() }]);
      await transport.serve({ topic: REPORTS.topic, server: name }, [{ version: REPORTS.version, methods: standIn.reportMethods() }]);
      await transport.serve({ topic: PLUGIN.topic, server: name }, [{ version: PLUGIN.version, methods: standIn.pluginMethods() }]);
    } catch (err) {
      await transport.close();
      throw err;
    }
    return standIn;
  }

  async close(): Promise<void> {
    await this.transport.close();
  }

  /** Schedules routers to `host`. */
  addRouters(host: string, routers: readonly Dict[]): void {
    const mine = this.routers.get(host) ?? new Map<string, Dict>();
    for (const r of routers) mine.set(r.id as string, r);
    this.routers.set(host, mine);
  }

  routersOf(host: string): Dict[] {
    return [...(this.routers.get(host)?.values() ?? [])];
  }

  serveSecurityGroups(group: SecurityGroupFactory): void {
    this.securityGroups = group;
  }

  /** `routers_updated` to the hosting agent's own queue, as the server casts it after a floating IP change. */
  async routersUpdated(host: string, routerIds: readonly string[]): Promise<void> {
    await this.transport.cast({ topic: "l3_agent", server: host, version: ROUTERS_UPDATED.version }, "routers_updated", { routers: [...routerIds] }, { context: serverContext(ROUTERS_UPDATED.context) });
  }

  /** `security_groups_rule_updated`, fanout to every l2 agent, as the server casts it after a rule is created. */
  async securityGroupsRuleUpdated(groupIds: readonly string[]): Promise<void> {
    await this.transport.cast(
      { topic: "q-agent-notifier-security_group-update", fanout: true, version: RULE_UPDATED.version },
      "security_groups_rule_updated",
      { security_groups: [...groupIds] },
      { context: serverContext(RULE_UPDATED.context) },
    );
  }

  private readonly next = new Map<string, ((time: number) => void)[]>();

  /** Resolves with the time (epoch ms) of the next call of `method`. */
  nextCall(method: string): Promise<number> {
    return new Promise((resolve) => this.next.set(method, [...(this.next.get(method) ?? []), resolve]));
  }

  private count(method: string, host: unknown): void {
    const now = Date.now();
    this.calls.set(method, (this.calls.get(method) ?? 0) + 1);
    this.lastCall.set(method, now);
    for (const key of [method, host]) if (typeof key === "string" && !this.firstCall.has(key)) this.firstCall.set(key, now);
    for (const resolve of this.next.get(method) ?? []) resolve(now);
    this.next.delete(method);
  }

  private l3PluginMethods(): RpcEndpoint["methods"] {
    return {
      get_host_ha_router_count: (_c: RpcContext, { host }) => {
        this.count("get_host_ha_router_count", host);
        return 0;
      },
      get_router_ids: (_c, { host }) => {
        this.count("get_router_ids", host);
        return [...(this.routers.get(host as string)?.keys() ?? [])];
      },
      sync_routers: (_c, { host, router_ids }) => {
        this.count("sync_routers", host);
        const mine = this.routers.get(host as string);
        if (!mine) return [];
        if (!Array.isArray(router_ids)) return [...mine.values()];
        return router_ids.flatMap((id) => (mine.has(id as string) ? [mine.get(id as string)!] : []));
      },
      // As the server: the statuses are stored, and the next sync_routers carries them.
      update_floatingip_statuses: (_c, { router_id, fip_statuses }) => {
        this.count("update_floatingip_statuses", undefined);
        for (const mine of this.routers.values()) {
          const router = mine.get(router_id as string);
          for (const fip of (router?._floatingips as Dict[] | undefined) ?? []) {
            const status = (fip_statuses as Dict)[fip.id];
            if (typeof status === "string") fip.status = status;
          }
        }
        return null;
      },
      get_service_plugin_list: () => ["router"],
      get_networks: () => [],
      update_all_ha_network_port_statuses: () => null,
    };
  }

  private reportMethods(): RpcEndpoint["methods"] {
    return {
      report_state: (_c, { agent_state }) => {
        const host = (agent_state as Dict | undefined)?.agent_state?.host;
        this.count("report_state", host);
        if (typeof host !== "string" || this.reported.has(host)) return "alive";
        this.reported.add(host);
        return "new";
      },
      has_alive_neutron_server: () => true,
    };
  }

  private pluginMethods(): RpcEndpoint["methods"] {
    return {
      security_group_info_for_devices: (_c, { devices }) => {
        this.count("security_group_info_for_devices", undefined);
        const answer = this.securityGroups?.answer(Array.isArray(devices) ? devices : []);
        return answer ?? { devices: {}, security_groups: {}, sg_member_ips: {} };
      },
      get_ports_by_vnic_type_and_host: (_c, { host }) => {
        this.count("get_ports_by_vnic_type_and_host", host);
        return [...(this.securityGroups?.ports.values() ?? [])].filter((p) => p["binding:host_id"] === host);
      },
    };
  }
}
