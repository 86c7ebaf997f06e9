import type { StateSink, StateSource, StateSourceHealth } from "@chainwarden/agent";
import type { Logger } from "pino";
import { FloatingIpStatuses } from "./floating-ip-statuses.js";
import { L3PluginApi, type RouterDict } from "./l3-plugin-api.js";
import { RouterSync } from "./router-sync.js";
import type { RpcEndpoints, RpcTransport } from "./rpc-transport.js";
import { StateReporter, type AgentState } from "./state-reporter.js";

/** Neutron's topic for casts to l3 agents (`neutron_lib.agent.topics.L3_AGENT`); the host's own is `l3_agent.<host>`. */
export const L3_AGENT_TOPIC = "l3_agent";

/** The version of the l3 agent's RPC API Neutron's agent serves (`L3NATAgent.target`). */
export const L3_AGENT_API_VERSION = "1.4";

/** Where the server casts network changes to agents (`q-agent-notifier` + `network` + `update`). */
export const NETWORK_UPDATE_TOPIC = "q-agent-notifier-network-update";

/** Top-level keys of the l3 agent's document neutron-server's RPC does not carry here (no neutron-fwaas). */
export const FWAAS_KEYS = ["firewalls", "firewall_groups"] as const;

export interface L3RpcSourceOptions {
  rpc: RpcTransport;
  /** Neutron `[DEFAULT] host`: the name the server schedules routers to. */
  host: string;
  /** Neutron `rpc_response_timeout`, for calls. */
  timeoutMs: number;
  /** Neutron `[AGENT] report_interval`. */
  reportIntervalMs: number;
  /** A full resync this often even when nothing failed (0: only when needed). */
  resyncIntervalMs: number;
  /** How long `start` waits for the first full sync before it lets the agent go on without state. */
  firstSyncWaitMs: number;
  /** What `report_state` says in `configurations` (interface driver, extensions). */
  configurations: Record<string, unknown>;
  availabilityZone?: string;
  logger: Logger;
}

/**
 * The l3 agent's desired state from neutron-server, as `neutron-l3-agent` gets it: reports state as
 * an `L3 agent` on `q-reports-plugin` (so the server schedules routers here), consumes the casts on
 * `l3_agent` / `l3_agent.<host>` (`routers_updated`, `router_deleted`, `router_added_to_agent`,
 * `router_removed_from_agent`, `agent_updated`), keeps the routers in step through `RouterSync`, and
 * delivers `{ routers: [...] }` — the server's dicts as they come — to the agent. Floating IP
 * statuses go back through `floatingIpStatuses`, an apply observer.
 *
 * Nothing is delivered before a full sync completed, so a start without the server removes nothing.
 */
export class L3RpcSource implements StateSource {
  readonly name = "neutron-rpc";
  readonly api: L3PluginApi;
  readonly routers: RouterSync;
  readonly reporter: StateReporter;
  readonly floatingIpStatuses: FloatingIpStatuses;
  private sink: StateSink | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private firstSync: (() => void) | undefined;
  private startSyncAsked = false;

  constructor(private readonly options: L3RpcSourceOptions) {
    const { rpc, host, logger } = options;
    this.api = new L3PluginApi(rpc, host, options.timeoutMs);
    this.routers = new RouterSync({ api: this.api, logger, publish: (routers, why) => this.publish(routers, why) });
    const state: AgentState = {
      binary: "neutron-l3-agent",
      host,
      topic: L3_AGENT_TOPIC,
      agent_type: "L3 agent",
      ...(options.availabilityZone ? { availability_zone: options.availabilityZone } : {}),
      configurations: { agent_mode: "legacy", handle_internal_only_routers: true, log_agent_heartbeats: false, extensions: [], ...options.configurations },
    };
    this.reporter = new StateReporter({
      rpc,
      state,
      intervalMs: options.reportIntervalMs,
      counts: () => countRouters(this.routers.current),
      // A revived answer to the first report is answered by the start's own full sync, which follows
      // it at once: a second one would process every router twice (and Neutron's agent, whose
      // `fullsync` flag is already set at start, does one).
      onRevived: () => {
        if (this.startSyncAsked) this.routers.fullSync("agent revived");
      },
      logger,
    });
    this.floatingIpStatuses = new FloatingIpStatuses({ api: this.api, routers: () => this.routers.current, logger });
  }

  async start(sink: StateSink): Promise<void> {
    this.sink = sink;
    const { rpc, host, logger } = this.options;
    rpc.onReconnected(() => {
      logger.info("reconnected to the message broker: full sync (casts sent meanwhile are lost)");
      this.routers.fullSync("reconnected");
    });
    await rpc.serve({ topic: L3_AGENT_TOPIC, server: host, version: L3_AGENT_API_VERSION }, this.endpoints());
    await rpc.serve({ topic: NETWORK_UPDATE_TOPIC, server: host, version: L3_AGENT_API_VERSION }, this.networkEndpoints());
    // As Neutron's agent: report before the first sync, so the server schedules routers made before
    // any l3 agent existed to this one when it answers `sync_routers`.
    await this.reporter.start();
    const synced = new Promise<void>((resolve) => (this.firstSync = resolve));
    this.routers.fullSync("start");
    this.startSyncAsked = true;
    let timer: NodeJS.Timeout | undefined;
    const waited = await Promise.race([synced.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), this.options.firstSyncWaitMs)))]);
    clearTimeout(timer);
    if (!waited) {
      sink.problem({
        source: this.name,
        path: "",
        message: `no full sync from neutron-server yet (host ${host}); nothing on the host is changed until one arrives`,
      });
    }
    if (this.options.resyncIntervalMs > 0) {
      this.resyncTimer = setInterval(() => this.routers.fullSync("periodic resync"), this.options.resyncIntervalMs);
      this.resyncTimer.unref?.();
    }
  }

  /** Delivered once a full sync of routers completed; connected as the transport says (the broker). */
  health(): StateSourceHealth {
    return rpcSourceHealth(this.routers.synced, this.options.rpc.connected?.(), "no full sync of routers from neutron-server yet");
  }

  async stop(): Promise<void> {
    clearInterval(this.resyncTimer);
    this.sink = undefined;
    await this.reporter.stop();
    await this.routers.stop();
    await this.options.rpc.close();
  }

  /** The l3 agent's RPC endpoints (`L3NATAgent`'s methods the server casts to). */
  endpoints(): RpcEndpoints {
    const ids = (value: unknown): string[] =>
      Array.isArray(value) ? value.map((r) => (typeof r === "object" && r !== null ? (r as { id?: unknown }).id : r)).filter((id): id is string => typeof id === "string") : [];
    // As Neutron's agent, each cast is logged at debug ("Got routers updated notification").
    const heard = (method: string, routers: string[]) => this.options.logger.debug({ method, routers }, "router change from neutron-server");
    return {
      routers_updated: ({ routers }) => {
        heard("routers_updated", ids(routers));
        this.routers.updated(ids(routers));
      },
      router_deleted: ({ router_id }) => {
        if (typeof router_id !== "string") return;
        heard("router_deleted", [router_id]);
        this.routers.removed(router_id);
      },
      router_added_to_agent: ({ payload }) => {
        heard("router_added_to_agent", ids(payload));
        this.routers.updated(ids(payload));
      },
      router_removed_from_agent: ({ payload }) => {
        const id = (payload as { router_id?: unknown } | undefined)?.router_id;
        if (typeof id !== "string") return;
        heard("router_removed_from_agent", [id]);
        this.routers.removed(id);
      },
      agent_updated: ({ payload }) => {
        this.options.logger.info({ payload }, "agent updated by neutron-server: full sync");
        this.routers.fullSync("agent updated");
      },
    };
  }

  /** `network_update` on `q-agent-notifier-network-update`: the routers with a port on the network are fetched again (an MTU change). */
  networkEndpoints(): RpcEndpoints {
    return {
      network_update: ({ network }) => {
        const id = (network as { id?: unknown } | undefined)?.id;
        if (typeof id !== "string") return;
        const onIt = [...this.routers.current.values()].filter((r) => routerUsesNetwork(r, id)).map((r) => r.id as string);
        if (onIt.length > 0) this.routers.updated(onIt);
      },
    };
  }

  private publish(routers: readonly RouterDict[], why: string): void {
    this.options.logger.debug({ routers: routers.length, why }, "routers from neutron-server");
    this.sink?.update({ routers: [...routers] }, "neutron-server", { notDelivered: FWAAS_KEYS });
    this.firstSync?.();
    this.firstSync = undefined;
  }
}

/** A source's health from whether it synced and whether its transport is connected (undefined: unknown). */
export function rpcSourceHealth(delivered: boolean, connected: boolean | undefined, waiting: string): StateSourceHealth {
  const detail = [connected === false ? "not connected to the message broker" : undefined, delivered ? undefined : waiting].filter(Boolean).join("; ");
  return { delivered, ...(connected !== undefined ? { connected } : {}), ...(detail ? { detail } : {}) };
}

/** `report_state`'s counts, as Neutron's agent computes them from the routers it has. */
export function countRouters(routers: ReadonlyMap<string, RouterDict>): Record<string, number> {
  let exGwPorts = 0;
  let interfaces = 0;
  let floatingIps = 0;
  for (const r of routers.values()) {
    if (r.gw_port) exGwPorts++;
    if (Array.isArray(r._interfaces)) interfaces += r._interfaces.length;
    if (Array.isArray(r._floatingips)) floatingIps += r._floatingips.length;
  }
  return { routers: routers.size, ex_gw_ports: exGwPorts, interfaces, floating_ips: floatingIps };
}

function routerUsesNetwork(router: RouterDict, networkId: string): boolean {
  const ports = [router.gw_port, ...(Array.isArray(router._interfaces) ? router._interfaces : [])];
  return ports.some((p) => typeof p === "object" && p !== null && (p as { network_id?: unknown }).network_id === networkId);
}
