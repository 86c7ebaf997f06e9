/**
 * The two layouts of Neutron's iptables firewall, which differ only in how they name things:
 *
 * - `iptables` (`IptablesFirewallDriver`, the Linux bridge agent): the port's `device` is its tap
 *   (`tap6bc18a88-96`); chains are named from the device minus `tap`; one conntrack zone per network,
 *   entered from the network's bridge `brq<network_id>`.
 * - `iptables_hybrid` (`OVSHybridIptablesFirewallDriver`, the OVS agent): the `device` is the port id;
 *   the tap is `tap` + id cut to 14 characters, chains are named from the id, and each port has its
 *   own zone, entered from its `qvb` veth.
 */
import { DEVICE_NAME } from "./validation.js";
import { CHAIN_PREFIX, LINUX_DEV_LEN, LINUX_DEV_PREFIX_LEN, MAX_DEVICE_NAME_LENGTH } from "./neutron-constants.js";
import { PluginError } from "@chainwarden/agent";

/** The wrapped chain names are cut to 11 characters, as Neutron's `get_chain_name` cuts them. */
const CHAIN_PART_LENGTH = 11;

/** Neutron's short `firewall_driver` aliases of the two layouts: `iptables` (Linux bridge agent) and `iptables_hybrid` (OVS agent). */
export type FirewallDriverAlias = "iptables" | "iptables_hybrid";

/** What of a port its names are built from: its `device`, and its network (the `iptables` layout's zone and bridge). */
export interface PortNaming {
  readonly device: string;
  readonly network_id?: string | undefined;
}

/** One layout of Neutron's iptables firewall: how a port's device, chains, bridge device and conntrack zone are named. Pure functions of the port. */
export interface FirewallFlavor {
  readonly alias: FirewallDriverAlias;
  /** The wrap name of the Neutron agent that runs this driver (so its rules are adopted as they are). */
  readonly defaultWrapName: string;
  /** Why the device name is not acceptable for this layout, or undefined. */
  deviceProblem(device: string): string | undefined;
  /** The `device` Neutron's agent gives a port with this id (for a port whose own is unusable). */
  deviceForPort(portId: string): string;
  /** The interface `--physdev-in/--physdev-out` match (the VM's tap). */
  tapDevice(port: PortNaming): string;
  /** Ingress (`i`), egress (`o`) or anti-spoofing (`s`) chain, already cut to its kernel length. */
  chainName(port: PortNaming, kind: keyof typeof CHAIN_PREFIX): string;
  /** The bridge-side device whose traffic enters the port's zone. */
  bridgeDevice(port: PortNaming): string;
  /** The key of the port's conntrack zone: its network (`iptables`) or itself (`iptables_hybrid`). */
  zoneKey(port: PortNaming): string;
  /** The port's name in the raw-table comment (`Set zone for ...`). */
  commentName(port: PortNaming): string;
}

function deviceShape(device: string, max: number): string | undefined {
  if (device.length === 0 || device.length > max) return `device must be 1-${max} characters`;
  if (!DEVICE_NAME.test(device)) return "device may only hold letters, digits, _ . - (not first); no spaces, quotes, + or line breaks";
  return undefined;
}

/** `_get_port_device_name`: Neutron strips `tap` plus one more character (the kept quirk of its comments). */
function commentName(port: PortNaming): string {
  return port.device.startsWith("tap") ? port.device.slice(4) : port.device;
}

/** The `iptables` layout (Neutron's `IptablesFirewallDriver`, Linux bridge agent): `device` is the tap; one zone per network, entered from `brq<network>`. */
export const iptablesFlavor: FirewallFlavor = {
  alias: "iptables",
  defaultWrapName: "neutron-linuxbri",
  deviceProblem: (device) => deviceShape(device, MAX_DEVICE_NAME_LENGTH),
  // The Linux bridge agent's tap: `tap` + the port id, cut to a Linux device name.
  deviceForPort: (portId) => `tap${portId}`.slice(0, LINUX_DEV_LEN),
  tapDevice: (port) => port.device,
  chainName: (port, kind) => `${CHAIN_PREFIX[kind]}${port.device.slice(3)}`.slice(0, CHAIN_PART_LENGTH),
  bridgeDevice: (port) => `brq${port.network_id ?? ""}`.slice(0, LINUX_DEV_LEN),
  zoneKey: (port) => (port.network_id ?? "").slice(0, LINUX_DEV_LEN - LINUX_DEV_PREFIX_LEN),
  commentName,
};

/** The `iptables_hybrid` layout (Neutron's `OVSHybridIptablesFirewallDriver`, OVS agent): `device` is the port id; one zone per port, entered from its `qvb` veth. */
export const ovsHybridFlavor: FirewallFlavor = {
  alias: "iptables_hybrid",
  defaultWrapName: "neutron-openvswi",
  // The device is the port id; what reaches the kernel is the tap name cut from it.
  deviceProblem: (device) => deviceShape(device, 255),
  deviceForPort: (portId) => portId,
  tapDevice: (port) => `tap${port.device}`.slice(0, LINUX_DEV_LEN),
  chainName: (port, kind) => `${CHAIN_PREFIX[kind]}${port.device}`.slice(0, CHAIN_PART_LENGTH),
  bridgeDevice: (port) => `qvb${port.device}`.slice(0, LINUX_DEV_LEN),
  // Neutron keys hybrid zones by device[3:], which never matches the key it recovers from the
  // kernel after a restart (tap/qvb name minus 3); we use the recoverable key (see README).
  zoneKey: (port) => `tap${port.device}`.slice(LINUX_DEV_PREFIX_LEN, LINUX_DEV_LEN),
  commentName,
};

/**
 * Driver aliases, as Neutron's `firewall_driver` option names them (the short aliases and the class
 * paths of its `neutron.agent.firewall_drivers` entry points).
 */
export const FIREWALL_DRIVERS: ReadonlyMap<string, FirewallFlavor> = new Map([
  ["iptables", iptablesFlavor],
  ["neutron.agent.linux.iptables_firewall.IptablesFirewallDriver", iptablesFlavor],
  ["iptables_hybrid", ovsHybridFlavor],
  ["neutron.agent.linux.iptables_firewall.OVSHybridIptablesFirewallDriver", ovsHybridFlavor],
]);

/** The layout a `firewall_driver` value names (a short alias or Neutron's class path). Throws `PluginError` (`PLUGIN_OPTIONS`) for any other value. */
export function firewallFlavor(alias: string): FirewallFlavor {
  const flavor = FIREWALL_DRIVERS.get(alias);
  if (!flavor) throw new PluginError("PLUGIN_OPTIONS", `unknown firewall_driver ${JSON.stringify(alias)} (known: ${[...FIREWALL_DRIVERS.keys()].join(", ")})`, "l2-secgroup");
  return flavor;
}
