/**
 * One port (a "device" in Neutron's `security_group_info_for_devices` answer), validated. Fixed IPs
 * may come as plain addresses (the RPC shape) or as `{ip_address, subnet_id}` (the API shape); the
 * keys a server adds that the driver does not use are ignored: ML2's whole port dict (`name`,
 * `binding:*`, `extra_dhcp_opts`, `tags`, timestamps, ...) and `security_group_source_groups` /
 * `security_group_remote_address_groups`. `security_group_rules` holds the server's provider rules
 * (DHCP, DHCPv6, and for ports with an IPv6 address the RA rule, an ICMPv6 type in
 * source_port_range_min); see neutron-server-fixtures/ for real answers.
 */
import { z } from "zod";
import type { FirewallFlavor } from "./firewall-flavor.js";
import { formatCidr, formatIp, parseIpAddress, parseIpPrefix, parseMac } from "./ip-address.js";
import type { IpVersion } from "./neutron-constants.js";
import { parseSecurityGroupRule, type SecurityGroupRule } from "./security-group-rule.js";
import { describe, idSchema, misspelledIssues, zodIssues, type Issue } from "./validation.js";

/**
 * One of a port's allowed address pairs (Neutron's `allowed_address_pairs`): traffic from this address and MAC passes the anti-spoofing chain;
 * the MAC is the port's own when the input named none.
 */
export interface AllowedAddressPair {
  /** An address or a CIDR, canonical (host bits cleared for a CIDR). */
  readonly ip_address: string;
  readonly version: IpVersion;
  /** True for a bare address (it gets /32 or /128 in rules). */
  readonly host: boolean;
  readonly mac_address: string;
}

/**
 * One port as `parsePortInfo` leaves it: its id is its key in `devices`, its device fits the layout, addresses and MACs are canonical,
 * port security defaults to on, and a filtered `iptables`-layout port has its `network_id`.
 */
export interface PortInfo {
  readonly id: string;
  readonly device: string;
  /** Lower case (how iptables prints it). */
  readonly mac_address: string;
  /** Canonical addresses, in the given order. */
  readonly fixed_ips: readonly string[];
  readonly allowed_address_pairs: readonly AllowedAddressPair[];
  readonly security_groups: readonly string[];
  /** Rules the server attached to the port itself: its provider rules (DHCP, DHCPv6, RA). */
  readonly security_group_rules: readonly SecurityGroupRule[];
  readonly port_security_enabled: boolean;
  readonly device_owner: string;
  readonly network_id?: string;
}

const fixedIp = z.union([z.string(), z.looseObject({ ip_address: z.string() })]);

const portShape = z.looseObject({
  id: idSchema.optional(),
  device: z.string({ error: "device is required" }),
  mac_address: z.string({ error: "mac_address is required" }),
  fixed_ips: z.array(fixedIp).nullish(),
  allowed_address_pairs: z.array(z.looseObject({ ip_address: z.string(), mac_address: z.string().nullish() })).nullish(),
  security_groups: z.array(idSchema).nullish(),
  security_group_rules: z.array(z.unknown()).nullish(),
  port_security_enabled: z.boolean().nullish(),
  device_owner: z
    .string()
    .max(255)
    .regex(/^[^\u0000-\u001f\u007f]*$/, "no control characters")
    .nullish(),
  network_id: idSchema.nullish(),
});

/** What `parsePortInfo` returns: the valid port, or the issues found (paths below the port); never both. */
export type PortResult = { port: PortInfo } | { issues: Issue[] };

/**
 * Validates one port given under `devices.<key>`. The key is the port id (the id inside, when given,
 * must agree). Issues carry paths below the port.
 */
export function parsePortInfo(key: string, raw: unknown, flavor: FirewallFlavor): PortResult {
  const typos = misspelledIssues(raw, portShape);
  const shaped = portShape.safeParse(raw);
  if (!shaped.success) return { issues: [...typos, ...zodIssues(shaped.error)] };
  const p = shaped.data;
  const issues: Issue[] = [...typos];
  const issue = (path: (string | number)[], message: string) => issues.push({ path, message });

  if (p.id !== undefined && p.id !== key) issue(["id"], `id ${describe(p.id)} differs from its key in devices (${describe(key)})`);
  const deviceProblem = flavor.deviceProblem(p.device);
  if (deviceProblem) issue(["device"], `${deviceProblem}: ${describe(p.device)}`);
  const mac = parseMac(p.mac_address);
  if (!mac) issue(["mac_address"], `invalid MAC address ${describe(p.mac_address)}`);

  const fixedIps: string[] = [];
  (p.fixed_ips ?? []).forEach((entry, i) => {
    const text = typeof entry === "string" ? entry : entry.ip_address;
    const addr = parseIpAddress(text);
    if (!addr) issue(["fixed_ips", i], `invalid IP address ${describe(text)}`);
    else fixedIps.push(formatIp(addr));
  });

  const pairs: AllowedAddressPair[] = [];
  (p.allowed_address_pairs ?? []).forEach((pair, i) => {
    const prefix = parseIpPrefix(pair.ip_address);
    if (!prefix) issue(["allowed_address_pairs", i, "ip_address"], `invalid IP address or CIDR ${describe(pair.ip_address)}`);
    // The server fills in the port's MAC when a pair names none.
    const pairMac = pair.mac_address == null ? mac : parseMac(pair.mac_address);
    if (!pairMac) issue(["allowed_address_pairs", i, "mac_address"], `invalid MAC address ${describe(pair.mac_address)}`);
    if (prefix && pairMac) {
      pairs.push({
        ip_address: prefix.bare ? formatIp(prefix) : formatCidr(prefix),
        version: prefix.version,
        host: prefix.bare,
        mac_address: pairMac,
      });
    }
  });

  const rules: SecurityGroupRule[] = [];
  (p.security_group_rules ?? []).forEach((raw, i) => {
    const r = parseSecurityGroupRule(raw);
    if ("issues" in r) for (const x of r.issues) issue(["security_group_rules", i, ...x.path], x.message);
    else rules.push(r.rule);
  });

  const portSecurity = p.port_security_enabled ?? true;
  // Filtered Linux-bridge ports enter their network's conntrack zone through brq<network_id>.
  if (flavor.alias === "iptables" && portSecurity && !p.network_id) issue(["network_id"], "network_id is required (it names the conntrack zone and the bridge)");

  if (issues.length > 0 || !mac) return { issues };
  const port: PortInfo = {
    id: key,
    device: p.device,
    mac_address: mac,
    fixed_ips: fixedIps,
    allowed_address_pairs: pairs,
    security_groups: dedupe(p.security_groups ?? []),
    security_group_rules: rules,
    port_security_enabled: portSecurity,
    device_owner: p.device_owner ?? "",
    ...(p.network_id ? { network_id: p.network_id } : {}),
  };
  return { port };
}

function dedupe(ids: readonly string[]): string[] {
  return [...new Set(ids)];
}
