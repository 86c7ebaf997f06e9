import { cutChainName } from "@chainwarden/core";
import type { IpVersion } from "./firewall-rule.js";

/**
 * Chain and device names, as neutron-fwaas builds them. The manager wraps and cuts chain names
 * (`neutron-l3-agent-` + 11 characters), so `iv4<firewall id>` becomes `neutron-l3-agent-iv480daec7b`
 * and `fwaas-default-policy` becomes `neutron-l3-agent-fwaas-defau`, as in the seed.
 */

/** The chain every firewalled interface's traffic falls through to when no rule decided it: it drops (neutron-fwaas's `fwaas-default-policy`). */
export const DEFAULT_POLICY_CHAIN = "fwaas-default-policy";
/** v2's verdict chain for `allow` (neutron-fwaas's `accepted`): it accepts. Present while a v2 group is on the router. */
export const ACCEPTED_CHAIN = "accepted";
/** v2's verdict chain for `deny` and INVALID packets (neutron-fwaas's `dropped`): it drops. Present while a v2 group is on the router. */
export const DROPPED_CHAIN = "dropped";
/** v2's verdict chain for `reject` (neutron-fwaas's `rejected`): it rejects with ICMP port unreachable. Present while a v2 group is on the router. */
export const REJECTED_CHAIN = "rejected";

/** Neutron's internal router interfaces. */
export const INTERNAL_DEV_PREFIX = "qr-";
/** Neutron's `LinuxInterfaceDriver.DEV_NAME_LEN`: device names are cut to 14 characters. */
export const DEV_NAME_LEN = 14;

/** A firewall rule's direction as FWaaS v2 names it, seen from the tenant network: `ingress` towards it, `egress` from it. */
export type Direction = "ingress" | "egress";

/**
 * `iv4<id>` / `ov6<id>`: the chain of one firewall, direction and IP version, cut as a wrapped
 * chain is (11 characters: `iv480daec7b`). Two firewalls whose ids share their first 8 characters
 * would share chains; `firewallIdPrefixClash` finds them before anything is programmed.
 */
export function firewallChainName(direction: Direction, version: IpVersion, firewallId: string): string {
  return cutChainName(`${direction === "ingress" ? "i" : "o"}v${version}${firewallId}`, true);
}

/** The part of a firewall id its chain names keep. */
export function firewallChainKey(firewallId: string): string {
  return firewallChainName("ingress", 4, firewallId).slice(3);
}

/** `qr-<port id[:11]>`. */
export function interfaceName(prefix: string, portId: string): string {
  return (prefix + portId).slice(0, DEV_NAME_LEN);
}

/**
 * The iptables interface option of a direction. Firewall rules sit on the router's internal
 * interfaces, so traffic towards the tenant network (ingress) leaves through them (`-o`) and the
 * tenant's own traffic (egress) comes in through them (`-i`).
 */
export function interfaceOption(direction: Direction): "-o" | "-i" {
  return direction === "ingress" ? "-o" : "-i";
}
