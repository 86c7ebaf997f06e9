/**
 * A small in-memory neutron-server for the l2 side, answering as the real one does. It is no spy:
 * it holds ports and security groups, answers `security_group_info_for_devices` and
 * `get_ports_by_vnic_type_and_host` from them, and casts what the real server casts when they
 * change. Every shape comes from what the real server sent (`@chainwarden/openstack-lab`'s recordings
 * in test-fixtures/neutron-server, Debian's neutron-server 21.0.0): a port dict is the recorded
 * port with this port's values, a rule gets `stateful` as the server adds it, member lists are
 * `[ip, null]` and only for the ethertypes the asked ports' rules name, the provider rules are the
 * recorded DHCP ones. `fromRecording()` rebuilds the recorded scenario, and the test checks that the
 * recorded request then gets exactly the recorded reply.
 */
import { readFileSync } from "node:fs";
import { NotConnectedError } from "./neutron-rpc-error.js";
import type { RpcEndpoints, RpcTarget, RpcTransport } from "./rpc-transport.js";
import type { SecurityGroupInfo } from "./security-group-rpc-api.js";

const FIXTURES = new URL("../../openstack-lab/test-fixtures/neutron-server/", import.meta.url);

type Json = Record<string, any>;

function fixture(name: string): any {
  return JSON.parse(readFileSync(new URL(name, FIXTURES), "utf8"));
}

/** What the real server sent, as recorded. */
export const RECORDED = {
  /** `security_group_info_for_devices`: `{ request, reply }`. */
  securityGroupInfo: fixture("security-group-info-for-devices.json") as { request: { args: { devices: string[] } }; reply: SecurityGroupInfo },
  /** Each API change and the messages agents received. */
  casts: fixture("agent-casts.json") as { action: string; received: { listener: string; method: string; args: Json }[] }[],
};

function recordedCast(method: string): Json {
  for (const change of RECORDED.casts) for (const m of change.received) if (m.method === method) return m.args;
  throw new Error(`no recorded ${method}`);
}

/** The recorded port dict of `security_group_info_for_devices` (ML2's port with the security group keys). */
const INFO_PORT: Json = Object.values(RECORDED.securityGroupInfo.reply.devices)[0]!;
/** The recorded `port_update` cast: `_make_port_dict`, as `get_ports_by_vnic_type_and_host` answers too. */
const PORT_UPDATE: Json = recordedCast("port_update");

export interface ServerPort {
  id: string;
  name?: string;
  mac: string;
  /** Fixed IPs, IPv4 and IPv6. */
  ips: string[];
  groups: string[];
  deviceOwner?: string;
  /** `binding:host_id`. */
  host?: string;
}

/** A rule as the server hands it to agents, without `stateful` (the server adds it per group). */
export type ServerRule = Json & { direction: string; ethertype: string };

/** The agent's side of one call, as the server saw it. */
export interface ServerCall {
  method: string;
  devices?: string[];
}

export class NeutronL2Server implements RpcTransport {
  readonly ports = new Map<string, ServerPort>();
  readonly groups = new Map<string, ServerRule[]>();
  /** Address groups: their addresses (CIDRs), which rules name by `remote_address_group_id`. */
  readonly addressGroups = new Map<string, string[]>();
  readonly calls: ServerCall[] = [];
  /** Makes the next calls fail as a broker or server that is away does (undefined: answer). */
  trouble: ((call: ServerCall) => Error | undefined) | undefined;
  private readonly servers = new Map<string, RpcEndpoints>();
  private readonly reconnectListeners: (() => void)[] = [];
  private held: Promise<void> | undefined;
  private release: (() => void) | undefined;
  closed = false;

  /** The server of the recording: its port, its group and the group's rules, as they were. */
  static fromRecording(): NeutronL2Server {
    const server = new NeutronL2Server();
    const { reply } = RECORDED.securityGroupInfo;
    for (const [id, rules] of Object.entries(reply.security_groups)) {
      server.groups.set(id, (rules as Json[]).map(({ stateful: _, ...rule }) => rule as ServerRule));
    }
    for (const port of Object.values(reply.devices)) {
      server.ports.set(port.id as string, {
        id: port.id as string,
        name: port.name as string,
        mac: port.mac_address as string,
        ips: port.fixed_ips as string[],
        groups: port.security_groups as string[],
        deviceOwner: port.device_owner as string,
        host: port["binding:host_id"] as string,
      });
    }
    return server;
  }

  /** Answers hold until the returned function is called (a slow server). */
  hold(): () => void {
    let release!: () => void;
    this.held = new Promise((r) => (release = r));
    this.release = () => {
      this.held = undefined;
      release();
    };
    return this.release;
  }

  // ---- what the API does, and the casts the real server sends for it -------------------------

  async createRule(group: string, rule: ServerRule): Promise<void> {
    this.groups.get(group)!.push(rule);
    await this.cast({ topic: "q-agent-notifier-security_group-update", fanout: true }, "security_groups_rule_updated", { security_groups: [group] });
  }

  async deleteRule(group: string, match: (rule: ServerRule) => boolean): Promise<void> {
    this.groups.set(group, this.groups.get(group)!.filter((r) => !match(r)));
    await this.cast({ topic: "q-agent-notifier-security_group-update", fanout: true }, "security_groups_rule_updated", { security_groups: [group] });
  }

  /** A port created with groups: the server tells every agent its groups have a new member. */
  async createPort(port: ServerPort): Promise<void> {
    this.ports.set(port.id, port);
    if (!port.deviceOwner?.startsWith("network:") && port.groups.length > 0) await this.memberUpdated(port.groups);
  }

  /** The port's groups changed: `security_groups_member_updated` for old and new groups, then `port_update`. */
  async setPortGroups(id: string, groups: string[]): Promise<void> {
    const port = this.ports.get(id)!;
    const old = port.groups;
    port.groups = groups;
    await this.memberUpdated([...new Set([...groups, ...old])]);
    await this.portUpdate(id);
  }

  async deletePort(id: string): Promise<void> {
    const port = this.ports.get(id)!;
    this.ports.delete(id);
    if (port.groups.length > 0) await this.memberUpdated(port.groups);
    await this.cast({ topic: "q-agent-notifier-port-delete", fanout: true }, "port_delete", { port_id: id });
  }

  async memberUpdated(groups: string[]): Promise<void> {
    await this.cast({ topic: "q-agent-notifier-security_group-update", fanout: true }, "security_groups_member_updated", { security_groups: groups });
  }

  async portUpdate(id: string): Promise<void> {
    const { port: _, ...rest } = recordedCast("port_update");
    await this.cast({ topic: "q-agent-notifier-port-update", fanout: true }, "port_update", { ...rest, port: this.apiPort(this.ports.get(id)!) });
  }

  /** The broker came back: every consumer hears `reconnected`. */
  reconnect(): void {
    for (const l of this.reconnectListeners) l();
  }

  // ---- RpcTransport: the agent's side -----------------------------------------------------------

  async call<T>(target: RpcTarget, method: string, args: Record<string, unknown>): Promise<T> {
    if (this.closed) throw new Error("transport closed");
    const call: ServerCall = { method, ...(Array.isArray(args.devices) ? { devices: [...(args.devices as string[])] } : {}) };
    this.calls.push(call);
    const failure = this.trouble?.(call);
    if (failure) throw failure;
    await this.held;
    await new Promise((r) => setImmediate(r));
    if (this.closed) throw new Error("transport closed");
    // Through JSON, as the wire carries it.
    if (target.topic === "q-plugin" && method === "security_group_info_for_devices" && target.version === "1.3") {
      return JSON.parse(JSON.stringify(this.securityGroupInfo(args.devices as string[]))) as T;
    }
    if (target.topic === "q-plugin" && method === "get_ports_by_vnic_type_and_host" && target.version === "1.7") {
      return JSON.parse(JSON.stringify(this.portsOnHost(args.host as string))) as T;
    }
    throw new Error(`NoSuchMethod ${target.topic} ${method} ${target.version}`);
  }

  async cast(target: RpcTarget, method: string, args: Record<string, unknown>): Promise<void> {
    const endpoints = this.servers.get(target.topic);
    const fn = endpoints?.[method];
    // A fanout nobody consumes is dropped by the broker.
    if (fn) await fn(JSON.parse(JSON.stringify(args)) as Record<string, unknown>);
  }

  async serve(target: { topic: string; server: string; version: string }, endpoints: RpcEndpoints): Promise<void> {
    this.servers.set(target.topic, endpoints);
  }

  onReconnected(listener: () => void): void {
    this.reconnectListeners.push(listener);
  }

  /** Whether the broker is connected, as a test sets it (unset: not known). */
  connected?: () => boolean | undefined;

  async close(): Promise<void> {
    this.closed = true;
    this.release?.();
  }

  /** Calls of one method since `from`. */
  callsOf(method: string, from = 0): ServerCall[] {
    return this.calls.slice(from).filter((c) => c.method === method);
  }

  static timeout(): Error {
    return new NotConnectedError("call security_group_info_for_devices", 10);
  }

  // ---- the answers ------------------------------------------------------------------------------

  /** `SecurityGroupServerRpcCallback.security_group_info_for_devices` with `call_version` 1.3. */
  securityGroupInfo(devices: readonly string[]): SecurityGroupInfo {
    const info: SecurityGroupInfo = { devices: {}, security_groups: {}, sg_member_ips: {} };
    const remotes = new Map<string, Set<string>>();
    const addressGroups = new Map<string, Set<string>>();
    const named = (map: Map<string, Set<string>>, id: string, ethertype: string) => {
      const ethertypes = map.get(id) ?? new Set<string>();
      ethertypes.add(ethertype);
      map.set(id, ethertypes);
    };
    for (const device of devices) {
      // get_port_from_device: the port whose id starts with what follows `tap`.
      const port = [...this.ports.values()].find((p) => p.id.startsWith(device.slice(3)));
      // Trusted ports (device_owner network:*) are left out, and so are devices that are no port.
      if (!port || port.deviceOwner?.startsWith("network:")) continue;
      const sources: string[] = [];
      const addresses: string[] = [];
      for (const g of port.groups) {
        const rules = this.groups.get(g) ?? [];
        info.security_groups[g] = rules.map(({ direction, ethertype, ...rest }) => ({ direction, ethertype, stateful: true, ...rest }));
        for (const r of rules) {
          if (typeof r.remote_group_id === "string") {
            if (!sources.includes(r.remote_group_id)) sources.push(r.remote_group_id);
            named(remotes, r.remote_group_id, r.ethertype);
          } else if (typeof r.remote_address_group_id === "string") {
            if (!addresses.includes(r.remote_address_group_id)) addresses.push(r.remote_address_group_id);
            named(addressGroups, r.remote_address_group_id, r.ethertype);
          }
        }
      }
      info.devices[port.id] = {
        ...structuredClone(INFO_PORT),
        id: port.id,
        name: port.name ?? "",
        mac_address: port.mac,
        device_owner: port.deviceOwner ?? "compute:nova",
        "binding:host_id": port.host ?? "",
        fixed_ips: [...port.ips],
        security_groups: [...port.groups],
        security_group_rules: this.providerRules(port),
        security_group_source_groups: sources,
        security_group_remote_address_groups: addresses,
        device,
      };
    }
    const family = (ethertype: string) => (ip: string) => (ethertype === "IPv6") === ip.includes(":");
    for (const [group, ethertypes] of remotes) {
      const members: Record<string, [string, null][]> = {};
      for (const ethertype of ethertypes) {
        members[ethertype] = [...this.ports.values()].filter((p) => p.groups.includes(group)).flatMap((p) => p.ips.filter(family(ethertype)).map((ip) => [ip, null] as [string, null]));
      }
      info.sg_member_ips[group] = members;
    }
    // Address groups share sg_member_ips with remote groups (the server's "so that the two types of
    // remote groups can be processed by the same firewall functions").
    for (const [group, ethertypes] of addressGroups) {
      const members: Record<string, [string, null][]> = {};
      for (const ethertype of ethertypes) members[ethertype] = (this.addressGroups.get(group) ?? []).filter(family(ethertype)).map((cidr) => [cidr, null]);
      info.sg_member_ips[group] = members;
    }
    return info;
  }

  /** The recorded DHCP provider rules, for this port's addresses. */
  private providerRules(port: ServerPort): Json[] {
    const [toIp, broadcast, dhcp6] = INFO_PORT.security_group_rules as Json[];
    const v4 = port.ips.filter((ip) => !ip.includes(":"));
    const v6 = port.ips.filter((ip) => ip.includes(":"));
    return [
      ...v4.map((ip) => ({ ...toIp, dest_ip_prefix: `${ip}/32` })),
      { ...broadcast },
      ...v6.map((ip) => ({ ...dhcp6, dest_ip_prefix: `${ip}/128` })),
      { ...dhcp6 },
    ];
  }

  /** `get_ports_by_vnic_type_and_host`: the ports bound to `host`, as `_make_port_dict` gives them. */
  private portsOnHost(host: string): Json[] {
    return [...this.ports.values()].filter((p) => p.host === host).map((p) => this.apiPort(p));
  }

  private apiPort(port: ServerPort): Json {
    const recorded = PORT_UPDATE.port as Json;
    return {
      ...structuredClone(recorded),
      id: port.id,
      name: port.name ?? "",
      mac_address: port.mac,
      device_owner: port.deviceOwner ?? "compute:nova",
      "binding:host_id": port.host ?? "",
      fixed_ips: port.ips.map((ip) => ({ subnet_id: (recorded.fixed_ips as Json[])[0]!.subnet_id, ip_address: ip })),
      security_groups: [...port.groups],
    };
  }
}
