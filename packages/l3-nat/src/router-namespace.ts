import { CommandError, deleteNamespace, namespaceExists, validateNamespaceName, type IpRunner } from "@chainwarden/core";

/**
 * Creates a router namespace (idempotent) and turns routing on inside it, as Neutron's
 * `Namespace.create`: loopback up, IPv4 forwarding, ARP answered only for addresses of the incoming
 * interface and sourced from the best local address, and IPv6 forwarding when IPv6 is on. `created`
 * is false when the namespace was there already (its rules must be read, not assumed away).
 *
 * Secondary IPv4 addresses are promoted, as Neutron's `netns add` sets for every namespace: a new
 * namespace takes the host's setting, and without it deleting a port's old primary address (a
 * gateway IP changed within its subnet) would delete the new one, added as its secondary, too.
 *
 * Cost. Every process we start costs milliseconds of our CPU, and an add of hundreds of routers
 * starts thousands, so all of it is one `ip -force -batch`: `netns add` (an existing namespace is
 * fine: -force goes on), then `netns exec` of `ip` and `sysctl` inside it, which ip itself starts.
 */
export async function ensureRouterNamespace(runner: IpRunner, namespace: string, options: { useIpv6: boolean }): Promise<{ created: boolean }> {
  validateNamespaceName(namespace);
  const settings = ["net.ipv4.ip_forward=1", "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2", "net.ipv4.conf.all.promote_secondaries=1"];
  if (options.useIpv6) settings.push("net.ipv6.conf.all.forwarding=1");
  // Not core's addNamespace: it lists every namespace first, a long listing per add with hundreds of routers.
  const lines = [`netns add ${namespace}`, `netns exec ${namespace} ip link set lo up`, `netns exec ${namespace} sysctl -q -w ${settings.join(" ")}`];
  const r = await runner.exec("ip", ["-force", "-batch", "-"], { input: `${lines.join("\n")}\n`, reject: false });
  if (r.exitCode === 0) return { created: true };
  // ip names each failed line ("Command failed -:N"); only an existing namespace is fine.
  const failed = [...r.stderr.matchAll(/^Command failed -:(\d+)$/gm)].map((m) => Number(m[1]));
  const exists = failed.includes(1) && /File exists/.test(r.stderr);
  if (failed.length === 0 || failed.some((n) => n !== 1) || !exists) {
    const line = failed.find((n) => n !== 1 || !exists);
    throw new CommandError(["ip", "-force", "-batch", "-", ...(line !== undefined ? [lines[line - 1]!] : lines)], r.exitCode, r.stderr);
  }
  return { created: false };
}

/** True when the namespace is there (a full pass recreates one deleted behind the agent's back). */
export function routerNamespaceExists(runner: IpRunner, namespace: string): Promise<boolean> {
  return namespaceExists(runner, namespace);
}

/** Deletes the namespace with everything in it (devices, rules, conntrack, leftover processes). */
export function deleteRouterNamespace(runner: IpRunner, namespace: string): Promise<void> {
  return deleteNamespace(runner, namespace);
}
