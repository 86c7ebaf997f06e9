/**
 * The l2 desired-state document, in the shape of Neutron's `security_group_info_for_devices` answer:
 *
 * ```yaml
 * devices: { <port_id>: <port> }            # the ports to filter
 * security_groups: { <sg_id>: [<rule>] }    # rules of every group the ports use
 * sg_member_ips: { <remote_id>: { IPv4: [[ip, mac]], IPv6: [...] } }
 * trusted_devices: [<device>]               # DHCP/router ports on the bridge: accepted, not filtered
 * ```
 *
 * Each port becomes one self-contained resource: the port, the rules of its groups and the member
 * addresses of the remote groups its rules name. A port therefore counts as changed exactly when
 * something that shapes its rules changed, and the reconcile loop hands over only those ports.
 *
 * Validation is per port: a bad field of a port, or of a group or member list the port uses, is a
 * Problem naming that port (and the field); the port keeps its last good rules and every other port
 * still applies. Where this process never had good rules for it, the port's stand-in
 * (`HeldPortResource`, its id and tap) is held: its chains stay as the kernel has them, or, where
 * the kernel has none, drop everything (never left to the FORWARD policy). Problems in groups no
 * port uses name the group.
 *
 * Limits (`L2Limits`): rules per port after remote groups are expanded, and members per remote
 * group, so that one port's input cannot cost the agent unbounded memory or an ipset that cannot
 * hold it (`hash:net`'s default `maxelem`).
 */
import { createHash } from "node:crypto";
import type { ParsedResources, Problem, StateDocument } from "@chainwarden/agent";
import type { FirewallFlavor } from "./firewall-flavor.js";
import { formatCidr, formatIp, parseIpPrefix } from "./ip-address.js";
import { ETHERTYPES, type Ethertype, IPSET_NAME_MAX_LENGTH, IPSET_PREFIX } from "./neutron-constants.js";
import { parsePortInfo, type PortInfo } from "./port-info.js";
import { parseSecurityGroupRule, remoteIdOf, type SecurityGroupRule } from "./security-group-rule.js";
import { describe, joinPath, NEUTRON_ID, NEUTRON_ID_MESSAGE, type Issue } from "./validation.js";

/** Member addresses of a remote group per ethertype; an ethertype absent from the input is absent here. */
export interface MemberIps {
  readonly IPv4?: readonly string[];
  readonly IPv6?: readonly string[];
}

/**
 * A port to filter (resource id: the port id), self-contained: the port, the rules of its groups and the members of the remote groups they name,
 * all validated; two with equal `fingerprint` make the same rules.
 */
export interface PortFilterResource {
  readonly type: "port";
  readonly port: PortInfo;
  /** The rules of each of the port's groups that the state lists. */
  readonly security_groups: Readonly<Record<string, readonly SecurityGroupRule[]>>;
  /** The members of each remote group (or address group) the port's rules name, when the state lists them. */
  readonly members: Readonly<Record<string, MemberIps>>;
  /** Equal fingerprints mean equal rules; the reconcile loop compares these, not the whole object. */
  readonly fingerprint: string;
}

/** A device of `trusted_devices` (a DHCP or router port on the bridge): accepted, not filtered (Neutron's `process_trusted_ports`). Its id is `trustedDeviceId(device)`. */
export interface TrustedDeviceResource {
  readonly type: "trusted_device";
  readonly device: string;
  readonly fingerprint: string;
}

/**
 * The stand-in of a port whose input is invalid (see the file comment): enough to find its chains
 * and its tap. `device` is the port's own when that is valid, else the one Neutron names from its id.
 */
export interface HeldPortResource {
  readonly type: "held_port";
  readonly id: string;
  readonly device: string;
  readonly fingerprint: string;
}

/** Every resource of the l2 document: a port to filter, a trusted device, or the stand-in of an invalid port (held as the kernel has it, or closed). */
export type L2Resource = PortFilterResource | TrustedDeviceResource | HeldPortResource;

/** Bounds on what one port's input may cost. */
export interface L2Limits {
  /** Rules of a port's groups (and its own), remote groups expanded one rule per member when ipsets are off. */
  readonly maxRulesPerPort: number;
  /** Members of one remote group or address group, per ethertype (an ipset's `maxelem`). */
  readonly maxMembersPerGroup: number;
}

/** `hash:net`'s default `maxelem`, which Neutron's sets use; rules per port well above any real group. */
export const DEFAULT_L2_LIMITS: L2Limits = { maxRulesPerPort: 10_000, maxMembersPerGroup: 65_536 };

/** The resource id of a trusted device (ports use their own ids, which cannot contain `:`). */
export function trustedDeviceId(device: string): string {
  return `trusted_device:${device}`;
}

/** Options of `parseL2State`: the layout the devices must fit, whether remote groups become ipsets, and the limits on one port's input. */
export interface L2StateOptions {
  readonly flavor: FirewallFlavor;
  readonly enableIpset: boolean;
  /** Default `DEFAULT_L2_LIMITS`. */
  readonly limits?: L2Limits;
}

/** `N` + ethertype + id, cut to 29 characters (Neutron's `IpsetManager.get_name`). */
export function ipsetName(remoteId: string, ethertype: Ethertype): string {
  return `${IPSET_PREFIX}${ethertype}${remoteId}`.slice(0, IPSET_NAME_MAX_LENGTH);
}

/**
 * Results of the last parse, keyed by the raw JSON of each port, rule list and member list: the next
 * document (usually the same state with a few changes) re-validates only what changed. Entries not
 * used by a parse are dropped, so the cache never outgrows one document.
 */
export class L2ParseCache {
  ports = new Map<string, Remembered<ReturnType<typeof parsePortInfo>>>();
  groups = new Map<string, Remembered<GroupInfo>>();
  members = new Map<string, Remembered<MemberInfo>>();
}

/** A result with the JSON text of the input it came from, kept under the input's id. */
interface Remembered<T> {
  readonly text: string;
  readonly value: T;
}

/** A security group's rule list as parsed: its rules, or the problem that makes it unusable; `key` fingerprints the rules (empty with a problem). */
interface GroupInfo {
  rules?: SecurityGroupRule[];
  problem?: { path: string; message: string };
  key: string;
}

/** A remote group's member list as parsed: its addresses per ethertype, or the problem that makes it unusable; `key` fingerprints them (empty with a problem). */
interface MemberInfo {
  members?: MemberIps;
  problem?: { path: string; message: string };
  key: string;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function hash(text: string): string {
  return createHash("sha1").update(text).digest("base64url");
}

/** Reads the document. Never throws for bad input: everything wrong is a Problem. */
export function parseL2State(document: StateDocument, origin: string, options: L2StateOptions, cache?: L2ParseCache): ParsedResources<L2Resource> {
  const next = cache ? new L2ParseCache() : undefined;
  // By id, compared with the text last seen under that id: cheaper than hashing every port's JSON.
  const memo = <T>(from: Map<string, Remembered<T>> | undefined, to: Map<string, Remembered<T>> | undefined, id: string, text: string, make: () => T): T => {
    if (!from || !to) return make();
    const last = from.get(id);
    const value = last !== undefined && last.text === text ? last.value : make();
    to.set(id, { text, value });
    return value;
  };
  try {
    return parseDocument(
      document,
      origin,
      options,
      (id, text, make) => memo(cache?.groups, next?.groups, id, text, make),
      (id, text, make) => memo(cache?.members, next?.members, id, text, make),
      (id, text, make) => memo(cache?.ports, next?.ports, id, text, make),
    );
  } finally {
    if (cache && next) {
      cache.ports = next.ports;
      cache.groups = next.groups;
      cache.members = next.members;
    }
  }
}

/** Looks a result up by its input's id and raw JSON text, or computes it. */
type Memo<T> = (id: string, text: string, make: () => T) => T;

const jsonText = (raw: unknown): string => JSON.stringify(raw) ?? "";

function parseDocument(
  document: StateDocument,
  origin: string,
  options: L2StateOptions,
  groupMemo: Memo<GroupInfo>,
  memberMemo: Memo<MemberInfo>,
  portMemo: Memo<ReturnType<typeof parsePortInfo>>,
): ParsedResources<L2Resource> {
  const resources = new Map<string, L2Resource>();
  const held = new Map<string, L2Resource>();
  const limits = options.limits ?? DEFAULT_L2_LIMITS;
  const problems: Problem[] = [];
  const problem = (path: string, message: string, resource?: string) =>
    problems.push({ source: origin, path, message, ...(resource !== undefined ? { resource } : {}) });
  /** The tap of each invalid port, for its stand-in; decided once the valid ports have their taps. */
  const invalid = new Map<string, string>();
  const standIn = (portId: string, raw: unknown) => {
    const given = isPlainObject(raw) && typeof raw["device"] === "string" ? raw["device"] : undefined;
    const device = given !== undefined && !options.flavor.deviceProblem(given) ? given : NEUTRON_ID.test(portId) ? options.flavor.deviceForPort(portId) : undefined;
    if (device !== undefined) invalid.set(portId, device);
  };

  const section = (name: string): Record<string, unknown> | undefined => {
    const v = document[name];
    if (v === undefined || v === null) return {};
    if (!isPlainObject(v)) {
      problem(name, `expected a mapping of ${name === "devices" ? "port id to port" : name === "security_groups" ? "security group id to rules" : "group id to member addresses"}`);
      return undefined;
    }
    return v;
  };
  const devices = section("devices");
  const groupsRaw = section("security_groups");
  const membersRaw = section("sg_member_ips");
  if (!devices || !groupsRaw || !membersRaw) {
    // A broken section: report it and return nothing, so the loop keeps every port's last good state.
    return { resources: new Map(), problems };
  }

  // Groups and member lists are validated once, then charged to each port that uses them.
  const groups = new Map<string, GroupInfo>();
  for (const [sgId, rawRules] of Object.entries(groupsRaw)) groups.set(sgId, groupMemo(sgId, jsonText(rawRules), () => parseGroup(sgId, rawRules)));

  const members = new Map<string, MemberInfo>();
  for (const [remoteId, raw] of Object.entries(membersRaw)) {
    members.set(remoteId, memberMemo(remoteId, jsonText(raw), () => parseMembers(remoteId, raw, limits.maxMembersPerGroup)));
  }

  const usedGroups = new Set<string>();
  const usedMembers = new Set<string>();
  const ports: { port: PortInfo; resource: PortFilterResource }[] = [];
  for (const portId of Object.keys(devices).sort()) {
    const base = `devices.${portId}`;
    if (!NEUTRON_ID.test(portId)) {
      problem(base, `port id ${describe(portId)}: ${NEUTRON_ID_MESSAGE}`, portId);
      standIn(portId, devices[portId]);
      continue;
    }
    const portText = jsonText(devices[portId]);
    const parsed = portMemo(portId, portText, () => parsePortInfo(portId, devices[portId], options.flavor));
    if ("issues" in parsed) {
      for (const i of parsed.issues) problem(pathOf(base, i), i.message, portId);
      standIn(portId, devices[portId]);
      continue;
    }
    const port = parsed.port;
    const portGroups: Record<string, readonly SecurityGroupRule[]> = {};
    const keys: string[] = [];
    let bad = false;
    for (const sgId of port.security_groups) {
      usedGroups.add(sgId);
      const g = groups.get(sgId);
      // A group the state does not list has no rules for this port (as in Neutron): fail closed.
      if (!g) continue;
      if (g.problem) {
        problem(g.problem.path, `${g.problem.message} (security group ${sgId} of this port)`, portId);
        bad = true;
        continue;
      }
      portGroups[sgId] = g.rules!;
      keys.push(`${sgId}=${g.key}`);
    }
    const remotes = new Set<string>();
    for (const r of port.security_group_rules) if (remoteIdOf(r)) remotes.add(remoteIdOf(r)!);
    for (const rules of Object.values(portGroups)) for (const r of rules) if (remoteIdOf(r)) remotes.add(remoteIdOf(r)!);
    const portMembers: Record<string, MemberIps> = {};
    for (const remoteId of [...remotes].sort()) {
      usedMembers.add(remoteId);
      const m = members.get(remoteId);
      if (!m) continue;
      if (m.problem) {
        problem(m.problem.path, `${m.problem.message} (remote group ${remoteId} of this port's rules)`, portId);
        bad = true;
        continue;
      }
      portMembers[remoteId] = m.members!;
      keys.push(`${remoteId}~${m.key}`);
    }
    if (!bad) {
      const count = ruleCount(port, portGroups, portMembers, options.enableIpset);
      if (count > limits.maxRulesPerPort) {
        problem(`${base}.security_groups`, `the port's security groups make ${count} rules (remote groups expanded), more than the limit of ${limits.maxRulesPerPort}`, portId);
        bad = true;
      }
    }
    if (bad) {
      standIn(portId, devices[portId]);
      continue;
    }
    const resource: PortFilterResource = {
      type: "port",
      port,
      security_groups: portGroups,
      members: portMembers,
      // The port's own input as given, plus the hashes of the groups and member lists it uses.
      fingerprint: `${portId}\u0000${portText}|${keys.join(",")}`,
    };
    ports.push({ port, resource });
  }

  // Two ports on one device, or two devices whose chains Neutron would cut to the same name, cannot
  // both be filtered: the port with the smaller id keeps the name, the other one is a problem.
  const byDevice = new Map<string, string>();
  const byChain = new Map<string, string>();
  const ipsetOwners = new Map<string, string>();
  for (const { port, resource } of ports) {
    const base = `devices.${port.id}`;
    const tap = options.flavor.tapDevice(port);
    const chain = options.flavor.chainName(port, "ingress");
    const otherDevice = byDevice.get(tap);
    const otherChain = byChain.get(chain);
    if (otherDevice !== undefined) {
      problem(`${base}.device`, `device ${describe(tap)} is also port ${otherDevice}'s device`, port.id);
      continue;
    }
    if (otherChain !== undefined) {
      problem(`${base}.device`, `device ${describe(port.device)} gives the same chain names as port ${otherChain}'s (${chain}); Neutron cuts chain names to 11 characters`, port.id);
      continue;
    }
    if (options.enableIpset) {
      // Two remote ids that share their first 25 characters would share one ipset.
      let clash: string | undefined;
      const mine = new Map<string, string>();
      for (const remoteId of Object.keys(resource.members)) {
        for (const et of ETHERTYPES) {
          const name = ipsetName(remoteId, et);
          const owner = ipsetOwners.get(name) ?? mine.get(name);
          if (owner !== undefined && owner !== remoteId) clash = `remote groups ${owner} and ${remoteId} would share ipset ${name}`;
          mine.set(name, remoteId);
        }
      }
      if (clash) {
        problem(`${base}.security_groups`, clash, port.id);
        invalid.set(port.id, port.device);
        continue;
      }
      for (const [name, remoteId] of mine) ipsetOwners.set(name, remoteId);
    }
    byDevice.set(tap, port.id);
    byChain.set(chain, port.id);
    resources.set(port.id, resource);
  }

  const trusted = document["trusted_devices"];
  if (trusted !== undefined && trusted !== null) {
    if (!Array.isArray(trusted)) {
      problem("trusted_devices", "expected a list of device names");
    } else {
      trusted.forEach((device: unknown, i) => {
        const path = `trusted_devices.${i}`;
        if (typeof device !== "string") {
          problem(path, `expected a device name, not ${describe(device)}`, trustedDeviceId(String(device)));
          return;
        }
        const bad = options.flavor.deviceProblem(device);
        if (bad) {
          problem(path, `${bad}: ${describe(device)}`, trustedDeviceId(device));
          return;
        }
        const tap = options.flavor.tapDevice({ device });
        // Neutron: a device that is also a port's is that port, not a trusted device.
        if (byDevice.has(tap)) return;
        resources.set(trustedDeviceId(device), { type: "trusted_device", device, fingerprint: device });
      });
    }
  }

  for (const [sgId, g] of groups) if (g.problem && !usedGroups.has(sgId)) problem(g.problem.path, g.problem.message, `security_group:${sgId}`);
  for (const [remoteId, m] of members) if (m.problem && !usedMembers.has(remoteId)) problem(m.problem.path, m.problem.message, `sg_member_ips:${remoteId}`);

  // Stand-ins of invalid ports, on taps no valid port (or an earlier stand-in) has.
  const taps = new Set([...resources.values()].map((r) => options.flavor.tapDevice({ device: r.type === "port" ? r.port.device : r.device })));
  for (const [id, device] of invalid) {
    const tap = options.flavor.tapDevice({ device });
    if (resources.has(id) || taps.has(tap)) continue;
    taps.add(tap);
    held.set(id, { type: "held_port", id, device, fingerprint: `held\u0000${device}` });
  }
  return { resources, problems, held };
}

/** Rules a port's groups make: one per rule, a remote group's one per member when there are no ipsets. */
function ruleCount(port: PortInfo, groups: Readonly<Record<string, readonly SecurityGroupRule[]>>, members: Readonly<Record<string, MemberIps>>, enableIpset: boolean): number {
  let n = 0;
  const count = (rule: SecurityGroupRule) => {
    const remote = remoteIdOf(rule);
    n += remote === undefined || enableIpset ? 1 : Math.max(1, members[remote]?.[rule.ethertype]?.length ?? 0);
  };
  for (const rule of port.security_group_rules) count(rule);
  for (const rules of Object.values(groups)) for (const rule of rules) count(rule);
  return n;
}

function parseGroup(sgId: string, rawRules: unknown): GroupInfo {
  const path = `security_groups.${sgId}`;
  if (!NEUTRON_ID.test(sgId)) return { problem: { path, message: `security group id ${describe(sgId)}: ${NEUTRON_ID_MESSAGE}` }, key: "" };
  if (!Array.isArray(rawRules)) return { problem: { path, message: "expected a list of rules" }, key: "" };
  const rules: SecurityGroupRule[] = [];
  for (let i = 0; i < rawRules.length; i++) {
    const r = parseSecurityGroupRule(rawRules[i]);
    if ("issues" in r) {
      const first = r.issues[0]!;
      return {
        problem: {
          path: `${path}.${i}${first.path.length ? `.${joinPath(first.path)}` : ""}`,
          message: r.issues.map((x) => (x.path.length ? `${joinPath(x.path)}: ${x.message}` : x.message)).join("; "),
        },
        key: "",
      };
    }
    rules.push(r.rule);
  }
  return { rules, key: hash(JSON.stringify(rules)) };
}

function pathOf(base: string, issue: Issue): string {
  return issue.path.length ? `${base}.${joinPath(issue.path)}` : base;
}

/**
 * `{IPv4: [[ip, mac], ...], IPv6: [...]}`; an entry may also be a bare address string. Members of
 * address groups are CIDRs. Addresses are kept canonical: a bare address as an address, a CIDR with
 * its host bits cleared.
 */
function parseMembers(remoteId: string, raw: unknown, maxMembers: number): MemberInfo {
  const path = `sg_member_ips.${remoteId}`;
  if (!NEUTRON_ID.test(remoteId)) return { problem: { path, message: `group id ${describe(remoteId)}: ${NEUTRON_ID_MESSAGE}` }, key: "" };
  if (!isPlainObject(raw)) return { problem: { path, message: "expected a mapping of IPv4/IPv6 to member addresses" }, key: "" };
  const out: { IPv4?: string[]; IPv6?: string[] } = {};
  for (const [et, list] of Object.entries(raw)) {
    if (et !== "IPv4" && et !== "IPv6") return { problem: { path: `${path}.${et}`, message: 'expected the keys "IPv4" and "IPv6" only' }, key: "" };
    if (!Array.isArray(list)) return { problem: { path: `${path}.${et}`, message: "expected a list of [ip, mac] pairs" }, key: "" };
    if (list.length > maxMembers) return { problem: { path: `${path}.${et}`, message: `${list.length} members, more than the limit of ${maxMembers} per group (an ipset holds ${maxMembers})` }, key: "" };
    const version = et === "IPv4" ? 4 : 6;
    const addresses: string[] = [];
    for (let i = 0; i < list.length; i++) {
      const entry: unknown = list[i];
      const text = typeof entry === "string" ? entry : Array.isArray(entry) && typeof entry[0] === "string" ? entry[0] : undefined;
      const p = text === undefined ? undefined : parseIpPrefix(text);
      if (!p || p.version !== version) {
        return { problem: { path: `${path}.${et}.${i}`, message: `expected an ${et} address or CIDR (or [ip, mac]), not ${describe(entry)}` }, key: "" };
      }
      addresses.push(p.bare ? formatIp(p) : formatCidr(p));
    }
    out[et] = addresses;
  }
  return { members: out, key: hash(JSON.stringify(out)) };
}


