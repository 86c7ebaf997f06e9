/**
 * Router dicts and security group answers in exactly the shapes Debian's neutron-server 21 (Zed)
 * sends its agents: each is a clone of a payload recorded from the real server
 * (`@chainwarden/openstack-lab`'s `test-fixtures/neutron-server`), with ids, addresses and MACs
 * varied, so both agents parse what they would get from a real server, key for key.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const FIXTURES = join(dirname(createRequire(import.meta.url).resolve("@chainwarden/openstack-lab/package.json")), "test-fixtures", "neutron-server");

function fixture<T>(name: string): T {
  return JSON.parse(readFileSync(join(FIXTURES, name), "utf8")) as T;
}

type Dict = Record<string, any>;

/** The recorded payloads this module clones. */
const RECORDED = {
  router: (fixture<{ reply: Dict[] }>("sync-routers.json").reply[0]!) as Dict,
  securityGroupInfo: fixture<{ reply: Dict }>("security-group-info-for-devices.json").reply,
  casts: fixture<{ action: string; received: { listener: string; method: string; version: string; args: Dict; context: Dict }[] }[]>("agent-casts.json"),
};

/** A recorded cast (method, version, and the server's context) for one API change. */
export function recordedCast(action: string, method: string): { version: string; context: Dict } {
  const entry = RECORDED.casts.find((c) => c.action === action)?.received.find((m) => m.method === method);
  if (!entry) throw new Error(`no recorded ${method} for "${action}" in ${FIXTURES}/agent-casts.json`);
  return { version: entry.version, context: entry.context };
}

/** The context of a cast from the server, as recorded, with a fresh request id and timestamp. */
export function serverContext(recorded: Dict): Dict {
  return { ...recorded, request_id: `req-${randomUUID()}`, timestamp: new Date().toISOString().replace("T", " ").replace("Z", "") };
}

/** Address `n` (0-based) after `base` (a dotted quad), as a dotted quad. */
function addressAfter(base: string, n: number): string {
  const [a, b, c, d] = base.split(".").map(Number) as [number, number, number, number];
  const v = ((a << 24) >>> 0) + (b << 16) + (c << 8) + d + n;
  return [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join(".");
}

/**
 * Ids, MACs and addresses unique to one run. Port ids start with a counter from a random base: the
 * tap and `qr-`/`qg-` device names keep a port id's first 11 characters, so those must differ.
 */
export class IdSource {
  private port = randomBytes(4).readUInt32BE() & 0x7fffffff;
  private mac = 0;
  private readonly macBase = randomBytes(1)[0]!;

  portId(): string {
    const head = (this.port++ >>> 0).toString(16).padStart(8, "0");
    return `${head}${randomUUID().slice(8)}`;
  }

  macAddress(): string {
    const n = this.mac++;
    return `fa:16:3e:${(this.macBase ^ (n >> 16)).toString(16).padStart(2, "0")}:${((n >> 8) & 255).toString(16).padStart(2, "0")}:${(n & 255).toString(16).padStart(2, "0")}`;
  }
}

/** The external network all routers' gateways are on: RFC 2544's benchmarking range. */
export const EXTERNAL = { cidr: "198.18.0.0/15", first: "198.18.0.0", gateway: "198.18.0.1", prefixlen: 15 };
/** Every router's tenant subnet (each in its own namespace, so they may overlap, as tenants' do). */
export const TENANT = { cidr: "10.0.0.0/24", gateway: "10.0.0.1", prefixlen: 24 };

export interface RouterSpec {
  host: string;
  fips: number;
}

/** Per floating IP, the two fixed IPs it moves between in the benchmark. */
export function fixedIp(j: number, moved: boolean): string {
  return `10.0.0.${(moved ? 130 : 10) + j}`;
}

/**
 * Makes router dicts as `sync_routers` answers them: a clone of the recorded router `r1` with its
 * gateway port, one interface and `fips` floating IPs, all ids and addresses new.
 */
export class RouterFactory {
  readonly externalNetworkId = randomUUID();
  readonly externalSubnetId = randomUUID();
  private nextAddress = 2;
  private standardAttr = 1000;

  constructor(private readonly ids: IdSource) {}

  private externalAddress(): string {
    return addressAfter(EXTERNAL.first, this.nextAddress++);
  }

  make(index: number, spec: RouterSpec): Dict {
    const r = structuredClone(RECORDED.router);
    const id = randomUUID();
    const gwIp = this.externalAddress();
    const tenantNetworkId = randomUUID();
    const tenantSubnetId = randomUUID();
    r.id = id;
    r.name = `bench-r${index}`;
    r.revision_number = 1;
    r.gw_port_host = spec.host;
    const gw = r.gw_port as Dict;
    gw.id = this.ids.portId();
    gw.network_id = this.externalNetworkId;
    gw.mac_address = this.ids.macAddress();
    gw.device_id = id;
    gw.standard_attr_id = this.standardAttr++;
    gw.fixed_ips = [{ ...gw.fixed_ips[0], subnet_id: this.externalSubnetId, ip_address: gwIp, prefixlen: EXTERNAL.prefixlen }];
    gw.subnets = [{ ...gw.subnets[0], id: this.externalSubnetId, cidr: EXTERNAL.cidr, gateway_ip: EXTERNAL.gateway }];
    gw["binding:host_id"] = spec.host;
    r.gw_port_id = gw.id;
    r.external_gateway_info = {
      ...r.external_gateway_info,
      network_id: this.externalNetworkId,
      external_fixed_ips: [{ subnet_id: this.externalSubnetId, ip_address: gwIp }],
    };
    const port = (r._interfaces as Dict[])[0]!;
    port.id = this.ids.portId();
    port.network_id = tenantNetworkId;
    port.mac_address = this.ids.macAddress();
    port.device_id = id;
    port.standard_attr_id = this.standardAttr++;
    port.fixed_ips = [{ ...port.fixed_ips[0], subnet_id: tenantSubnetId, ip_address: TENANT.gateway, prefixlen: TENANT.prefixlen }];
    port.subnets = [{ ...port.subnets[0], id: tenantSubnetId, cidr: TENANT.cidr, gateway_ip: TENANT.gateway }];
    port["binding:host_id"] = spec.host;
    const template = (r._floatingips as Dict[])[0]!;
    r._floatingips = Array.from({ length: spec.fips }, (_, j) => {
      const fip = structuredClone(template);
      fip.id = randomUUID();
      fip.floating_ip_address = this.externalAddress();
      fip.floating_network_id = this.externalNetworkId;
      fip.router_id = id;
      fip.standard_attr_id = this.standardAttr++;
      this.associate(fip, tenantNetworkId, fixedIp(j, false), index, j);
      return fip;
    });
    return r;
  }

  /**
   * Associates a floating IP with a (new) VM port at `fixed`, as a `PUT /floatingips/<id>` with a
   * new `port_id` does: the port, its fixed IP and its details change; the address stays.
   */
  associate(fip: Dict, networkId: string, fixed: string, router: number, j: number): void {
    fip.port_id = this.ids.portId();
    fip.fixed_ip_address = fixed;
    fip.revision_number = (fip.revision_number ?? 0) + 1;
    fip.port_details = {
      ...fip.port_details,
      name: `vm-${router}-${j}`,
      network_id: networkId,
      mac_address: this.ids.macAddress(),
      device_id: randomUUID(),
    };
  }
}

/**
 * One security group shared by `ports` ports, and the server's answers to
 * `security_group_info_for_devices` for any of them: clones of the recorded port `vm-1` and group
 * `web` (its two default egress rules, tcp 22, ICMP 8/0, and the group itself as a remote group, so
 * every port's address is a member), with the provider DHCP rules the server adds per port.
 */
export class SecurityGroupFactory {
  readonly groupId = randomUUID();
  readonly networkId = randomUUID();
  /** Port dicts (as `devices` values), by tap name. */
  readonly ports = new Map<string, Dict>();
  rules: Dict[];
  private readonly template: Dict;

  constructor(ids: IdSource, host: string, ports: number) {
    const recorded = RECORDED.securityGroupInfo;
    this.template = Object.values(recorded.devices as Dict)[0] as Dict;
    const recordedGroup = Object.keys(recorded.security_groups as Dict)[0]!;
    this.rules = ((recorded.security_groups as Dict)[recordedGroup] as Dict[]).map((rule) =>
      rule.remote_group_id === recordedGroup ? { ...rule, remote_group_id: this.groupId } : { ...rule },
    );
    for (let p = 0; p < ports; p++) {
      const port = structuredClone(this.template);
      const ip = `10.64.${(p + 2) >> 8}.${(p + 2) & 255}`;
      port.id = ids.portId();
      port.name = `vm-${p}`;
      port.network_id = this.networkId;
      port.mac_address = ids.macAddress();
      port.device_id = randomUUID();
      port.standard_attr_id = 5000 + p;
      port.fixed_ips = [ip];
      port.security_groups = [this.groupId];
      port.security_group_source_groups = [this.groupId];
      port["binding:host_id"] = host;
      port.security_group_rules = (port.security_group_rules as Dict[]).map((rule) =>
        rule.dest_ip_prefix === `${this.template.fixed_ips[0]}/32` ? { ...rule, dest_ip_prefix: `${ip}/32` } : rule,
      );
      port.device = `tap${port.id.slice(0, 11)}`;
      this.ports.set(port.device, port);
    }
  }

  /** Appends an ingress rule (tcp `port` from anywhere), as `POST /security-group-rules` does. */
  addRule(port: number): void {
    this.rules = [...this.rules, { direction: "ingress", ethertype: "IPv4", stateful: true, protocol: "tcp", port_range_min: port, port_range_max: port, source_ip_prefix: "0.0.0.0/0" }];
  }

  /** The answer for these devices (tap names): their ports, the group's rules, its members' addresses. */
  answer(devices: readonly unknown[]): Dict {
    const out: Dict = { devices: {}, security_groups: {}, sg_member_ips: {} };
    for (const d of devices) {
      const port = typeof d === "string" ? this.ports.get(d) : undefined;
      if (port) out.devices[port.id] = port;
    }
    if (Object.keys(out.devices).length > 0) {
      out.security_groups[this.groupId] = this.rules;
      out.sg_member_ips[this.groupId] = { IPv4: [...this.ports.values()].map((p) => [p.fixed_ips[0], null]) };
    }
    return out;
  }
}
