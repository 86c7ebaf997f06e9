import { ProgressLog, type StateSink, type StateSource, type StateSourceHealth } from "@chainwarden/agent";
import { rpcSourceHealth } from "./l3-rpc-source.js";
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

const DEFAULT_COALESCE_MS = 50;

/** How often a group cast is retried with another port when the one asked did not bring the group back. */
const MAX_GROUP_ATTEMPTS = 3;

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
  /**
   * How long a cast or a tap change waits for others before the server is asked (default 50 ms):
   * one API change casts several messages at once (a port's groups changed: the member update and
   * its `port_update`), and they then cost one call instead of one each.
   */
  coalesceMs?: number;
}

type PortDict = Record<string, unknown>;

/** A security group cast to answer: the group's rules, or its members of one ethertype, and the port asked for it. */
interface GroupWant {
  kind: "rules" | "members";
  group: string;
  ethertype?: string;
  device: string;
  attempts: number;
}

/**
 * The l2 agent's desired state from neutron-server, as the security-group half of Neutron's Linux
 * bridge agent gets it (that agent runs beside us with `firewall_driver = noop` and keeps the
 * bridges). Delivered as the answer's own shape — `devices`, `security_groups`, `sg_member_ips` —
 * plus `trusted_devices`.
 *
 * The model:
 * - **The devices are the taps on the host** (`TapDevices`: `tap<port id[:11]>` in the namespace).
 *   A tap that appears is asked about (`security_group_info_for_devices`, in chunks of `step`); a
 *   tap that goes takes its port (or trusted entry) out of the document at once, without asking.
 * - **What a tap had stays while it exists.** A port the server stops answering for (deleted, or
 *   turned into a network port) keeps its last rules until its tap goes, as in Neutron's agent (whose
 *   firewall keeps the port); a tap the server never answered for is trusted only when it is a port
 *   bound to this host owned by the network (`device_owner` `network:*`, from
 *   `get_ports_by_vnic_type_and_host`). Neutron's agent trusts every tap the server leaves out; we
 *   do not accept a tap that is no port at all (it gets no rule, the FORWARD policy decides).
 * - **Partial answers merge.** Rules are per group and member lists per group and ethertype, shared
 *   by every port that uses them: an answer replaces the groups it carries and, for the member
 *   lists, the ethertypes it carries (the server lists only the ethertypes its asked ports' rules
 *   name). What no port uses any more leaves the document.
 * - **Casts.** `port_update` asks again for that port; `port_delete` marks it gone (its rules stay
 *   until its tap goes: nothing to ask). `security_groups_rule_updated` and
 *   `security_groups_member_updated` change only what is shared — a group's rules, a remote group's
 *   members — so one port that uses the group (for members: one per ethertype a rule names it
 *   with) is asked for, not every port of the group as Neutron's agent does: with 2,000 ports in the
 *   default group a VM booting elsewhere costs one call, not a hundred. A port asked that no longer
 *   brings the group back (its groups changed meanwhile) makes another one be asked.
 * - **Nothing is delivered before the first full answer**; every reconnect, `server_resync_interval`
 *   and a failure retried with backoff asks for every tap again. A failed fetch changes nothing.
 */
export class L2RpcSource implements StateSource {
  readonly name = "neutron-rpc";
  readonly api: SecurityGroupRpcApi;
  readonly taps: TapDevices;
  /** Port dicts by device (tap) name. */
  private readonly ports = new Map<string, PortDict>();
  /** Devices whose port the server no longer answers for: their last port dict stays while the tap exists. */
  private readonly gone = new Set<string>();
  private readonly groups = new Map<string, unknown[]>();
  private readonly memberIps = new Map<string, Record<string, unknown>>();
  private readonly trusted = new Set<string>();
  /** Devices to ask about again. */
  private readonly pending = new Set<string>();
  /** Groups whose rules (or members) changed, with how often they were asked for already. */
  private readonly rulesWanted = new Map<string, number>();
  private readonly membersWanted = new Map<string, number>();
  private fullWanted: string | undefined;
  private synced = false;
  private running: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private coalesceTimer: NodeJS.Timeout | undefined;
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
      onChange: (added, removed) => this.tapsChanged(added, removed),
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
    await rpc.serve({ topic: PORT_UPDATE_TOPIC, server: host, version: L2_AGENT_API_VERSION }, { port_update: ({ port }) => this.portUpdated((port as { id?: unknown } | undefined)?.id) });
    await rpc.serve({ topic: PORT_DELETE_TOPIC, server: host, version: L2_AGENT_API_VERSION }, { port_delete: ({ port_id }) => this.portDeleted(port_id) });
    const synced = new Promise<void>((resolve) => (this.firstSync = resolve));
    await this.taps.start();
    this.full("start");
    let timer: NodeJS.Timeout | undefined;
    const waited = await Promise.race([synced.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), this.options.firstSyncWaitMs)))]);
    clearTimeout(timer);
    if (!waited && !this.stopped) {
      sink.problem({ source: this.name, path: "", message: `no answer from neutron-server yet (host ${host}); nothing on the host is changed until one arrives` });
    }
    if (this.options.resyncIntervalMs > 0 && !this.stopped) {
      this.resyncTimer = setInterval(() => this.full("periodic resync"), this.options.resyncIntervalMs);
      this.resyncTimer.unref?.();
    }
  }

  /** Delivered once neutron-server answered for the taps on the host; connected as the transport says (the broker). */
  health(): StateSourceHealth {
    return rpcSourceHealth(this.synced, this.options.rpc.connected?.(), "no answer from neutron-server for the devices on this host yet");
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.sink = undefined;
    clearInterval(this.resyncTimer);
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    clearTimeout(this.coalesceTimer);
    this.coalesceTimer = undefined;
    this.taps.stop();
    this.firstSync?.();
    // Closing fails the calls in flight, so a stop does not wait out rpc_response_timeout.
    await this.options.rpc.close();
    while (this.running) await this.running;
  }

  /** Resolves when nothing is queued or running (a fetch waiting for its retry does not count). */
  async idle(): Promise<void> {
    for (;;) {
      if (this.running) await this.running;
      else if (this.coalesceTimer) await new Promise((r) => setTimeout(r, this.options.coalesceMs ?? DEFAULT_COALESCE_MS));
      else return;
    }
  }

  securityGroupEndpoints(): RpcEndpoints {
    return {
      security_groups_rule_updated: ({ security_groups }) => this.groupsChanged(this.rulesWanted, security_groups),
      security_groups_member_updated: ({ security_groups }) => this.groupsChanged(this.membersWanted, security_groups),
    };
  }

  private groupsChanged(wanted: Map<string, number>, groups: unknown): void {
    this.options.logger.debug({ groups, what: wanted === this.rulesWanted ? "rules" : "members" }, "security groups changed on neutron-server");
    // Kept also while the first full answer is on its way: it may have been made before this change.
    for (const g of Array.isArray(groups) ? groups : []) if (typeof g === "string") wanted.set(g, 0);
    this.kick();
  }

  private tapsChanged(added: readonly string[], removed: readonly string[]): void {
    let forgot = false;
    for (const d of removed) forgot = this.forget(d) || forgot;
    for (const d of added) this.pending.add(d);
    if (forgot && this.synced) {
      this.prune();
      this.publish(`${removed.length} taps removed`);
    }
    this.kick();
  }

  /** A tap that went: its port or trusted entry leaves. Whether it had one. */
  private forget(device: string): boolean {
    this.pending.delete(device);
    this.gone.delete(device);
    const had = this.ports.delete(device);
    return this.trusted.delete(device) || had;
  }

  private portUpdated(portId: unknown): void {
    if (typeof portId !== "string") return;
    const device = tapName(portId);
    this.options.logger.debug({ port: portId, device, here: this.taps.devices.has(device) }, "port updated on neutron-server");
    if (!this.taps.devices.has(device)) return;
    this.pending.add(device);
    this.kick();
  }

  private portDeleted(portId: unknown): void {
    if (typeof portId !== "string") return;
    const device = tapName(portId);
    // Nothing to ask: the server no longer knows the port. Its rules stay until the tap goes.
    if (this.ports.has(device) && !this.gone.has(device)) {
      this.gone.add(device);
      this.options.logger.info({ port: portId, device }, "port deleted on neutron-server; its rules stay until its tap goes");
    }
  }

  private full(reason: string): void {
    this.fullWanted ??= reason;
    this.kick();
  }

  private get hasWork(): boolean {
    const partial = this.pending.size > 0 || this.rulesWanted.size > 0 || this.membersWanted.size > 0;
    return this.fullWanted !== undefined || (partial && this.synced);
  }

  private kick(): void {
    if (this.stopped || this.running || this.retryTimer || this.coalesceTimer || !this.hasWork) return;
    const run = () => {
      this.coalesceTimer = undefined;
      if (this.stopped || this.running || !this.hasWork) return;
      this.running = this.drain().finally(() => {
        this.running = undefined;
        this.kick();
      });
    };
    const wait = this.options.coalesceMs ?? DEFAULT_COALESCE_MS;
    if (wait <= 0) return run();
    this.coalesceTimer = setTimeout(run, wait);
    this.coalesceTimer.unref?.();
  }

  private async drain(): Promise<void> {
    const reason = this.fullWanted;
    this.fullWanted = undefined;
    const full = reason !== undefined;
    const pending = [...this.pending];
    this.pending.clear();
    let devices: string[];
    let wants: GroupWant[] = [];
    if (full) {
      devices = [...this.taps.devices];
      this.rulesWanted.clear();
      this.membersWanted.clear();
    } else {
      wants = this.chooseWants();
      devices = [...new Set([...pending, ...wants.map((w) => w.device)])];
    }
    try {
      const info = await this.fetch(devices, full);
      this.failures = 0;
      for (const w of wants) {
        if (satisfied(w, info)) continue;
        if (w.attempts + 1 >= MAX_GROUP_ATTEMPTS) {
          this.options.logger.warn({ group: w.group, kind: w.kind }, "no port brought a changed security group back; the next full resync will");
          continue;
        }
        requeue(w.kind === "rules" ? this.rulesWanted : this.membersWanted, w.group, w.attempts + 1);
      }
    } catch (err) {
      if (this.stopped) return;
      if (full) this.fullWanted ??= reason;
      else {
        for (const d of pending) this.pending.add(d);
        for (const w of wants) requeue(w.kind === "rules" ? this.rulesWanted : this.membersWanted, w.group, w.attempts);
      }
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

  /**
   * For each changed group, one port here that brings it back: for rules a port in the group, for
   * members a port whose groups name it as remote group, one per ethertype they name it with. The
   * ports already chosen are preferred; ports the server no longer knows are never chosen. A group no
   * port here uses is dropped: nothing here depends on it.
   */
  private chooseWants(): GroupWant[] {
    const live = [...this.ports].filter(([device]) => !this.gone.has(device));
    const chosen = new Set<string>();
    const wants: GroupWant[] = [];
    const pick = (candidates: string[]): string | undefined => candidates.find((d) => chosen.has(d)) ?? candidates[0];
    for (const [group, attempts] of this.rulesWanted) {
      const device = pick(live.filter(([, port]) => groupsOf(port).includes(group)).map(([d]) => d));
      if (device === undefined) continue;
      chosen.add(device);
      wants.push({ kind: "rules", group, device, attempts });
    }
    for (const [group, attempts] of this.membersWanted) {
      const byEthertype = new Map<string, string[]>();
      for (const [device, port] of live) {
        for (const ethertype of this.remoteEthertypes(port, group)) {
          const list = byEthertype.get(ethertype) ?? [];
          list.push(device);
          byEthertype.set(ethertype, list);
        }
      }
      for (const [ethertype, candidates] of byEthertype) {
        const device = pick(candidates)!;
        chosen.add(device);
        wants.push({ kind: "members", group, ethertype, device, attempts });
      }
    }
    this.rulesWanted.clear();
    this.membersWanted.clear();
    return wants;
  }

  /** The ethertypes with which the rules of a port's groups (and its own rules) name `remote` as remote group. */
  private remoteEthertypes(port: PortDict, remote: string): Set<string> {
    const out = new Set<string>();
    const rules = [...groupsOf(port).flatMap((g) => this.groups.get(g) ?? []), ...(Array.isArray(port.security_group_rules) ? port.security_group_rules : [])];
    for (const rule of rules) {
      const r = rule as { remote_group_id?: unknown; ethertype?: unknown } | null;
      if (r?.remote_group_id === remote && typeof r.ethertype === "string") out.add(r.ethertype);
    }
    return out;
  }

  /** Asks for `devices` (those still on the host) and merges the answer; a full answer also re-decides every tap. */
  private async fetch(devices: readonly string[], full: boolean): Promise<SecurityGroupInfo> {
    const asked = devices.filter((d) => this.taps.devices.has(d));
    const started = Date.now();
    const info: SecurityGroupInfo = { devices: {}, security_groups: {}, sg_member_ips: {} };
    // A full answer for thousands of taps takes a while: at most one line a second (none for a quick one).
    const progress = full
      ? new ProgressLog({
          total: asked.length,
          log: (done, total) => this.options.logger.info({ done, total, progress: `${done}/${total}` }, "full sync of devices progress"),
        })
      : undefined;
    try {
      for (let i = 0; i < asked.length; i += this.options.step) {
        const devices = asked.slice(i, i + this.options.step);
        const part = await this.api.securityGroupInfoForDevices(devices);
        Object.assign(info.devices, part.devices);
        Object.assign(info.security_groups, part.security_groups);
        for (const [id, byEthertype] of Object.entries(part.sg_member_ips)) info.sg_member_ips[id] = { ...info.sg_member_ips[id], ...byEthertype };
        progress?.step(devices.length);
      }
    } finally {
      progress?.finish();
    }
    const answered = new Map<string, PortDict>();
    for (const port of Object.values(info.devices)) {
      const device = typeof port?.device === "string" ? port.device : undefined;
      if (device) answered.set(device, port);
    }
    // Taps the server left out that had nothing yet: trusted when they are ports bound here owned by the network.
    const unknown = asked.filter((d) => !answered.has(d) && !this.ports.has(d) && !this.trusted.has(d));
    let networkOwned = new Set<string>();
    if (unknown.length > 0) {
      const bound = await this.api.boundPorts();
      networkOwned = new Set(bound.filter((p) => p.device_owner?.startsWith("network:")).map((p) => tapName(p.id)));
    }

    // Merged as the host is now: a tap that went while we asked stays gone.
    for (const d of asked) {
      if (!this.taps.devices.has(d)) {
        this.forget(d);
        continue;
      }
      const port = answered.get(d);
      if (port) {
        this.ports.set(d, port);
        this.gone.delete(d);
        this.trusted.delete(d);
      } else if (this.ports.has(d)) {
        if (!this.gone.has(d)) {
          this.gone.add(d);
          this.options.logger.info({ port: this.ports.get(d)!.id, device: d }, "neutron-server no longer answers for a port whose tap is here; its rules stay until its tap goes");
        }
      } else if (networkOwned.has(d)) {
        this.trusted.add(d);
      }
    }
    for (const [id, rules] of Object.entries(info.security_groups)) if (Array.isArray(rules)) this.groups.set(id, rules);
    for (const [id, byEthertype] of Object.entries(info.sg_member_ips)) {
      if (isRecord(byEthertype)) this.memberIps.set(id, { ...this.memberIps.get(id), ...byEthertype });
    }
    this.prune();
    this.synced = true;
    this.publish(full ? "full" : `${asked.length} devices`, Date.now() - started);
    return info;
  }

  /**
   * Groups no port uses leave the document, and so do member lists no rule names: a remote group
   * (or address group) no rule of a used group names, an ethertype no such rule has.
   */
  private prune(): void {
    const used = new Set<string>();
    for (const port of this.ports.values()) for (const sg of groupsOf(port)) used.add(sg);
    for (const id of this.groups.keys()) if (!used.has(id)) this.groups.delete(id);
    const named = new Map<string, Set<string>>();
    const portRules = [...this.ports.values()].flatMap((p) => (Array.isArray(p.security_group_rules) ? p.security_group_rules : []));
    for (const rule of [...[...this.groups.values()].flat(), ...portRules]) {
      const r = rule as { remote_group_id?: unknown; remote_address_group_id?: unknown; ethertype?: unknown } | null;
      for (const remote of [r?.remote_group_id, r?.remote_address_group_id]) {
        if (typeof remote !== "string") continue;
        const ethertypes = named.get(remote) ?? new Set<string>();
        // A rule without a usable ethertype is the handler's problem to name: keep every list it might mean.
        ethertypes.add(typeof r?.ethertype === "string" ? r.ethertype : "*");
        named.set(remote, ethertypes);
      }
    }
    for (const [id, byEthertype] of this.memberIps) {
      const ethertypes = named.get(id);
      if (!ethertypes) this.memberIps.delete(id);
      else if (!ethertypes.has("*")) this.memberIps.set(id, Object.fromEntries(Object.entries(byEthertype).filter(([e]) => ethertypes.has(e))));
    }
  }

  private publish(why: string, askedMs?: number): void {
    if (!this.synced) return;
    const devices: Record<string, PortDict> = {};
    for (const port of this.ports.values()) devices[String(port.id)] = port;
    this.options.logger.debug({ ports: this.ports.size, trusted: this.trusted.size, gone: this.gone.size, why, askedMs }, "security group information from neutron-server");
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

function groupsOf(port: PortDict): string[] {
  return Array.isArray(port.security_groups) ? port.security_groups.filter((g): g is string => typeof g === "string") : [];
}

function satisfied(want: GroupWant, info: SecurityGroupInfo): boolean {
  if (want.kind === "rules") return want.group in info.security_groups;
  const members = info.sg_member_ips[want.group];
  return isRecord(members) && want.ethertype! in members;
}

function requeue(wanted: Map<string, number>, group: string, attempts: number): void {
  // A fresh cast for the group meanwhile starts its count over.
  if (!wanted.has(group)) wanted.set(group, attempts);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
