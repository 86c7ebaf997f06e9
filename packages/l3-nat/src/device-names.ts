/**
 * Device and namespace names, as Neutron builds them (`namespaces.py`, `interface.py`): a prefix and
 * the first characters of the port or network id, cut to 14 characters (`LinuxInterfaceDriver
 * .DEV_NAME_LEN`), which keeps every name under the kernel's 15-character limit.
 */
export const INTERNAL_DEV_PREFIX = "qr-";
export const EXTERNAL_DEV_PREFIX = "qg-";
export const TAP_DEV_PREFIX = "tap";
export const BRIDGE_PREFIX = "brq";
export const NS_PREFIX = "qrouter-";
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
