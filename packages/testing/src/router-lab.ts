/**
 * A lab for routers on the real kernel: a `fabric` namespace holding the Linux bridges (the
 * linuxbridge interface driver's `bridge_namespace`) and one namespace per host (VMs, an external
 * host), each joined to a bridge by a veth. Every namespace is uniquely named (`createNetns`) and
 * `delete()` always removes them, with the net-tool processes and the agent's own namespaces.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { netToolPath } from "./net-tool.js";
import { createNetns, deleteNetns, listNetns, type TestNetns } from "./netns.js";

/** Options of `createRouterLab`: how its namespaces are named, which hosts it has, and which agent namespaces its `delete()` also removes. */
export interface RouterLabOptions<Host extends string> {
  /** Names the lab's namespaces: `<prefix>-fabric-<pid>-<random>`, `<prefix>-<host>-<pid>-<random>`. */
  prefix: string;
  /** The host namespaces to create besides the fabric, in this order. */
  hosts: readonly Host[];
  /** The agent's `namespace_prefix` under test: `delete()` removes every namespace that starts with it, first. */
  agentNamespacePrefix?: string;
}

/** A running lab (`createRouterLab`): its fabric and hosts, ways to wire and drive them, and `delete()`, which removes all of it. */
export interface RouterLab<Host extends string = string> {
  /** The namespace with the bridges. */
  readonly fabric: TestNetns;
  /** The host namespaces, by the names given. */
  readonly hosts: Readonly<Record<Host, TestNetns>>;
  /**
   * Joins a host to `bridge` in the fabric (created and set up when missing) by a veth: `eth0` in the
   * host, with `cidr`, `lo` up and, when given, a default route via `gateway`.
   */
  attach(host: TestNetns, bridge: string, cidr: string, gateway?: string): Promise<void>;
  /**
   * Starts net-tool (`netToolPath()`) in a host and resolves at its first output line; every line
   * also goes to `onLine`. Rejects when it exits before printing one. `delete()` kills it.
   */
  netTool(host: TestNetns, args: readonly string[], onLine?: (line: string) => void): Promise<ChildProcess>;
  /**
   * Kills the net-tool processes, deletes the agent's namespaces (`agentNamespacePrefix`), then the
   * hosts and the fabric. Goes on past a failure and throws the first one at the end. Safe to call twice.
   */
  delete(): Promise<void>;
}

/** Creates the fabric and the hosts; when one cannot be created, those already made are deleted. Requires root. */
export async function createRouterLab<const Host extends string>(options: RouterLabOptions<Host>): Promise<RouterLab<Host>> {
  const created: TestNetns[] = [];
  const tools: ChildProcess[] = [];
  let deleted: Promise<void> | undefined;

  const deleteAll = async (): Promise<void> => {
    const errors: unknown[] = [];
    for (const child of tools) child.kill("SIGKILL");
    if (options.agentNamespacePrefix) {
      const prefix = options.agentNamespacePrefix;
      try {
        for (const name of (await listNetns()).filter((n) => n.startsWith(prefix))) await deleteNetns(name).catch((e: unknown) => errors.push(e));
      } catch (err) {
        errors.push(err);
      }
    }
    // Hosts first (their veth ends go with them), the fabric last.
    for (const ns of [...created].reverse()) await ns.delete().catch((e: unknown) => errors.push(e));
    if (errors.length) throw errors[0];
  };

  try {
    const fabric = await createNetns(`${options.prefix}-fabric`);
    created.push(fabric);
    const hosts = {} as Record<Host, TestNetns>;
    for (const name of options.hosts) {
      const ns = await createNetns(`${options.prefix}-${name}`);
      created.push(ns);
      hosts[name] = ns;
    }
    return {
      fabric,
      hosts,
      async attach(host, bridge, cidr, gateway) {
        const outer = `v${host.name.slice(-9)}`;
        await fabric.exec(["ip", "link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", host.name]);
        await fabric.exec(["ip", "link", "add", bridge, "type", "bridge"], { reject: false });
        await fabric.exec(["ip", "link", "set", bridge, "up"]);
        await fabric.exec(["ip", "link", "set", outer, "master", bridge, "up"]);
        await host.exec(["ip", "link", "set", "lo", "up"]);
        await host.exec(["ip", "addr", "add", cidr, "dev", "eth0"]);
        await host.exec(["ip", "link", "set", "eth0", "up"]);
        if (gateway) await host.exec(["ip", "route", "add", "default", "via", gateway]);
      },
      netTool(host, args, onLine) {
        const child = spawn("ip", ["netns", "exec", host.name, process.execPath, netToolPath(), ...args], { stdio: ["pipe", "pipe", "inherit"] });
        tools.push(child);
        for (const s of [child.stdin, child.stdout]) s?.on("error", () => undefined);
        return new Promise((resolve, reject) => {
          let first = true;
          let buf = "";
          child.stdout!.on("data", (d: Buffer) => {
            buf += d.toString();
            const lines = buf.split("\n");
            buf = lines.pop()!;
            for (const line of lines) {
              onLine?.(line);
              if (first) {
                first = false;
                resolve(child);
              }
            }
          });
          child.once("error", (err) => first && reject(err));
          child.once("exit", (code) => first && reject(new Error(`net-tool ${args.join(" ")} exited ${code}`)));
        });
      },
      delete: () => (deleted ??= deleteAll()),
    };
  } catch (err) {
    await deleteAll().catch(() => undefined);
    throw err;
  }
}
