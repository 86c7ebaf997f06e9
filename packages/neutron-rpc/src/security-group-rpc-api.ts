import { describeAnswer, NeutronRpcError } from "./neutron-rpc-error.js";
import type { RpcTransport } from "./rpc-transport.js";

/** Neutron's topic for the core plugin (`neutron_lib.agent.topics.PLUGIN`). */
export const PLUGIN_TOPIC = "q-plugin";

/** The server's answer to `security_group_info_for_devices`, as it comes (the l2 state document's shape). */
export interface SecurityGroupInfo {
  /** Port dicts by port id, each with `device` (the name asked for), `security_groups`, `fixed_ips`, ... */
  devices: Record<string, Record<string, unknown>>;
  /** Each group's rules, by group id. */
  security_groups: Record<string, unknown[]>;
  /** Addresses of the members of each remote group, by group id and ethertype. */
  sg_member_ips: Record<string, Record<string, unknown>>;
}

/** A port bound to this host, as `get_ports_by_vnic_type_and_host` answers (only what we read). */
export interface BoundPort {
  id: string;
  device_owner?: string;
}

/**
 * The server side of Neutron's `SecurityGroupServerRpcApi` (enhanced RPC, as the Linux bridge
 * agent with ipset uses it) and the one side-effect-free `PluginApi` call we need: which ports are
 * bound here (to tell trusted ports from devices that are no port at all).
 */
export class SecurityGroupRpcApi {
  constructor(
    private readonly rpc: RpcTransport,
    private readonly host: string,
    private readonly timeoutMs: number,
  ) {}

  async securityGroupInfoForDevices(devices: readonly string[]): Promise<SecurityGroupInfo> {
    const answer = await this.rpc.call<unknown>(
      { topic: PLUGIN_TOPIC, version: "1.3" },
      "security_group_info_for_devices",
      { devices, call_version: "1.3" },
      { timeoutMs: this.timeoutMs },
    );
    const a = answer as Partial<SecurityGroupInfo> | null;
    if (!a || typeof a !== "object" || !isRecord(a.devices) || !isRecord(a.security_groups) || !isRecord(a.sg_member_ips)) {
      throw new NeutronRpcError("NEUTRON_RPC_BAD_ANSWER", `security_group_info_for_devices answered ${describeAnswer(answer)}, not { devices, security_groups, sg_member_ips }`);
    }
    return a as SecurityGroupInfo;
  }

  /** Ports of `vnic_type` normal bound to this host (no side effect on the server, unlike get_device_details). */
  async boundPorts(): Promise<BoundPort[]> {
    const answer = await this.rpc.call<unknown>(
      { topic: PLUGIN_TOPIC, version: "1.7" },
      "get_ports_by_vnic_type_and_host",
      { vnic_type: "normal", host: this.host },
      { timeoutMs: this.timeoutMs },
    );
    if (!Array.isArray(answer)) throw new NeutronRpcError("NEUTRON_RPC_BAD_ANSWER", `get_ports_by_vnic_type_and_host answered ${describeAnswer(answer)}, not a list of ports`);
    return answer.filter((p): p is BoundPort => isRecord(p) && typeof p.id === "string");
  }
}

function isRecord(v: unknown): v is Record<string, any> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
