import type { AuxCommand, Backend, ExecOptions, ExecResult, PreparedCommand, PrepareOptions, RestoreOptions, Target } from "@chainwarden/core";
import { CommandError, ForwardingRunner, NamespaceGoneError, PREPARED_INPUT } from "@chainwarden/core";
import { FakeIptablesRunner } from "@chainwarden/testing";

interface FakeLink {
  addresses: string[];
  up: boolean;
  mac?: string;
  mtu?: number;
  master?: string;
  /** veth peer: [namespace key, name] */
  peer?: [string, string];
  bridge?: boolean;
}

const HOST = "<host>";

/**
 * A host for unit tests of the l3 handler: iptables through the honest `FakeIptablesRunner`, and a
 * small model of what the handler does with `ip` (namespaces, veths, bridges, addresses, routes),
 * `sysctl` (through `ip netns exec`) and `conntrack` (`-D`, and `-R` prepared as `ExecaRunner` does:
 * started at `prepare`, its lines read at `run`). Every command is logged in `events`, with the
 * restores, so tests can check the order of things. Anything else throws.
 */
export class FakeL3Host extends ForwardingRunner<FakeIptablesRunner> {
  /** `restore <ns>` and `<ns>: <command line>` in the order they happened. */
  readonly events: string[] = [];
  readonly links = new Map<string, Map<string, FakeLink>>([[HOST, new Map()]]);
  readonly routes = new Map<string, string[]>();
  readonly sysctls = new Map<string, string[]>();

  /** Prepared commands started and neither run nor cancelled (a leak, if any is left at the end). */
  readonly preparedWaiting = new Set<string>();
  /** `IptablesRunner.prepare`, for `conntrack -R PREPARED_INPUT` only; absent with `{ prepare: false }`. */
  readonly prepare?: (command: AuxCommand, args: readonly string[], options?: PrepareOptions) => PreparedCommand;

  /**
   * `prepare: false`: no `prepare` (like a plain ForwardingRunner); `"cannot-start"`: prepared
   * commands fail to start, as `ExecaRunner`'s do when no FIFO can be made.
   */
  constructor(variant: Backend = "nft", private readonly options: { prepare?: boolean | "cannot-start" } = {}) {
    super(new FakeIptablesRunner({ variant }));
    if (options.prepare !== false) this.prepare = (command, args, opts) => this.prepareCommand(command, args, opts);
  }

  /** The fake iptables underneath (dumps, namespaces, recorded calls). */
  get iptables(): FakeIptablesRunner {
    return this.inner;
  }

  override async restore(target: Target, input: string, options?: RestoreOptions): Promise<void> {
    this.events.push(`restore ${target.namespace ?? HOST} v${target.family}`);
    await this.iptables.restore(target, input, options);
  }

  /** Creates a device in a namespace, as someone other than the driver would (for `noop`). */
  addDevice(namespace: string | undefined, name: string): void {
    this.linksOf(namespace ?? HOST).set(name, { addresses: [], up: true });
  }

  device(namespace: string | undefined, name: string): FakeLink | undefined {
    return this.links.get(namespace ?? HOST)?.get(name);
  }

  commandsIn(namespace: string | undefined): string[] {
    const prefix = `${namespace ?? HOST}: `;
    return this.events.filter((e) => e.startsWith(prefix)).map((e) => e.slice(prefix.length));
  }

  private prepareCommand(command: AuxCommand, args: readonly string[], options: PrepareOptions = {}): PreparedCommand {
    if (command !== "conntrack" || args.length !== 2 || args[0] !== "-R" || args[1] !== PREPARED_INPUT) throw new Error(`FakeL3Host: prepare ${[command, ...args].join(" ")}`);
    const ns = options.namespace ?? HOST;
    const id = `${ns}#${this.events.length}`;
    this.events.push(`${ns}: conntrack -R ${PREPARED_INPUT}`);
    this.preparedWaiting.add(id);
    let state: "waiting" | "run" | "cancelled" = "waiting";
    return {
      run: async (input) => {
        if (state !== "waiting") throw new CommandError([command, ...args], undefined, `prepared command ${state === "run" ? "run twice" : "was cancelled"}`, { namespace: options.namespace });
        state = "run";
        this.preparedWaiting.delete(id);
        if (this.options.prepare === "cannot-start") throw new CommandError([command, ...args], undefined, "could not be started: mkfifo: cannot create fifo: Read-only file system", { namespace: options.namespace });
        let result: ExecResult = { stdout: "", stderr: "", exitCode: 0 };
        if (ns !== HOST && !this.iptables.hasNamespace(ns)) result = { stdout: "", stderr: `Cannot open network namespace "${ns}": No such file or directory\n`, exitCode: 255 };
        else {
          // conntrack -R takes each line as a command line; deleting nothing is not an error there.
          for (const line of input.split("\n").filter(Boolean)) {
            this.events.push(`${ns}:   | ${line}`);
            const words = line.split(" ");
            if (words[0] !== "-D" || (words[1] !== "-d" && words[1] !== "-q") || words.length !== 3) throw new Error(`FakeL3Host: conntrack -R line ${line}`);
          }
        }
        if (result.exitCode !== 0 && options.reject !== false) {
          if (result.exitCode === 255) throw new NamespaceGoneError(ns, result.stderr);
          throw new CommandError([command, ...args], result.exitCode, result.stderr, { namespace: options.namespace });
        }
        return result;
      },
      cancel: () => {
        if (state !== "waiting") return;
        state = "cancelled";
        this.preparedWaiting.delete(id);
        this.events.push(`${ns}: conntrack -R ${PREPARED_INPUT} cancelled`);
      },
      get waiting() {
        return state === "waiting";
      },
    };
  }

  override async exec(command: AuxCommand, args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    const ns = options.namespace ?? HOST;
    this.events.push(`${ns}: ${[command, ...args].join(" ")}`);
    const result = await this.run(command, [...args], ns, options);
    if (result.exitCode !== 0 && options.reject !== false) {
      if (result.stderr.startsWith("Cannot open network namespace") && options.namespace) throw new NamespaceGoneError(options.namespace, result.stderr);
      throw new CommandError([command, ...args], result.exitCode, result.stderr, { namespace: options.namespace });
    }
    return result;
  }

  private async run(command: AuxCommand, args: string[], ns: string, options: ExecOptions): Promise<ExecResult> {
    const ok = (stdout = ""): ExecResult => ({ stdout, stderr: "", exitCode: 0 });
    const fail = (exitCode: number, stderr: string): ExecResult => ({ stdout: "", stderr, exitCode });
    if (ns !== HOST && !this.iptables.hasNamespace(ns)) return fail(255, `Cannot open network namespace "${ns}": No such file or directory\n`);
    if (command === "conntrack") {
      if (args[0] !== "-D" || (args[1] !== "-d" && args[1] !== "-q") || args.length !== 3) throw new Error(`FakeL3Host: conntrack ${args.join(" ")}`);
      // "0 flow entries have been deleted."
      return fail(1, "conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n");
    }
    if (command !== "ip") return this.iptables.exec(command, args, options);
    if (args[0] === "netns") {
      if (args[1] === "exec") {
        const [, , target, tool, ...rest] = args;
        if (tool !== "sysctl" && tool !== "ip") throw new Error(`FakeL3Host: ip netns exec ${target} ${tool}`);
        if (!this.iptables.hasNamespace(target!)) return fail(1, `Cannot open network namespace "${target}": No such file or directory\n`);
        if (tool === "ip") return this.run("ip", rest, target!, { ...options, input: undefined as never });
        this.sysctls.set(target!, [...(this.sysctls.get(target!) ?? []), ...rest.filter((a) => a.includes("="))]);
        return ok();
      }
      if (args[1] === "add") {
        const r = await this.iptablesExec(args, options);
        if (r.exitCode === 0) this.links.set(args[2]!, new Map([["lo", { addresses: ["127.0.0.1/8"], up: false }]]));
        return r;
      }
      if (args[1] === "delete" || args[1] === "del") {
        const r = await this.iptablesExec(args, options);
        if (r.exitCode === 0) this.dropNamespace(args[2]!);
        return r;
      }
      return await this.iptablesExec(args, options);
    }
    const force = args[0] === "-force";
    if (args[force ? 1 : 0] === "-batch" && args[force ? 2 : 1] === "-") {
      // One `ip` per line, as `ip -batch` reads them; -force: go on after a failing line. Like ip,
      // each failure is followed by "Command failed -:<line>" and the batch exits 1.
      let stderr = "";
      const lines = (options.input ?? "").split("\n").filter(Boolean);
      for (const [i, line] of lines.entries()) {
        this.events.push(`${ns}:   | ${line}`);
        const words = line.split(" ");
        if (words[0] === "address") words[0] = "addr";
        const r = await this.run("ip", words, ns, { ...options, input: undefined as never });
        if (r.exitCode !== 0) {
          stderr += `${r.stderr}Command failed -:${i + 1}\n`;
          if (!force) break;
        }
      }
      return stderr ? fail(1, stderr) : ok();
    }
    const links = this.linksOf(ns);
    const jsonIdx = args[0] === "-j" ? 1 : 0;
    const a = args.slice(jsonIdx);
    if (a[0] === "addr" && a[1] === "show") {
      return ok(JSON.stringify([...links].map(([ifname, l]) => ({ ifname, addr_info: l.addresses.map((c) => addrInfo(c)) }))));
    }
    if (a[0] === "addr" && a[1] === "replace") {
      const dev = a[a.indexOf("dev") + 1]!;
      const link = links.get(dev);
      if (!link) return fail(1, `Cannot find device "${dev}"\n`);
      if (!link.addresses.includes(a[2]!)) link.addresses.push(a[2]!);
      return ok();
    }
    if (a[0] === "route" && a[1] === "replace") {
      // The family follows from the addresses, as in `ip -batch`.
      const via = a.includes("via") ? a[a.indexOf("via") + 1]! : a[2]!;
      return this.run("ip", [via.includes(":") ? "-6" : "-4", ...a], ns, options);
    }
    if (a[0] === "addr" && (a[1] === "add" || a[1] === "del")) {
      const cidr = a[2]!;
      const dev = a[a.indexOf("dev") + 1]!;
      const link = links.get(dev);
      if (!link) return fail(1, `Cannot find device "${dev}"\n`);
      if (a[1] === "add") {
        if (link.addresses.includes(cidr)) return fail(2, "RTNETLINK answers: File exists\n");
        link.addresses.push(cidr);
      } else {
        if (!link.addresses.includes(cidr)) return fail(2, "RTNETLINK answers: Cannot assign requested address\n");
        link.addresses = link.addresses.filter((c) => c !== cidr);
      }
      return ok();
    }
    if (a[0] === "link" && a[1] === "add") {
      const name = a[2]!;
      if (links.has(name)) return fail(2, "RTNETLINK answers: File exists\n");
      if (a[3] === "type" && a[4] === "bridge") {
        links.set(name, { addresses: [], up: false, bridge: true });
        return ok();
      }
      if (a[3] === "type" && a[4] === "veth" && a[5] === "peer" && a[6] === "name" && a[8] === "netns") {
        const peerName = a[7]!;
        const peerNs = a[9]!;
        if (!this.iptables.hasNamespace(peerNs)) return fail(1, `Cannot find netns "${peerNs}"\n`);
        const peerLinks = this.linksOf(peerNs);
        if (peerLinks.has(peerName)) return fail(2, "RTNETLINK answers: File exists\n");
        links.set(name, { addresses: [], up: false, peer: [peerNs, peerName] });
        peerLinks.set(peerName, { addresses: [], up: false, peer: [ns, name] });
        return ok();
      }
    }
    if (a[0] === "link" && a[1] === "set") {
      const link = links.get(a[2]!);
      if (a[2] === "lo" && !link) return ok();
      if (!link) return fail(1, `Cannot find device "${a[2]}"\n`);
      for (let i = 3; i < a.length; i++) {
        if (a[i] === "up") link.up = true;
        else if (a[i] === "address") link.mac = a[++i]!;
        else if (a[i] === "mtu") link.mtu = Number(a[++i]);
        else if (a[i] === "master") {
          const master = links.get(a[++i]!);
          if (!master?.bridge) return fail(1, `Cannot find device "${a[i]}"\n`);
          link.master = a[i]!;
        } else throw new Error(`FakeL3Host: ip ${a.join(" ")}`);
      }
      return ok();
    }
    if (a[0] === "link" && a[1] === "del") {
      const link = links.get(a[2]!);
      if (!link) return fail(1, `Cannot find device "${a[2]}"\n`);
      links.delete(a[2]!);
      if (link.peer) this.links.get(link.peer[0])?.delete(link.peer[1]);
      return ok();
    }
    if ((a[0] === "-4" || a[0] === "-6") && a[1] === "route") {
      const key = `${ns} ${a[0]}`;
      const list = this.routes.get(key) ?? [];
      if (a[2] === "replace") {
        const dest = a[3]!;
        this.routes.set(key, [...list.filter((r) => !r.startsWith(`${dest} `)), a.slice(3).join(" ")]);
        return ok();
      }
      if (a[2] === "show") return ok(JSON.stringify(list.filter((r) => r.startsWith("default ")).map((r) => ({ dst: "default", gateway: r.split(" ")[2] }))));
      if (a[2] === "del") {
        this.routes.set(key, list.filter((r) => !r.startsWith(`${a[3]} `)));
        return ok();
      }
    }
    throw new Error(`FakeL3Host: ip ${args.join(" ")} in ${ns}`);
  }

  /** The fake iptables runner models `ip netns add/del/list/pids`. */
  private iptablesExec(args: string[], options: ExecOptions): Promise<ExecResult> {
    return this.iptables.exec("ip", args, { ...options, reject: false });
  }

  private dropNamespace(name: string): void {
    const links = this.links.get(name);
    this.links.delete(name);
    for (const [key] of [...this.routes]) if (key.startsWith(`${name} `)) this.routes.delete(key);
    // veth peers die with their other end.
    for (const l of links?.values() ?? []) if (l.peer) this.links.get(l.peer[0])?.delete(l.peer[1]);
  }

  private linksOf(ns: string): Map<string, FakeLink> {
    let m = this.links.get(ns);
    if (!m) this.links.set(ns, (m = new Map()));
    return m;
  }
}

function addrInfo(cidr: string) {
  const [local, len] = cidr.split("/");
  const v6 = local!.includes(":");
  return { family: v6 ? "inet6" : "inet", local, prefixlen: Number(len), scope: local!.startsWith("127.") ? "host" : v6 && local!.startsWith("fe80") ? "link" : "global" };
}
