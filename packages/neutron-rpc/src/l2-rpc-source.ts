import type { StateSink, StateSource } from "@chainwarden/agent";
import type { IpRunner } from "@chainwarden/core";
import type { Logger } from "pino";
import type { RpcEndpoints, RpcTransport } from "./rpc-transport.js";
import { SecurityGroupRpcApi, type SecurityGroupInfo } from "./security-group-rpc-api.js";
import { tapName, TapDevices } from "./tap-devices.js";

/** Where the server casts security group changes (`q-agent-notifier` + `security_group` + `update`, fanout). */
export const SECURITY_GROUP_UPDATE_TOPIC = "q-agent-notifier-security_group-update";
/** The Linux bridge agent's RPC API version (`LinuxBridgeRpcCallbacks.target`); security group casts are 1.1. */
export const L2_AGENT_API_VERSION = "1.5";
export const PORT_UPDATE_TOPIC = "q-agent-notifier-port-update";
export const PORT_DELETE_TOPIC = "q-agent-notifier-port-delete";

export interface L2RpcSourceOptions {
  rpc: RpcTransport;
  host: string;
  runner: IpRunner;
  /** The namespace with the bridges and taps (undefined: the host's). */
  namespace?: string;
  timeoutMs: number;
  /** Neutron `rpc_resources_processing_step`: devices per `security_group_info_for_devices` call. */
  step: number;
  resyncIntervalMs: number;
  /** How long `start` waits for the first answer before the agent goes on without state. */
  firstSyncWaitMs: number;
  pollMs?: number;
  logger: Logger;
  /** Retry backoff after a failed fetch. */
  retryMs?: number;
}

/**
 * The l2 agent's desired state from neutron-server, as the security-group half of Neutron's Linux
 * bridge agent gets it (that agent runs beside us with `firewall_driver = noop` and keeps the
 * bridges): the tap devices on the host are the devices; `security_group_info_for_devices` answers
 * for them; the security group fanout (`security_groups_rule_updated`,
 * `security_groups_member_updated`), `port_update` and `port_delete` say which to ask again.
 * Delivered as the answer's own shape — `devices`, `security_groups`, `sg_member_ips` — plus
 * `trusted_devices`: taps of ports bound here that the server leaves out of its answer because
 * Neutron trusts them (`device_owner` `network:*`), as Neutron's agent decides them. A tap that is no
 * port of this host is neither filtered nor trusted, as in Neutron.
 */
export class L2RpcSource implements StateSource {
  readonly name = "neutron-rpc";
  readonly api: SecurityGroupRpcApi;
  readonly taps: TapDevices;
  /** Port dicts by device (tap) name. */
  private readonly ports = new Map<string, Record<string, unknown>>();
  private readonly groups = new Map<string, unknown[]>();
  private readonly memberIps = new Map<string, Record<string, unknown>>();
  private readonly trusted = new Set<string>();
  private readonly pending = new Set<string>();
  private fullWanted: string | undefined;
  private synced = false;
  private running: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private stopped = false;
  private sink: StateSink | undefined;
  private firstSync: (() => void) | undefined;

  constructor(private readonly options: L2RpcSourceOptions) {
    this.api = new SecurityGroupRpcApi(options.rpc, options.host, options.timeoutMs);
    this.taps = new TapDevices({
      runner: options.runner,
      namespace: options.namespace,
      pollMs: options.pollMs,
      logger: options.logger,
      onChange: (added, removed) => {
        for (const d of [...added, ...removed]) this.pending.add(d);
        this.kick();
      },
    });
  }

  async start(sink: StateSink): Promise<void> {
    this.sink = sink;
    const { rpc, host, logger } = this.options;
    rpc.onReconnected(() => {
      logger.info("reconnected to the message broker: asking for every device again (casts sent meanwhile are lost)");
      this.full("reconnected");
    });
    await rpc.serve({ topic: SECURITY_GROUP_UPDATE_TOPIC, server: host, version: L2_AGENT_API_VERSION }, this.securityGroupEndpoints());
    await rpc.serve({ topic: PORT_UPDATE_TOPIC, server: host, version: L2_AGENT_API_VERSION }, { port_update: ({ port }) => this.portChanged((port as { id?: unknown } | undefined)?.id) });
    await rpc.serve({ topic: PORT_DELETE_TOPIC, server: host, version: L2_AGENT_API_VERSION }, { port_delete: ({ port_id }) => this.portChanged(port_id) });
    const synced = new Promise<void>((resolve) => (this.firstSync = resolve));
    await this.taps.start();
    this.full("start");
    let timer: NodeJS.Timeout | undefined;
    const waited = await Promise.race([synced.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), this.options.firstSyncWaitMs)))]);
    clearTimeout(timer);
    if (!waited) {
      sink.problem({ source: this.name, path: "", message: `no answer from neutron-server yet (host ${host}); nothing on the host is changed until one arrives` });
    }
    if (this.options.resyncIntervalMs > 0) {
      this.resyncTimer = setInterval(() => this.full("periodic resync"), this.options.resyncIntervalMs);
      this.resyncTimer.unref?.();
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.sink = undefined;
    clearInterval(this.resyncTimer);
    clearTimeout(this.retryTimer);
    this.taps.stop();
    while (this.running) await this.running;
    await this.options.rpc.close();
  }

  /** Resolves when nothing is queued or running. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  securityGroupEndpoints(): RpcEndpoints {
    return {
      security_groups_rule_updated: ({ security_groups }) => {
        const changed = new Set(Array.isArray(security_groups) ? security_groups : []);
        for (const [device, port] of this.ports) {
          const sgs = Array.isArray(port.security_groups) ? port.security_groups : [];
          if (sgs.some((sg) => changed.has(sg))) this.pending.add(device);
        }
        this.kick();
      },
      // Members change the address sets of the groups that name them as remote groups: ask again for all.
      security_groups_member_updated: () => this.full("security group members updated"),
    };
  }

  private portChanged(portId: unknown): void {
    if (typeof portId !== "string") return;
    const device = tapName(portId);
    if (!this.taps.devices.has(device) && !this.ports.has(device)) return;
    this.pending.add(device);
    this.kick();
  }

  private full(reason: string): void {
    this.fullWanted ??= reason;
    this.kick();
  }

  private kick(): void {
    if (this.stopped || this.running || this.retryTimer) return;
    if (this.fullWanted === undefined && (this.pending.size === 0 || !this.synced)) return;
    this.running = this.drain().finally(() => {
      this.running = undefined;
      this.kick();
    });
  }

  private async drain(): Promise<void> {
    const reason = this.fullWanted;
    const devices = reason !== undefined ? [...this.taps.devices] : [...this.pending];
    this.fullWanted = undefined;
    const asked = new Set(devices);
    if (reason !== undefined) this.pending.clear();
    else for (const d of devices) this.pending.delete(d);
    try {
      await this.fetch(devices, reason !== undefined);
      this.failures = 0;
    } catch (err) {
      if (reason !== undefined) this.fullWanted ??= reason;
      else for (const d of asked) this.pending.add(d);
      this.failures++;
      const delay = Math.min((this.options.retryMs ?? 1000) * 2 ** (this.failures - 1), 60_000);
      this.options.logger.warn({ err, retryInMs: delay }, "asking neutron-server for security group information failed; what the host has stays, retrying");
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.kick();
      }, delay);
      this.retryTimer.unref?.();
    }
  }

  /** Asks for `devices` (those still on the host) and merges the answer; `full` replaces everything. */
  private async fetch(devices: readonly string[], full: boolean): Promise<void> {
    const present = devices.filter((d) => this.taps.devices.has(d));
    const info: SecurityGroupInfo = { devices: {}, security_groups: {}, sg_member_ips: {} };
    for (let i = 0; i < present.length; i += this.options.step) {
      const part = await this.api.securityGroupInfoForDevices(present.slice(i, i + this.options.step));
      Object.assign(info.devices, part.devices);
      Object.assign(info.security_groups, part.security_groups);
      Object.assign(info.sg_member_ips, part.sg_member_ips);
    }
    const answered = new Set<string>();
    const ports = new Map<string, Record<string, unknown>>();
    for (const port of Object.values(info.devices)) {
      const device = typeof port?.device === "string" ? port.device : undefined;
      if (device) {
        ports.set(device, port);
        answered.add(device);
      }
    }
    // Taps the server left out: trusted when they are ports bound here owned by the network.
    const unanswered = present.filter((d) => !answered.has(d));
    const trusted = new Set<string>();
    if (unanswered.length > 0) {
      const bound = await this.api.boundPorts();
      const networkOwned = new Set(bound.filter((p) => p.device_owner?.startsWith("network:")).map((p) => tapName(p.id)));
      for (const d of unanswered) if (networkOwned.has(d)) trusted.add(d);
    }

    if (full) {
      this.ports.clear();
      this.groups.clear();
      this.memberIps.clear();
      this.trusted.clear();
    } else {
      for (const d of devices) {
        this.ports.delete(d);
        this.trusted.delete(d);
      }
    }
    for (const [device, port] of ports) this.ports.set(device, port);
    for (const d of trusted) this.trusted.add(d);
    for (const [id, rules] of Object.entries(info.security_groups)) this.groups.set(id, rules);
    for (const [id, ips] of Object.entries(info.sg_member_ips)) this.memberIps.set(id, ips);
    this.prune();
    this.synced = true;
    this.publish(full ? "full" : `${devices.length} devices`);
  }

  /** Groups no port uses any more (and remote groups no rule names) leave the document. */
  private prune(): void {
    const used = new Set<string>();
    for (const port of this.ports.values()) for (const sg of Array.isArray(port.security_groups) ? port.security_groups : []) if (typeof sg === "string") used.add(sg);
    for (const id of this.groups.keys()) if (!used.has(id)) this.groups.delete(id);
    const remote = new Set<string>();
    for (const rules of this.groups.values()) for (const r of rules) {
      const g = (r as { remote_group_id?: unknown } | null)?.remote_group_id;
      if (typeof g === "string") remote.add(g);
    }
    for (const id of this.memberIps.keys()) if (!remote.has(id)) this.memberIps.delete(id);
  }

  private publish(why: string): void {
    const devices: Record<string, Record<string, unknown>> = {};
    for (const port of this.ports.values()) devices[String(port.id)] = port;
    this.options.logger.debug({ ports: this.ports.size, trusted: this.trusted.size, why }, "security group information from neutron-server");
    this.sink?.update(
      {
        devices,
        security_groups: Object.fromEntries(this.groups),
        sg_member_ips: Object.fromEntries(this.memberIps),
        trusted_devices: [...this.trusted].sort(),
      },
      "neutron-server",
    );
    this.firstSync?.();
    this.firstSync = undefined;
  }
}
