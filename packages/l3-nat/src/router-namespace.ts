import { CommandError, deleteNamespace, namespaceExists, validateNamespaceName, type IptablesRunner } from "@chainwarden/core";

/**
 * Creates a router namespace (idempotent) and turns routing on inside it, as Neutron's
 * `Namespace.create`: IPv4 forwarding, ARP answered only for addresses of the incoming interface
 * and sourced from the best local address, and IPv6 forwarding when IPv6 is on. One `sysctl` for
 * all of them: every process costs milliseconds when hundreds of routers are added. `created` is
 * false when the namespace was there already (its rules must be read, not assumed away).
 */
export async function ensureRouterNamespace(runner: IptablesRunner, namespace: string, options: { useIpv6: boolean }): Promise<{ created: boolean }> {
  validateNamespaceName(namespace);
  // `ip netns add` on its own (core's addNamespace lists every namespace first: with hundreds of
  // routers that is a long listing per add); an existing namespace is fine.
  const added = await runner.exec("ip", ["netns", "add", namespace], { reject: false });
  if (added.exitCode !== 0 && !/File exists/.test(added.stderr)) throw new CommandError(["ip", "netns", "add", namespace], added.exitCode, added.stderr);
  await runner.exec("ip", ["link", "set", "lo", "up"], { namespace });
  const settings = ["net.ipv4.ip_forward=1", "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2"];
  if (options.useIpv6) settings.push("net.ipv6.conf.all.forwarding=1");
  await runner.exec("ip", ["netns", "exec", namespace, "sysctl", "-q", "-w", ...settings]);
  return { created: added.exitCode === 0 };
}

/** True when the namespace is there (a full pass recreates one deleted behind the agent's back). */
export function routerNamespaceExists(runner: IptablesRunner, namespace: string): Promise<boolean> {
  return namespaceExists(runner, namespace);
}

/** Deletes the namespace with everything in it (devices, rules, conntrack, leftover processes). */
export function deleteRouterNamespace(runner: IptablesRunner, namespace: string): Promise<void> {
  return deleteNamespace(runner, namespace);
}
