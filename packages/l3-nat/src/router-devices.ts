import type { ReconcileContext } from "@chainwarden/agent";
import { cidrContains, CommandError, parseCidr, parseIp, PREPARED_INPUT, type ConntrackRunner, type ExecResult, type IpRunner } from "@chainwarden/core";
import { EXTERNAL_DEV_PREFIX, externalDeviceName, INTERNAL_DEV_PREFIX, internalDeviceName } from "./device-names.js";
import type { InterfaceDriver } from "./interface-driver.js";
import { FloatingIpAddressError, type FloatingIpBatchFailure } from "./l3-nat-errors.js";
import type { FloatingIp, Router, RouterPort } from "./router.js";

/** The agent's pino logger type, without importing pino. */
type Logger = ReconcileContext["logger"];

/** One address of a device, as `ip -j addr show` reports it. */
interface DeviceAddress {
  readonly cidr: string;
  readonly family: 4 | 6;
  readonly scope: string;
}

/** Work that must wait until the router's rules are applied (see `syncRouterDevices`). */
export interface PostApplyTask {
  readonly description: string;
  run(): Promise<void>;
  /** Called instead of `run` when the task is dropped (a failed apply, the router removed). */
  cancel?(): void;
}

export interface DeviceSyncOptions {
  readonly runner: IpRunner & ConntrackRunner;
  readonly namespace: string;
  readonly logger: Logger;
  readonly driver: InterfaceDriver;
  readonly router: Router;
  /** The router whose devices were last set up completely (undefined: nothing is known). */
  readonly settled: Router | undefined;
  /** Read the kernel and check everything, even when the ports did not change. */
  readonly full: boolean;
  /** The namespace was created just now: it holds nothing but `lo`, so it is not read. */
  readonly created?: boolean;
}

export interface DeviceSyncResult {
  /** Devices the driver could not provide (the caller retries). */
  readonly missing: string[];
  /**
   * Floating IP addresses and conntrack cleanup, in Neutron's order: only once the NAT rules are in
   * place may a floating IP's address appear on the gateway, and only once its DNAT rule is gone may
   * its connections be deleted (a packet in between would create a new DNATed entry).
   */
  readonly postApply: PostApplyTask[];
  /** Whether the ports were checked against the kernel (false: only floating IPs changed). */
  readonly plumbed: boolean;
}

/**
 * Brings the router namespace's devices to the router: plugs its ports through the interface
 * driver, unplugs stale `qr-`/`qg-` devices, sets the ports' addresses (Neutron's `init_router_port`)
 * and the default routes via the external subnets' gateways, and prepares the floating IP addresses
 * (/32 on the gateway device) and the conntrack cleanup to run after the apply.
 *
 * Cost. A change that touches only floating IPs (the common update) runs no command before the
 * apply: the addresses to add and remove follow from the settled router. Otherwise the namespace is
 * read once (`ip -j addr show`) and its addresses and routes are set in one `ip -batch`; floating IP
 * addresses always go in one `ip -batch` after the apply, however many there are.
 */
export async function syncRouterDevices(options: DeviceSyncOptions): Promise<DeviceSyncResult> {
  const { runner, namespace, router, settled } = options;
  const gw = router.gw_port;
  const gwDevice = gw ? externalDeviceName(gw.id) : undefined;
  const connections = new Map<string, string>();
  const conntrack = (ip: string, why: string) => {
    if (!connections.has(ip)) connections.set(ip, why);
  };

  let missing: string[] = [];
  let fipBatch: string[] = [];
  const plumbed = options.full || !settled || portsKey(settled) !== portsKey(router);
  // The floating IPs that differ from the settled router's. The parse keeps an unchanged floating
  // IP's object, so on a 1,000-FIP router one move compares objects, not 2,000 addresses.
  const before: readonly FloatingIp[] = settled?.gw_port ? settled._floatingips : [];
  const after: readonly FloatingIp[] = gw ? router._floatingips : [];
  const kept = new Set(after);
  const gone = before.filter((f) => !kept.has(f));
  const stayed = new Set(before);
  const came = after.filter((f) => !stayed.has(f));
  if (!plumbed) {
    // Only floating IPs changed: what is on the gateway is what the settled router put there.
    const cidrs = (list: readonly FloatingIp[]) => new Set(list.map((f) => ipToCidr(f.floating_ip_address, 32)));
    if (gwDevice) fipBatch = fipChanges(gwDevice, cidrs(gone), cidrs(came), new Set(), conntrack);
  } else {
    ({ missing, fipBatch } = await plumb(options, gwDevice, new Set(after.map((f) => ipToCidr(f.floating_ip_address, 32))), conntrack));
  }

  const postApply: PostApplyTask[] = [];
  if (fipBatch.length > 0) {
    const ns = { namespace };
    postApply.push({
      description: `floating IP addresses on ${gwDevice}: ${fipBatch.length} change(s)`,
      run: async () => {
        // -force: one address that is already there (or gone) must not stop the others.
        const r = await runner.exec("ip", ["-force", "-batch", "-"], { ...ns, input: `${fipBatch.join("\n")}\n`, reject: false });
        const failures = floatingIpBatchFailures(fipBatch, r);
        if (failures.length > 0) {
          throw new FloatingIpAddressError(router.id, namespace, failures, new CommandError(["ip", "-force", "-batch", "-"], r.exitCode, r.stderr, ns));
        }
      },
    });
  }
  // A floating IP that is gone or moved to another fixed IP: its connections still DNAT to the old
  // fixed IP. (Moved: a deviation, Neutron keeps them.) Also when its address was never on the device.
  const now = new Map(came.map((f) => [f.floating_ip_address, f.fixed_ip_address]));
  for (const f of gone) {
    const fixed = now.get(f.floating_ip_address);
    if (fixed === undefined) conntrack(f.floating_ip_address, "floating IP disassociated");
    else if (fixed !== f.fixed_ip_address) conntrack(f.floating_ip_address, "floating IP moved");
  }
  if (connections.size > 0) postApply.push(conntrackCleanup(runner, namespace, connections));
  return { missing, postApply, plumbed };
}

/** The kernel read and the port plumbing; returns the floating IP batch from what is really there. */
async function plumb(
  options: DeviceSyncOptions,
  gwDevice: string | undefined,
  wantFips: ReadonlySet<string>,
  conntrack: (ip: string, why: string) => void,
): Promise<{ missing: string[]; fipBatch: string[] }> {
  const { runner, namespace, logger, driver, router, settled } = options;
  const devices = options.created ? new Map<string, DeviceAddress[]>([["lo", []]]) : await readAddresses(runner, namespace);
  const existing = new Set(devices.keys());
  const context = { runner, namespace, logger };
  const missing: string[] = [];
  const wanted = new Map<string, { port: RouterPort; kind: "internal" | "external" }>();
  for (const p of router._interfaces) if (p.admin_state_up) wanted.set(internalDeviceName(p.id), { port: p, kind: "internal" });
  if (router.gw_port && gwDevice) wanted.set(gwDevice, { port: router.gw_port, kind: "external" });

  // Stale devices first: a port that moved to a new id must not keep its old addresses alive.
  for (const device of existing) {
    if (wanted.has(device) || !(device.startsWith(INTERNAL_DEV_PREFIX) || device.startsWith(EXTERNAL_DEV_PREFIX))) continue;
    logger.info({ device }, "unplugging stale router device");
    await driver.unplug(context, device);
    if (device.startsWith(EXTERNAL_DEV_PREFIX)) {
      // The gateway is gone with its addresses: so are its connections (Neutron's remove_external_gateway_ip).
      for (const a of devices.get(device) ?? []) if (a.scope !== "link") conntrack(a.cidr.split("/")[0]!, "gateway removed");
    }
  }

  // The drivers' settings of the new devices (MAC, MTU, up) go first in the batch that sets the addresses.
  const linkSetup: string[] = [];
  const batch: string[] = [];
  for (const [device, { port, kind }] of wanted) {
    if ((await driver.plug(context, { device, port, kind, existing, linkSetup })) === "missing") {
      missing.push(device);
      continue;
    }
    const want = port.fixed_ips.map((f) => ipToCidr(f.ip_address, f.prefixlen));
    const have = (devices.get(device) ?? []).filter((a) => a.scope !== "link");
    for (const cidr of want) {
      if (have.some((a) => a.cidr === cidr)) continue;
      batch.push(`address replace ${cidr}${parseCidr(cidr)!.family === 4 ? " brd +" : ""} scope global dev ${device}`);
    }
    for (const a of have) {
      // Floating IP /32s on the gateway are handled after the apply.
      if (want.includes(a.cidr) || (kind === "external" && isHostCidr(a.cidr))) continue;
      batch.push(`address del ${a.cidr} dev ${device}`);
      if (kind === "external") conntrack(a.cidr.split("/")[0]!, "gateway address removed");
    }
    if (kind === "external") batch.push(...gatewayRoutes(device, port));
  }
  batch.unshift(...linkSetup);
  if (batch.length > 0) {
    const r = await runner.exec("ip", ["-force", "-batch", "-"], { namespace, input: `${batch.join("\n")}\n`, reject: false });
    if (r.exitCode !== 0) throw new CommandError(["ip", "-force", "-batch", "-"], r.exitCode, `${r.stderr.trim()} (batch: ${batch.join("; ")})`, { namespace });
  }
  // A default route of a family the gateway no longer has a gateway for (the device stayed).
  if (gwDevice && settled?.gw_port && externalDeviceName(settled.gw_port.id) === gwDevice && !missing.includes(gwDevice)) {
    for (const version of [4, 6] as const) {
      if (gatewayOf(settled.gw_port, version) !== undefined && gatewayOf(router.gw_port!, version) === undefined) {
        await runner.exec("ip", [`-${version}`, "route", "del", "default", "dev", gwDevice], { namespace, reject: false });
      }
    }
  }

  let fipBatch: string[] = [];
  if (router.gw_port && gwDevice && !missing.includes(gwDevice)) {
    const gwCidrs = new Set(router.gw_port.fixed_ips.map((f) => ipToCidr(f.ip_address, 32)));
    const current = new Set((devices.get(gwDevice) ?? []).filter((a) => isHostCidr(a.cidr) && a.family === 4).map((a) => a.cidr));
    fipBatch = fipChanges(gwDevice, current, wantFips, gwCidrs, conntrack);
  }
  return { missing, fipBatch };
}

/** What `ip` says for an address that is already there (`add`) or already gone (`del`), IPv4 and IPv6. */
const ADDRESS_THERE = new Set(["Error: ipv4: Address already assigned.", "Error: ipv6: address already assigned."]);
const ADDRESS_GONE = new Set(["Error: ipv4: Address not found.", "Error: ipv6: address not found."]);

/**
 * The lines of a floating IP `ip -force -batch` that failed for a reason other than their address
 * being there already (`address add`) or gone already (`address del`), which a floating IP added or
 * removed behind our back makes harmless. With -force, ip prints each failing line's error followed
 * by `Command failed -:N` (N counted from 1) and exits 1; any other exit, or an error not followed by
 * a line number (ip gave up on the batch), fails the whole batch (line 0).
 */
export function floatingIpBatchFailures(lines: readonly string[], result: ExecResult): FloatingIpBatchFailure[] {
  if (result.exitCode === 0) return [];
  const failures: FloatingIpBatchFailure[] = [];
  let said: string[] = [];
  for (const text of result.stderr.split("\n")) {
    const m = /^Command failed -:(\d+)$/.exec(text);
    if (!m) {
      if (text !== "") said.push(text);
      continue;
    }
    const line = Number(m[1]);
    const command = lines[line - 1] ?? "";
    const error = said.join("\n");
    said = [];
    const harmless = (command.startsWith("address add ") && ADDRESS_THERE.has(error)) || (command.startsWith("address del ") && ADDRESS_GONE.has(error));
    if (!harmless) failures.push({ line, command, error });
  }
  if (said.length > 0 || result.exitCode !== 1 || !/^Command failed -:/m.test(result.stderr)) {
    failures.push({ line: 0, command: `ip -force -batch - (exit ${result.exitCode})`, error: said.join("\n") || result.stderr.trim() });
  }
  return failures;
}

/** `ip -batch` lines taking a gateway device's /32s from `have` to `want` (never its own addresses). */
function fipChanges(device: string, have: ReadonlySet<string>, want: ReadonlySet<string>, keep: ReadonlySet<string>, conntrack: (ip: string, why: string) => void): string[] {
  const lines: string[] = [];
  for (const cidr of want) if (!have.has(cidr)) lines.push(`address add ${cidr} scope global dev ${device}`);
  for (const cidr of have) {
    if (want.has(cidr) || keep.has(cidr)) continue;
    lines.push(`address del ${cidr} dev ${device}`);
    conntrack(cidr.split("/")[0]!, "floating IP disassociated");
  }
  return lines;
}

/**
 * Default routes via the gateways of the external subnets (the last one per IP version wins, as in
 * Neutron), with an on-link route first for a gateway outside its subnet. (`ip -batch` lines take no
 * `-6`: the family follows from the addresses.)
 */
function gatewayRoutes(device: string, port: RouterPort): string[] {
  const lines: string[] = [];
  for (const s of port.subnets) {
    if (s.gateway_ip && !cidrContains(parseCidr(s.cidr)!, parseIp(s.gateway_ip)!)) lines.push(`route replace ${s.gateway_ip} dev ${device} scope link`);
  }
  for (const version of [4, 6] as const) {
    const gw = gatewayOf(port, version);
    if (gw !== undefined) lines.push(`route replace default via ${gw} dev ${device}`);
  }
  return lines;
}

function gatewayOf(port: RouterPort, version: 4 | 6): string | undefined {
  let found: string | undefined;
  for (const s of port.subnets) if (s.gateway_ip && parseIp(s.gateway_ip)!.family === version) found = s.gateway_ip;
  return found;
}

/** What of a router's ports the devices depend on: equal keys mean no plumbing to do. */
function portsKey(router: Router): string {
  const port = (p: RouterPort | null) =>
    p && { id: p.id, network_id: p.network_id, mac: p.mac_address, mtu: p.mtu, up: p.admin_state_up, ips: p.fixed_ips.map((f) => `${f.ip_address}/${f.prefixlen}`), gws: p.subnets.map((s) => `${s.cidr} ${s.gateway_ip}`) };
  return JSON.stringify([port(router.gw_port), router._interfaces.map(port)]);
}

/**
 * Deletes the connections of addresses a change made illegal (`ip` → why), both directions as
 * Neutron's delete_conntrack_state: to the address (`-D -d`) and replies to it (`-D -q`).
 *
 * Cost. Every `conntrack -D` walks the whole conntrack hash table, which is shared by all
 * namespaces and sized by the host (262,144 buckets on a large one: ~10 ms in the kernel), and
 * two walks do not run faster side by side. So one `conntrack -R` takes all the lines, and where
 * the runner can `prepare` it, that process is started now, while the rules are applied, and is
 * given its lines once they are in: the cleanup then costs little more than the walks (20–25 ms
 * after the rules for one address in the l3 benchmark, against 28–31 ms for two processes started
 * after the apply).
 */
function conntrackCleanup(runner: ConntrackRunner, namespace: string, connections: ReadonlyMap<string, string>): PostApplyTask {
  const lines = [...connections.keys()].flatMap((ip) => [`-D -d ${ip}`, `-D -q ${ip}`]);
  const prepared = runner.prepare?.("conntrack", ["-R", PREPARED_INPUT], { namespace, reject: false });
  return {
    description: `delete conntrack entries of ${[...connections].map(([ip, why]) => `${ip} (${why})`).join(", ")}`,
    run: async () => {
      // A prepared command no longer waiting has expired (the apply took longer than the runner lets
      // a command wait): the plain commands below do the work.
      if (prepared?.waiting) {
        let r;
        try {
          r = await prepared.run(`${lines.join("\n")}\n`);
        } catch (err) {
          // It could not be started (no FIFO could be made, say): the plain commands below still can.
          if (!(err instanceof CommandError && err.exitCode === undefined)) throw err;
        }
        // conntrack -R fails on the line it cannot carry out, without saying which: name them all.
        if (r && r.exitCode !== 0) throw new CommandError(["conntrack", "-R", PREPARED_INPUT], r.exitCode, `${r.stderr.trim()} (input: ${lines.join("; ")})`, { namespace });
        if (r) return;
      }
      // One address after another, its two directions at once; -D exits 1 when nothing matched.
      for (const ip of connections.keys()) {
        await Promise.all(
          ["-d", "-q"].map(async (flag) => {
            const r = await runner.exec("conntrack", ["-D", flag, ip], { namespace, reject: false });
            if (r.exitCode > 1) throw new CommandError(["conntrack", "-D", flag, ip], r.exitCode, r.stderr, { namespace });
          }),
        );
      }
    },
    cancel: () => prepared?.cancel(),
  };
}

function isHostCidr(cidr: string): boolean {
  return cidr.endsWith("/32") || cidr.endsWith("/128");
}

/** Every device of the namespace with its addresses (`ip -j addr show`, one command). */
export async function readAddresses(runner: IpRunner, namespace: string): Promise<Map<string, DeviceAddress[]>> {
  const r = await runner.exec("ip", ["-j", "addr", "show"], { namespace });
  const out = new Map<string, DeviceAddress[]>();
  for (const link of parseJsonList(r.stdout) as { ifname?: string; addr_info?: { family?: string; local?: string; prefixlen?: number; scope?: string }[] }[]) {
    if (!link.ifname) continue;
    const addresses: DeviceAddress[] = [];
    for (const a of link.addr_info ?? []) {
      if ((a.family !== "inet" && a.family !== "inet6") || !a.local || a.prefixlen === undefined) continue;
      addresses.push({ cidr: `${a.local}/${a.prefixlen}`, family: a.family === "inet" ? 4 : 6, scope: a.scope ?? "global" });
    }
    out.set(link.ifname, addresses);
  }
  return out;
}

function parseJsonList(text: string): unknown[] {
  const trimmed = text.trim();
  if (trimmed === "") return [];
  const value: unknown = JSON.parse(trimmed);
  return Array.isArray(value) ? value : [];
}

/** `ip/prefixlen`, the form `ip addr` takes (Neutron's `ip_to_cidr`). */
function ipToCidr(ip: string, prefixlen: number): string {
  return `${ip}/${prefixlen}`;
}
