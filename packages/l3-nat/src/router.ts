import { misspelledKeys } from "@chainwarden/agent";
import { z } from "zod";
import { cidrContains, parseCidr, parseIp } from "@chainwarden/core";

/**
 * A router as the Neutron server sends it to the l3 agent (`sync_routers`): the keys the l3 agent
 * reads are typed and validated; every other key (name, routes, status, ...) is kept as given, so
 * router extensions (FWaaS) see the whole dict.
 */
export interface Router {
  readonly id: string;
  /** The server only hands routers that are up to an agent; a router that is down is treated as removed. */
  readonly admin_state_up: boolean;
  /** Neutron's `router.get('enable_snat', True)`. */
  readonly enable_snat: boolean;
  readonly gw_port: RouterPort | null;
  readonly _interfaces: readonly RouterPort[];
  readonly _floatingips: readonly FloatingIp[];
  readonly [key: string]: unknown;
}

/**
 * A router port (`gw_port` or one of `_interfaces`) as `parseRouter` leaves it: ids safe in device names,
 * addresses in canonical text, each fixed IP inside one of the port's subnets and with its prefix length.
 */
export interface RouterPort {
  readonly id: string;
  readonly network_id: string;
  readonly mac_address?: string | undefined;
  readonly mtu?: number | null | undefined;
  readonly admin_state_up: boolean;
  /** Prefix lengths filled in from the subnet when the server left them out. */
  readonly fixed_ips: readonly FixedIp[];
  readonly subnets: readonly Subnet[];
  /** `{"4": scope id | null, "6": ...}`; absent means no address scope. */
  readonly address_scopes: Readonly<Record<string, string | null>>;
  readonly [key: string]: unknown;
}

/** An address of a router port: canonical text, in the subnet `subnet_id` names, `prefixlen` always set. */
export interface FixedIp {
  readonly ip_address: string;
  readonly subnet_id: string;
  readonly prefixlen: number;
  readonly [key: string]: unknown;
}

/** A subnet of a router port: a valid `cidr`, and its gateway (canonical text, same family) or null. */
export interface Subnet {
  readonly id: string;
  readonly cidr: string;
  readonly gateway_ip: string | null;
  readonly [key: string]: unknown;
}

/**
 * The stand-in of a router whose input is invalid (`ParsedResources.held`): its id, so its
 * namespace is kept as the kernel has it until its input is valid or a complete state drops it.
 */
export interface HeldRouter {
  readonly id: string;
  readonly standIn: true;
}

export function isHeldRouter(router: Router | HeldRouter): router is HeldRouter {
  return (router as HeldRouter).standIn === true;
}

/**
 * An associated floating IP (Neutron's `_floatingips` entry): IPv4 floating and fixed addresses in canonical text,
 * each used once per router; the fixed address's address scope or null.
 */
export interface FloatingIp {
  readonly id: string;
  readonly floating_ip_address: string;
  readonly fixed_ip_address: string;
  readonly fixed_ip_address_scope: string | null;
  readonly [key: string]: unknown;
}

/**
 * Ids become parts of namespace and device names and of rule text (`-i qr-<id>`), so they are held
 * to the characters those accept. Neutron's are UUIDs.
 */
export const RESOURCE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const MAC = /^[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}$/;

const id = (what: string) => z.string().regex(RESOURCE_ID, `${what} must be letters, digits, _ . - (not first)`).max(255);
const ipAddress = z.string().refine((v) => parseIp(v) !== undefined, { message: "not a valid IP address" });
const ipv4Address = z.string().refine((v) => parseIp(v)?.family === 4, { message: "not a valid IPv4 address (floating IPs are IPv4)" });
const cidr = z.string().refine((v) => parseCidr(v) !== undefined, { message: "not a valid CIDR" });

const fixedIpSchema = z.looseObject({
  ip_address: ipAddress,
  subnet_id: z.string().min(1),
  prefixlen: z.number().int().min(0).max(128).optional(),
});

const subnetSchema = z.looseObject({
  id: z.string().min(1),
  cidr,
  gateway_ip: ipAddress.nullable().optional(),
});

const portSchema = z.looseObject({
  id: id("port id"),
  network_id: id("network id"),
  mac_address: z.string().regex(MAC, "not a MAC address").optional(),
  mtu: z.number().int().min(68).max(65535).nullable().optional(),
  admin_state_up: z.boolean().default(true),
  fixed_ips: z.array(fixedIpSchema),
  subnets: z.array(subnetSchema).optional(),
  address_scopes: z.record(z.string(), z.string().nullable()).optional(),
});

const floatingIpSchema = z.looseObject({
  id: z.string().min(1),
  floating_ip_address: ipv4Address,
  // A floating IP the server sends to an l3 agent is associated; without a fixed IP there is nothing to NAT to.
  fixed_ip_address: z.string({ error: (issue) => (issue.input === undefined || issue.input === null ? "a floating IP needs a fixed_ip_address" : "not a string") }).pipe(ipv4Address),
  fixed_ip_address_scope: z.string().nullable().optional(),
});

const routerSchema = z.looseObject({
  id: id("router id"),
  admin_state_up: z.boolean().default(true),
  enable_snat: z.boolean().default(true),
  gw_port: portSchema.nullable().optional(),
  _interfaces: z.array(portSchema).default([]),
  // Each floating IP is validated on its own (parseFloatingIp), so a cache can skip the unchanged ones.
  _floatingips: z.array(z.unknown()).default([]),
});

type RawPort = z.output<typeof portSchema>;

/** What `parseRouter` found: `router` only when `issues` is empty; otherwise the issues, and the router is left out. */
export interface ParseRouterResult {
  router?: Router;
  /** Field paths relative to the router, with what is wrong. */
  issues: { path: string; message: string }[];
}

/** One floating IP on its own: the normalized entry, or what is wrong (paths relative to the entry). */
export interface ParseFloatingIpResult {
  floatingIp?: FloatingIp;
  issues: { path: string; message: string }[];
}

/**
 * Floating IPs validated earlier (see `RouterParseCache`). A router with 1,000 floating IPs of which
 * one changed validates one, and the other 999 keep their object identity (so the rules computed
 * from them are found unchanged without comparing text).
 */
export interface FloatingIpLookup {
  /** The earlier result for `_floatingips[index]`, if that entry is unchanged. */
  get(index: number): ParseFloatingIpResult | undefined;
  /** The result for `_floatingips[index]` in this parse. */
  set(index: number, result: ParseFloatingIpResult): void;
}

/** An issue of `_floatingips[i]`, with its path relative to the router. */
function atFloatingIp(i: number, issue: { path: string; message: string }): { path: string; message: string } {
  return { path: issue.path ? `_floatingips.${i}.${issue.path}` : `_floatingips.${i}`, message: issue.message };
}

/**
 * Keys of a Neutron dict that look like a typo of a key we read that is missing
 * (`floating_ip_adress`): each is an issue, as the server never sends them (it sends many keys we
 * do not read, and those are accepted).
 */
function misspelled(value: unknown, schema: z.ZodObject, path: string): { path: string; message: string }[] {
  return misspelledKeys(value, Object.keys(schema.shape)).map((m) => ({ path: path ? `${path}.${m.key}` : m.key, message: m.message }));
}

/** Typos in a port dict and its fixed IPs and subnets. */
function misspelledInPort(value: unknown, path: string): { path: string; message: string }[] {
  const out = misspelled(value, portSchema, path);
  const p = value as { fixed_ips?: unknown; subnets?: unknown } | null;
  if (Array.isArray(p?.fixed_ips)) p.fixed_ips.forEach((f, i) => out.push(...misspelled(f, fixedIpSchema, `${path}.fixed_ips.${i}`)));
  if (Array.isArray(p?.subnets)) p.subnets.forEach((sn, i) => out.push(...misspelled(sn, subnetSchema, `${path}.subnets.${i}`)));
  return out;
}

/** Validates one `_floatingips` entry and puts its addresses in canonical text. */
export function parseFloatingIp(value: unknown): ParseFloatingIpResult {
  const typos = misspelled(value, floatingIpSchema, "");
  const parsed = floatingIpSchema.safeParse(value);
  if (!parsed.success) return { issues: [...typos, ...parsed.error.issues.map((i) => ({ path: i.path.map(String).join("."), message: i.message }))] };
  if (typos.length > 0) return { issues: typos };
  const f = parsed.data;
  return {
    floatingIp: {
      ...f,
      floating_ip_address: parseIp(f.floating_ip_address)!.text,
      fixed_ip_address: parseIp(f.fixed_ip_address)!.text,
      fixed_ip_address_scope: f.fixed_ip_address_scope ?? null,
    },
    issues: [],
  };
}

/**
 * Validates one router dict. Beyond the shapes: every fixed IP lies in a subnet of its port (which
 * gives the prefix length when the server left it out), every port has a subnet, no two ports get
 * the same device name, no floating IP address or fixed IP is used twice.
 */
export function parseRouter(value: unknown, floatingIps?: FloatingIpLookup): ParseRouterResult {
  const typos = misspelled(value, routerSchema, "");
  const v = value as { gw_port?: unknown; _interfaces?: unknown; ha?: unknown; distributed?: unknown } | null;
  // The server schedules these to any l3 agent; what they need (keepalived, fip namespaces) is not here.
  if (v?.ha === true) typos.push({ path: "ha", message: "HA routers (keepalived, VRRP) are not supported by this agent; leave them to Neutron's l3 agent" });
  if (v?.distributed === true) typos.push({ path: "distributed", message: "distributed (DVR) routers are not supported by this agent; leave them to Neutron's l3 agent" });
  if (v?.gw_port) typos.push(...misspelledInPort(v.gw_port, "gw_port"));
  if (Array.isArray(v?._interfaces)) v._interfaces.forEach((p, i) => typos.push(...misspelledInPort(p, `_interfaces.${i}`)));
  const parsed = routerSchema.safeParse(value);
  if (!parsed.success) {
    const issues = [...typos, ...parsed.error.issues.map((i) => ({ path: i.path.map(String).join("."), message: i.message }))];
    // The floating IPs are checked on their own below; report theirs too, as one schema would.
    const fips = (value as { _floatingips?: unknown } | null)?._floatingips;
    if (Array.isArray(fips)) {
      fips.forEach((entry, i) => {
        for (const issue of parseFloatingIp(entry).issues) issues.push(atFloatingIp(i, issue));
      });
    }
    return { issues };
  }
  const raw = parsed.data;
  const issues: { path: string; message: string }[] = [...typos];
  const port = (p: RawPort, path: string): RouterPort => {
    // Addresses in canonical text (as iptables-save and `ip -j` print them), so comparisons with the kernel hold.
    const subnets: Subnet[] = (p.subnets ?? []).map((s) => ({ ...s, gateway_ip: s.gateway_ip ? parseIp(s.gateway_ip)!.text : null }));
    if (subnets.length === 0) issues.push({ path: `${path}.subnets`, message: "a router port needs at least one subnet" });
    subnets.forEach((s, i) => {
      const net = parseCidr(s.cidr)!;
      if (s.gateway_ip && parseIp(s.gateway_ip)!.family !== net.family) {
        issues.push({ path: `${path}.subnets.${i}.gateway_ip`, message: `IPv${parseIp(s.gateway_ip)!.family} gateway on an IPv${net.family} subnet` });
      }
    });
    const fixed_ips: FixedIp[] = p.fixed_ips.map((f, i) => {
      const ip = parseIp(f.ip_address)!;
      const subnet = subnets.find((s) => s.id === f.subnet_id);
      const where = `${path}.fixed_ips.${i}`;
      if (!subnet) {
        issues.push({ path: `${where}.subnet_id`, message: `subnet ${JSON.stringify(f.subnet_id)} is not among the port's subnets` });
        return { ...f, ip_address: ip.text, prefixlen: f.prefixlen ?? (ip.family === 4 ? 32 : 128) };
      }
      const net = parseCidr(subnet.cidr)!;
      if (!cidrContains(net, ip)) issues.push({ path: `${where}.ip_address`, message: `${f.ip_address} is not in subnet ${subnet.cidr}` });
      const prefixlen = f.prefixlen ?? net.prefix;
      if (prefixlen > (ip.family === 4 ? 32 : 128)) issues.push({ path: `${where}.prefixlen`, message: `prefix length ${prefixlen} is too long for IPv${ip.family}` });
      return { ...f, ip_address: ip.text, prefixlen };
    });
    return { ...p, fixed_ips, subnets, address_scopes: p.address_scopes ?? {} };
  };

  const gw_port = raw.gw_port ? port(raw.gw_port, "gw_port") : null;
  const interfaces = raw._interfaces.map((p, i) => port(p, `_interfaces.${i}`));

  // Two ports whose ids share their first 11 characters would share a device (qr-<id[:11]>).
  const devices = new Map<string, string>();
  interfaces.forEach((p, i) => {
    const device = `qr-${p.id}`.slice(0, 14);
    const first = devices.get(device);
    if (first !== undefined) issues.push({ path: `_interfaces.${i}.id`, message: `port ${p.id} would share device ${device} with ${first}` });
    else devices.set(device, p.id);
  });

  const fips: FloatingIp[] = [];
  const floating = new Map<string, number>();
  const fixed = new Map<string, number>();
  raw._floatingips.forEach((entry, i) => {
    let result = floatingIps?.get(i);
    if (!result) result = parseFloatingIp(entry);
    floatingIps?.set(i, result);
    for (const issue of result.issues) issues.push(atFloatingIp(i, issue));
    const f = result.floatingIp;
    if (!f) return;
    fips.push(f);
    const a = floating.get(f.floating_ip_address);
    if (a !== undefined) issues.push({ path: `_floatingips.${i}.floating_ip_address`, message: `floating IP ${f.floating_ip_address} is listed twice (also _floatingips.${a})` });
    else floating.set(f.floating_ip_address, i);
    const b = fixed.get(f.fixed_ip_address);
    if (b !== undefined) issues.push({ path: `_floatingips.${i}.fixed_ip_address`, message: `fixed IP ${f.fixed_ip_address} has two floating IPs (also _floatingips.${b})` });
    else fixed.set(f.fixed_ip_address, i);
  });
  if (issues.length > 0) return { issues };

  const router: Router = {
    ...raw,
    gw_port,
    _interfaces: interfaces,
    _floatingips: fips,
  };
  return { router, issues };
}
