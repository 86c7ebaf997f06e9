/**
 * Device and namespace names, as Neutron builds them (`namespaces.py`, `interface.py`): a prefix and
 * the first characters of the port or network id, cut to 14 characters (`LinuxInterfaceDriver
 * .DEV_NAME_LEN`), which keeps every name under the kernel's 15-character limit.
 */

/** Neutron's `namespaces.INTERNAL_DEV_PREFIX`: a router's interfaces on tenant networks are `qr-…`; the sweep treats every `qr-` device in a router namespace as the agent's. */
export const INTERNAL_DEV_PREFIX = "qr-";
/** Neutron's `namespaces.EXTERNAL_DEV_PREFIX`: a router's gateway device is `qg-…`; the sweep treats every `qg-` device in a router namespace as the agent's. */
export const EXTERNAL_DEV_PREFIX = "qg-";
/** Neutron's `TAP_DEVICE_PREFIX`: the outer (bridge) end of a router port's veth under the linuxbridge driver is `tap…`. */
export const TAP_DEV_PREFIX = "tap";
/** The linuxbridge agent's `BRIDGE_NAME_PREFIX`: a network's bridge is `brq…`, so the driver plugs into the bridge that agent would use. */
export const BRIDGE_PREFIX = "brq";
/** Neutron's `namespaces.NS_PREFIX`, the prefix of its router namespaces (`qrouter-<router id>`) and the default `namespace_prefix`. */
export const NS_PREFIX = "qrouter-";
/** Neutron's `LinuxInterfaceDriver.DEV_NAME_LEN`: every device name built here is cut to this length, under the kernel's `IFNAMSIZ` limit. */
export const DEV_NAME_LEN = 14;

/** `qr-<port id[:11]>`: a router interface on a tenant network. */
export function internalDeviceName(portId: string): string {
  return (INTERNAL_DEV_PREFIX + portId).slice(0, DEV_NAME_LEN);
}

/** `qg-<port id[:11]>`: the router's gateway on the external network. */
export function externalDeviceName(portId: string): string {
  return (EXTERNAL_DEV_PREFIX + portId).slice(0, DEV_NAME_LEN);
}

/** The outer end of a linuxbridge veth (`tap<port id[:11]>`), as Neutron's BridgeInterfaceDriver names it. */
export function tapDeviceName(portId: string): string {
  return (TAP_DEV_PREFIX + portId).slice(0, DEV_NAME_LEN);
}

/** The linuxbridge agent's bridge of a network (`brq<network id[:11]>`). */
export function bridgeName(networkId: string): string {
  return (BRIDGE_PREFIX + networkId).slice(0, DEV_NAME_LEN);
}

/** `<prefix><router id>` (Neutron's `build_ns_name`). */
export function routerNamespaceName(prefix: string, routerId: string): string {
  return prefix + routerId;
}

/**
 * The alias that marks a bridge as made by the l3 agent whose routers are `<prefix><router id>`
 * (linuxbridge driver, standalone): `chainwarden:l3-nat:<prefix>`. Agents with different prefixes
 * (a test beside a node's agent) never delete each other's bridges.
 */
export function bridgeMark(namespacePrefix: string): string {
  return `chainwarden:l3-nat:${namespacePrefix}`;
}
