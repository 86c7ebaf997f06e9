import {
  CommandError,
  linkLocalFromMac,
  NamespaceGoneError,
  parseCidr,
  parseIp,
  type ExecOptions,
  type ExecResult,
  type IpAddress,
  type IpRunner,
  type WatchedCommand,
  type WatchOptions,
} from "@chainwarden/core";
import { settleExec } from "./fake-exec.js";
import { FakeNetns } from "./fake-netns.js";
import { NotModelledError } from "./not-modelled-error.js";
import { namespaceGoneFailure } from "./tool-messages.js";

/** Options of `FakeIp`: the namespaces it shares, and which optional runner features it offers. */
export interface FakeIpOptions {
  /** The host's namespaces, shared with the fakes of the other tools (default: a new one). */
  netns?: FakeNetns;
  /** Network namespaces that exist from the start (added to `netns`). */
  namespaces?: readonly string[];
  /** Offer `watch` (default true); false leaves it out, as a runner that cannot watch. */
  watch?: boolean;
  /** Offer `listLinks` (default true); false leaves it out, so callers read `ip -o link show`. */
  listLinks?: boolean;
}

/** One command the fake ran, in the order they ran. */
export interface FakeIpCommand {
  /** The namespace it ran in (undefined: the host's). */
  namespace: string | undefined;
  /** `["ip", ...]`, or the program `ip netns exec` ran there (`["sysctl", ...]`). */
  argv: string[];
  /** A line of an `ip -batch`: its line number (the batch itself is the entry before its lines). */
  batchLine?: number;
  /** What `-batch -` read. */
  input?: string;
  exitCode: number;
}

/** A network device as a test sees it (`FakeIp.device`). */
export interface FakeIpDevice {
  name: string;
  ifindex: number;
  kind: LinkKind;
  /** Administratively up (`ip link set NAME up`). */
  up: boolean;
  /** The lower layer is up (`LOWER_UP`): a veth whose peer is up, a bridge with a live port. */
  carrier: boolean;
  mtu: number;
  mac: string;
  /** The bridge it is a port of. */
  master?: string;
  /** A veth's other end. */
  peer?: { namespace: string | undefined; name: string };
  /** Its alias (`ip link set NAME alias TEXT`; `ifalias` in `ip -j link show`). */
  alias?: string;
  /** `addr/len` in the order `ip addr show` lists them (IPv4 first). */
  addresses: string[];
}

/** The device types the fake models (`ip link add … type veth|bridge`, `ip tuntap … mode tap`, and `lo`); others are not modelled. */
export type LinkKind = "loopback" | "veth" | "bridge" | "tap";

type Scope = "global" | "link" | "host";

interface Address {
  local: IpAddress;
  prefixlen: number;
  scope: Scope;
  /** IPv4 only. */
  broadcast?: string;
  /** IPv4 only: another address of the device holds the subnet. */
  secondary?: boolean;
}

interface Link {
  ns: NsState;
  ifindex: number;
  name: string;
  kind: LinkKind;
  up: boolean;
  /** Its qdisc is attached at the first `up` and stays. */
  everUp: boolean;
  mtu: number;
  mac: string;
  peer?: Link;
  master?: Link;
  /** Bridge: it has had a port (a bridge never given one keeps its carrier). */
  hadPort?: boolean;
  /** Bridge: set by the user, no longer following its ports. */
  mtuSet?: boolean;
  /** `ip link set NAME alias TEXT` (an empty text removes it). */
  alias?: string;
  macSet?: boolean;
  v4: Address[];
  v6: Address[];
  alive: boolean;
}

interface Prefix {
  family: 4 | 6;
  bits: bigint;
  len: number;
}

interface Route {
  family: 4 | 6;
  dst: Prefix;
  gateway?: IpAddress;
  dev: Link;
  /** Made by the kernel for an address (`proto kernel`); else by `ip route` (`proto boot`, not printed). */
  kernel: boolean;
  /** IPv4 only: `global` is universe, not printed. */
  scope: Scope;
  prefsrc?: string;
  metric: number;
  /** Creation order, for routes the kernel keeps in the order they came. */
  seq: number;
}

interface Monitor {
  options: WatchOptions;
  argv: string[];
}

interface NsState {
  name: string | undefined;
  /** In ifindex order. */
  links: Link[];
  nextIfindex: number;
  routes: Route[];
  sysctl: Map<string, string>;
  /** The ids this namespace gives the namespaces its veths reach (`link-netnsid`). */
  nsids: Map<NsState, number>;
  monitors: Set<Monitor>;
}

/** How a command ended: exit code, output, and whether it ends a batch outright (ip calls exit()). */
interface Outcome {
  stdout: string;
  stderr: string;
  exitCode: number;
  fatal?: boolean;
}

/** The global options of one `ip` command line. */
interface Context {
  ns: NsState;
  json: boolean;
  oneline: boolean;
  family: 4 | 6 | undefined;
  inBatch: boolean;
}

class Failure extends Error {
  constructor(readonly outcome: Outcome) {
    super(outcome.stderr);
  }
}

const ok = (stdout = ""): Outcome => ({ stdout, stderr: "", exitCode: 0 });
/** `ip` printed an error and the command failed (a batch names its line and goes on with -force). */
const fail = (exitCode: number, stderr: string): never => {
  throw new Failure({ stdout: "", stderr, exitCode });
};
/** `ip` printed an error and called exit(): a batch ends there, without naming the line. */
const fatal = (exitCode: number, stderr: string): never => {
  throw new Failure({ stdout: "", stderr, exitCode, fatal: true });
};
const invalidArgument = (value: string, why: string): never => fatal(255, `Error: argument "${value}" is wrong: ${why}\n\n`);
const cannotFind = (name: string): never => fail(1, `Cannot find device "${name}"\n`);
const rtnetlink = (why: string): never => fail(2, `RTNETLINK answers: ${why}\n`);
const kernelSays = (why: string): never => fail(2, `Error: ${why}\n`);

const FAKE = "FakeIp";
const NO_LIFETIME = 4294967295;
const MAX_NAME = 15;
const ZERO_MAC = "00:00:00:00:00:00";
/** IPv6 leaves a device whose MTU goes below this: not modelled. */
const IPV6_MIN_MTU = 1280;
const MIN_MTU = 68;
const MAX_MTU: Record<Exclude<LinkKind, "loopback">, number> = { veth: 65535, bridge: 65535, tap: 65521 };
/** Kernel routes of IPv6 addresses; `ip route` adds its own IPv6 routes at 1024. */
const KERNEL_METRIC6 = 256;
const USER_METRIC6 = 1024;
/** The sysctls modelled, with their value in a new namespace (other keys: NotModelledError). */
const SYSCTLS: ReadonlyMap<string, string> = new Map([
  ["net.ipv4.ip_forward", "0"],
  ["net.ipv4.conf.all.arp_ignore", "0"],
  ["net.ipv4.conf.all.arp_announce", "0"],
  ["net.ipv6.conf.all.forwarding", "0"],
  ["net.ipv4.conf.all.promote_secondaries", "0"],
]);
/** ip's objects the fake does not model, so that a word that is none of ip's can be refused as ip refuses it. */
const OTHER_OBJECTS = ["addrlabel", "maddress", "rule", "neighbour", "neighbor", "ntable", "l2tp", "fou", "ila", "macsec", "tunnel", "tap", "token", "tcpmetrics", "monitor", "xfrm", "mroute", "mrule", "netconf", "vrf", "sr", "nexthop", "mptcp", "ioam", "stats", "help"];

/**
 * An honest in-memory `ip` (iproute2 6.1 on Linux 6.x) behind core's `IpRunner`, for the namespaces
 * of a `FakeNetns`: namespaces (`netns add|delete|list|pids|exec`), devices (loopback, veth pairs
 * also across namespaces, bridges with their ports, taps), addresses, the main routing table, the
 * sysctls Neutron sets, `-batch`, the link monitor (`watch`) and `listLinks`. It keeps what the
 * kernel keeps: a bridge takes the lowest MTU and MAC of its ports, a device going down loses its
 * routes and IPv6 addresses, a veth pair with both ends up gets IPv6 link-local addresses and
 * their routes, deleting a primary IPv4 address deletes its secondaries, a veth dies with its peer
 * (and with the peer's namespace, whichever fake deletes it). Outputs and errors are the real
 * tool's, byte for byte where the contract suite (`describeIpRunnerContract`) compares them.
 *
 * The settled state is shown at once: no DAD (no `tentative` on a device with carrier), no
 * link-watch delay before a bridge's carrier. A namespace goes at `netns delete` even while a
 * monitor is inside (the real one lives on until its last process ends). The host's namespace
 * starts with only `lo`, up. What the fake cannot model honestly (another device type, an option it
 * does not know, a state the kernel would reach by timers) throws `NotModelledError`.
 */
export class FakeIp implements IpRunner {
  readonly netns: FakeNetns;
  /** Every command, batch line and `netns exec` program, in order. */
  readonly commands: FakeIpCommand[] = [];
  /** Device listings (`listLinks`, `ip link show`). */
  deviceLists = 0;
  /** `watch` calls. */
  monitorStarts = 0;

  private nextMac = 1;
  private nextSeq = 1;
  private readonly pending: Link[] = [];
  /** The veth ends whose peer is in another namespace (which another fake may delete). */
  private readonly crossing = new Set<Link>();

  constructor(options: FakeIpOptions = {}) {
    this.netns = options.netns ?? new FakeNetns();
    for (const ns of options.namespaces ?? []) this.netns.add(ns);
    if (options.watch === false) this.watch = undefined;
    if (options.listLinks === false) this.listLinks = undefined;
  }

  // ---- IpRunner --------------------------------------------------------------------------------

  async exec(command: "ip", args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    if (command !== "ip") throw new NotModelledError(`exec(${JSON.stringify([command, ...args].join(" "))})`, FAKE);
    this.prune();
    const outcome = this.topLevel([...args], options.namespace, options.input);
    return settleExec("ip", args, options, { stdout: outcome.stdout, stderr: outcome.stderr, exitCode: outcome.exitCode });
  }

  /** `ip -o monitor link` only: a line for each device added, changed or deleted, as it happens. */
  watch?: (command: "ip", args: readonly string[], options: WatchOptions) => WatchedCommand = (command, args, options) => {
    if (command !== "ip" || args.join(" ") !== "-o monitor link") throw new NotModelledError(`watch(${JSON.stringify([command, ...args].join(" "))})`, FAKE);
    this.prune();
    this.monitorStarts++;
    const argv = options.namespace === undefined ? ["ip", ...args] : ["ip", "-n", options.namespace, ...args];
    const state = this.state(options.namespace);
    if (!state) {
      // ip starts, cannot enter the namespace and exits.
      let stopped = false;
      const gone = namespaceGoneFailure(options.namespace!);
      setTimeout(() => stopped || options.onExit?.(new NamespaceGoneError(options.namespace!, gone.stderr)), 0);
      return { started: Promise.resolve(), stop: () => void (stopped = true) };
    }
    const monitor: Monitor = { options, argv };
    state.monitors.add(monitor);
    return { started: Promise.resolve(), stop: () => void state.monitors.delete(monitor) };
  };

  /** The device names: the host's in the order they were made, a namespace's sorted (`ls /sys/class/net`). */
  listLinks?: (namespace?: string) => Promise<string[]> = async (namespace) => {
    this.prune();
    this.deviceLists++;
    const state = this.state(namespace);
    if (!state) throw new NamespaceGoneError(namespace!, namespaceGoneFailure(namespace!).stderr);
    const names = state.links.map((l) => l.name);
    return namespace === undefined ? names : names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  };

  // ---- test setup and assertions ---------------------------------------------------------------

  /** Like `ip netns add NAME`: a fresh namespace with `lo` down. */
  addNamespace(name: string): void {
    this.netns.add(name);
  }

  /** Like `ip netns delete NAME`: its devices go, and with them their veth peers elsewhere. */
  deleteNamespace(name: string): void {
    this.netns.delete(name);
    this.prune();
  }

  /** Whether the named namespace exists now (`ip netns add` seen, not deleted since). */
  hasNamespace(name: string): boolean {
    return this.netns.has(name);
  }

  /**
   * Devices someone else made (Nova's taps, for a firewall): each as `ip tuntap add dev NAME mode
   * tap` and `ip link set NAME up`, so up without carrier (no process holds it). Monitors see them.
   */
  addDevice(namespace: string | undefined, ...names: string[]): void {
    this.prune();
    const ns = this.stateOrThrow(namespace);
    for (const name of names) {
      this.setup(`addDevice ${name}`, () => {
        if (this.find(ns, name)) fail(1, "ioctl(TUNSETIFF): Device or resource busy\n");
        const tap = this.createLink(ns, name, "tap");
        this.setUp(tap);
      });
    }
  }

  /** Like `ip link del NAME` (a veth takes its peer along). */
  removeDevice(namespace: string | undefined, name: string): void {
    this.prune();
    const ns = this.stateOrThrow(namespace);
    this.setup(`removeDevice ${name}`, () => this.deleteLink(this.find(ns, name) ?? cannotFind(name)));
  }

  /** A device as it is now; undefined when the namespace or the device does not exist. */
  device(namespace: string | undefined, name: string): FakeIpDevice | undefined {
    this.prune();
    const ns = this.state(namespace);
    const l = ns && this.find(ns, name);
    if (!l) return undefined;
    return {
      name: l.name,
      ifindex: l.ifindex,
      kind: l.kind,
      up: l.up,
      carrier: this.carrier(l),
      mtu: l.mtu,
      mac: l.mac,
      ...(l.master ? { master: l.master.name } : {}),
      ...(l.peer ? { peer: { namespace: l.peer.ns.name, name: l.peer.name } } : {}),
      ...(l.alias !== undefined ? { alias: l.alias } : {}),
      addresses: [...l.v4, ...l.v6].map((a) => `${a.local.text}/${a.prefixlen}`),
    };
  }

  /** The device names of a namespace in ifindex order (as `ip link show` lists them). */
  links(namespace: string | undefined): string[] {
    this.prune();
    return this.stateOrThrow(namespace).links.map((l) => l.name);
  }

  /** The main routing table as `ip -4|-6 route show` prints it, one route a line (no trailing space). */
  routes(namespace: string | undefined, family: 4 | 6): string[] {
    this.prune();
    return this.sortedRoutes(this.stateOrThrow(namespace), family).map((r) => this.routeText(r).trimEnd());
  }

  /** A sysctl's value in the namespace (`ip netns exec NS sysctl -n KEY`). */
  sysctl(namespace: string | undefined, key: string): string {
    const ns = this.stateOrThrow(namespace);
    const value = ns.sysctl.get(key) ?? SYSCTLS.get(key);
    if (value === undefined) throw new NotModelledError(`sysctl ${key}`, FAKE);
    return value;
  }

  /**
   * The commands run in a namespace, as text: `ip …` for each command, `  | LINE` for each line of
   * a batch, and `sysctl …` / `ip …` for what `ip netns exec` ran there.
   */
  commandsIn(namespace: string | undefined): string[] {
    return this.commands.filter((c) => c.namespace === namespace).map((c) => (c.batchLine !== undefined ? `  | ${c.argv.slice(1).join(" ")}` : c.argv.join(" ")));
  }

  /** `ip -o monitor link` watches running in a namespace. */
  monitorCount(namespace: string | undefined): number {
    return this.state(namespace)?.monitors.size ?? 0;
  }

  /** Ends the monitors of a namespace as if they were killed: each one's `onExit` is told. */
  killMonitors(namespace: string | undefined): void {
    const ns = this.state(namespace);
    if (!ns) return;
    const monitors = [...ns.monitors];
    ns.monitors.clear();
    for (const m of monitors) m.options.onExit?.(new CommandError(m.argv, undefined, "killed by SIGKILL", { namespace }));
  }

  // ---- commands --------------------------------------------------------------------------------

  /** One `ip` process: its global options, then one command or a batch. */
  private topLevel(args: string[], namespace: string | undefined, input: string | undefined): Outcome {
    const record: FakeIpCommand = { namespace, argv: ["ip", ...args], ...(input !== undefined ? { input } : {}), exitCode: 0 };
    this.commands.push(record);
    const outcome = this.run(args, namespace, input, false, record);
    record.exitCode = outcome.exitCode;
    return outcome;
  }

  private run(args: string[], namespace: string | undefined, input: string | undefined, inBatch: boolean, record?: FakeIpCommand): Outcome {
    let i = 0;
    let json = false;
    let oneline = false;
    let force = false;
    let batch = false;
    let family: 4 | 6 | undefined;
    for (; i < args.length && args[i]!.startsWith("-"); i++) {
      const a = args[i]!;
      if (a === "-n" || a === "-netns") namespace = args[++i] ?? this.notModelled(args);
      else if (a === "-j" || a === "-json") json = true;
      else if (a === "-o" || a === "-oneline") oneline = true;
      else if (a === "-4") family = 4;
      else if (a === "-6") family = 6;
      else if (a === "-force") force = true;
      else if (a === "-batch" && args[i + 1] === "-") {
        batch = true;
        i++;
      } else this.notModelled(args);
    }
    if (record) record.namespace = namespace;
    const ns = this.state(namespace);
    if (!ns) return { stdout: "", ...namespaceGoneFailure(namespace!), fatal: true };
    const ctx: Context = { ns, json, oneline, family, inBatch };
    if (batch) {
      if (inBatch || i !== args.length) this.notModelled(args);
      return this.batch(ctx, input ?? "", force);
    }
    try {
      const out = this.command(ctx, args.slice(i));
      return out;
    } catch (err) {
      if (err instanceof Failure) return err.outcome;
      throw err;
    } finally {
      this.flush();
    }
  }

  /**
   * `ip [-force] -batch -`: one command a line (`#` starts a comment). A failing line is followed
   * by `Command failed -:N`; without -force the batch stops there; either way it exits 1. An error
   * after which ip calls exit() ends the batch with that exit code and no line number.
   */
  private batch(ctx: Context, input: string, force: boolean): Outcome {
    const lines = input.split("\n");
    if (lines[lines.length - 1] === "") lines.pop();
    let stdout = "";
    let stderr = "";
    let failed = false;
    for (const [index, raw] of lines.entries()) {
      const text = raw.split("#")[0]!;
      if (/["'\\]/.test(text)) throw new NotModelledError(`ip -batch line ${JSON.stringify(raw)} (quoting)`, FAKE);
      const words = text.split(/\s+/).filter(Boolean);
      if (words.length === 0) continue;
      const record: FakeIpCommand = { namespace: ctx.ns.name, argv: ["ip", ...words], batchLine: index + 1, exitCode: 0 };
      this.commands.push(record);
      let out: Outcome;
      try {
        out = this.command({ ...ctx, inBatch: true }, words);
      } catch (err) {
        if (!(err instanceof Failure)) throw err;
        out = err.outcome;
      } finally {
        this.flush();
      }
      record.exitCode = out.exitCode;
      stdout += out.stdout;
      if (out.fatal) return { stdout, stderr: stderr + out.stderr, exitCode: out.exitCode };
      if (out.exitCode !== 0) {
        failed = true;
        stderr += `${out.stderr}Command failed -:${index + 1}\n`;
        if (!force) break;
      }
    }
    return { stdout, stderr, exitCode: failed ? 1 : 0 };
  }

  private command(ctx: Context, words: string[]): Outcome {
    const [object, ...rest] = words;
    if (object === undefined) this.notModelled(words);
    if (object === "link" || object === "l") return this.link(ctx, rest);
    if (object === "address" || object === "addr" || object === "a") return this.address(ctx, rest);
    if (object === "route" || object === "r" || object === "ro") return this.route(ctx, rest);
    if (object === "netns") return this.netnsCommand(ctx, rest);
    if (object === "tuntap") return this.tuntap(ctx, rest);
    if (OTHER_OBJECTS.some((o) => o.startsWith(object!)) || object!.startsWith("-")) this.notModelled(words);
    return fail(1, `Object "${object}" is unknown, try "ip help".\n`);
  }

  // ---- netns -----------------------------------------------------------------------------------

  private netnsCommand(ctx: Context, words: string[]): Outcome {
    const [verb, name, ...rest] = words;
    if (verb === undefined || ((verb === "list" || verb === "ls" || verb === "show") && name === undefined)) {
      if (ctx.json) this.notModelled(["netns", ...words]);
      const host = this.state(undefined)!;
      const ids = new Map([...host.nsids].map(([s, id]) => [s.name, id]));
      return ok(
        this.netns
          .list()
          .map((n) => (ids.has(n) ? `${n} (id: ${ids.get(n)})\n` : `${n}\n`))
          .join(""),
      );
    }
    if (name === undefined) this.notModelled(["netns", ...words]);
    if (verb === "add" && rest.length === 0) {
      if (name === "" || name.includes("/") || name === "." || name === "..") {
        if (ctx.inBatch) this.notModelled(["netns", ...words]);
        fail(255, `Invalid netns name "${name}"\n`);
      }
      if (this.netns.has(name)) fail(1, `Cannot create namespace file "/run/netns/${name}": File exists\n`);
      this.netns.add(name);
      return ok();
    }
    if ((verb === "delete" || verb === "del") && rest.length === 0) {
      if (!this.netns.has(name)) fail(1, `Cannot remove namespace file "/run/netns/${name}": No such file or directory\n`);
      this.netns.delete(name);
      this.prune();
      return ok();
    }
    if (verb === "pids" && rest.length === 0) {
      // No process runs in a fake namespace.
      if (!this.netns.has(name)) fail(1, "Cannot open network namespace: No such file or directory\n");
      return ok();
    }
    if (verb === "exec" && rest.length > 0) return this.netnsExec(name, rest, ctx.inBatch);
    return this.notModelled(["netns", ...words]);
  }

  /** `ip netns exec NS PROGRAM …` for `ip` and `sysctl`. */
  private netnsExec(name: string, argv: string[], inBatch: boolean): Outcome {
    if (!this.netns.has(name)) {
      // In a batch, ip forks first and the child goes on reading the batch: not modelled.
      if (inBatch) throw new NotModelledError(`ip -batch line "netns exec ${name} …" for a missing namespace`, FAKE);
      return { stdout: "", ...namespaceGoneFailure(name), fatal: true };
    }
    const [program, ...args] = argv;
    if (program === "ip") {
      const record: FakeIpCommand = { namespace: name, argv: [...argv], exitCode: 0 };
      this.commands.push(record);
      const out = this.run(args, name, undefined, false, record);
      record.exitCode = out.exitCode;
      // The child's exit code is the command's; in a batch it is one failed line, not an exit().
      return { stdout: out.stdout, stderr: out.stderr, exitCode: out.exitCode };
    }
    if (program === "sysctl") {
      const record: FakeIpCommand = { namespace: name, argv: [...argv], exitCode: 0 };
      this.commands.push(record);
      const out = this.sysctlCommand(this.state(name)!, args);
      record.exitCode = out.exitCode;
      return out;
    }
    throw new NotModelledError(`ip netns exec ${name} ${argv.join(" ")}`, FAKE);
  }

  /** `sysctl [-q] [-n] [-w] KEY[=VALUE]…` (procps-ng) over the sysctls in `SYSCTLS`. */
  private sysctlCommand(ns: NsState, args: string[]): Outcome {
    let quiet = false;
    let valuesOnly = false;
    let write = false;
    const items: string[] = [];
    for (const a of args) {
      if (a === "-q") quiet = true;
      else if (a === "-n") valuesOnly = true;
      else if (a === "-w") write = true;
      else if (a.startsWith("-")) throw new NotModelledError(`sysctl ${args.join(" ")}`, FAKE);
      else items.push(a);
    }
    let stdout = "";
    let stderr = "";
    let exitCode = 0;
    for (const item of items) {
      const at = item.indexOf("=");
      const key = at === -1 ? item : item.slice(0, at);
      if (!SYSCTLS.has(key) || (at !== -1) !== write) throw new NotModelledError(`sysctl ${args.join(" ")}`, FAKE);
      if (at === -1) {
        const value = ns.sysctl.get(key) ?? SYSCTLS.get(key)!;
        stdout += valuesOnly ? `${value}\n` : `${key} = ${value}\n`;
        continue;
      }
      const value = item.slice(at + 1);
      if (!/^[+-]?\d+$/.test(value.trim())) {
        stderr += `sysctl: setting key "${key}": Invalid argument\n`;
        exitCode = 1;
        continue;
      }
      ns.sysctl.set(key, String(Number(value)));
      if (!quiet) stdout += valuesOnly ? `${value}\n` : `${key} = ${value}\n`;
    }
    return { stdout, stderr, exitCode };
  }

  // ---- link ------------------------------------------------------------------------------------

  private link(ctx: Context, words: string[]): Outcome {
    const [verb, ...rest] = words;
    if (verb === undefined || verb === "show" || verb === "list" || verb === "ls" || verb === "lst") return this.linkShow(ctx, rest, false);
    if (verb === "add") return this.linkAdd(ctx, rest);
    if (verb === "set") return this.linkSet(ctx, rest);
    if (verb === "del" || verb === "delete") {
      const name = rest[0] === "dev" ? rest[1] : rest[0];
      if (name === undefined || rest.length !== (rest[0] === "dev" ? 2 : 1)) return this.notModelled(["link", ...words]);
      const l = this.find(ctx.ns, name) ?? cannotFind(name);
      if (l.kind === "loopback") rtnetlink("Operation not supported");
      this.deleteLink(l);
      return ok();
    }
    return this.notModelled(["link", ...words]);
  }

  /**
   * `link show [[dev] NAME] [type bridge|veth] [master BRIDGE]` and `addr show [[dev] NAME]` (`-j`
   * only for addresses). A master that does not exist is ip's argument error (exit 255).
   */
  private linkShow(ctx: Context, words: string[], addresses: boolean): Outcome {
    const notModelled = () => this.notModelled([addresses ? "addr" : "link", "show", ...words]);
    let name: string | undefined;
    let type: LinkKind | undefined;
    let master: Link | undefined;
    for (let i = 0; i < words.length; i++) {
      const w = words[i]!;
      if (!addresses && w === "type") {
        const t = words[++i];
        if (t !== "bridge" && t !== "veth") return notModelled();
        type = t;
      } else if (!addresses && w === "master") {
        const m = words[++i] ?? notModelled();
        master = this.find(ctx.ns, m) ?? invalidArgument(m, "Device does not exist");
      } else if (w === "dev" && name === undefined) {
        name = words[++i] ?? notModelled();
      } else if (name === undefined && !["type", "master", "dev"].includes(w)) {
        name = w;
      } else return notModelled();
    }
    // -4/-6 would also leave out the devices without an address of the family: not modelled.
    if (addresses && (!ctx.json || ctx.family !== undefined)) notModelled();
    if (!addresses) this.deviceLists++;
    let links = ctx.ns.links;
    if (name !== undefined) {
      const l = this.find(ctx.ns, name);
      if (!l) {
        if (ctx.inBatch) notModelled();
        fail(1, `Device "${name}" does not exist.\n`);
      }
      links = [l!];
    }
    if (type !== undefined) links = links.filter((l) => l.kind === type);
    if (master !== undefined) links = links.filter((l) => l.master === master);
    if (ctx.json) return ok(`${JSON.stringify(links.map((l) => this.linkJson(l, addresses)))}\n`);
    return ok(links.map((l) => `${this.linkText(l, ctx.oneline ? "\\" : "\n")}\n`).join(""));
  }

  private linkAdd(ctx: Context, words: string[]): Outcome {
    const notModelled = () => this.notModelled(["link", "add", ...words]);
    let i = 0;
    if (words[i] === "name" || words[i] === "dev") i++;
    const name = words[i++];
    if (name === undefined || words[i++] !== "type") return notModelled();
    const type = words[i++];
    if (type === "bridge" && i === words.length) {
      this.checkNewName(ctx.ns, name);
      this.createLink(ctx.ns, name, "bridge");
      return ok();
    }
    if (type !== "veth" || words[i] !== "peer" || words[i + 1] !== "name") return notModelled();
    const peerName = words[i + 2];
    i += 3;
    let peerNsName: string | undefined = ctx.ns.name;
    if (words[i] === "netns") {
      peerNsName = words[i + 1];
      i += 2;
    }
    if (peerName === undefined || peerNsName === undefined || i !== words.length) return notModelled();
    if (!validName(peerName)) fatal(255, `Error: argument "${peerName}" is wrong: "name" not a valid ifname\n`);
    const peerNs = this.state(peerNsName) ?? invalidArgument(peerNsName, 'Invalid "netns" value');
    this.checkNewName(ctx.ns, name);
    if (this.find(peerNs, peerName)) rtnetlink("File exists");
    if (peerNs === ctx.ns && peerName === name) rtnetlink("File exists");
    // The kernel makes the peer first.
    const peer = this.createLink(peerNs, peerName, "veth");
    const link = this.createLink(ctx.ns, name, "veth", peer);
    peer.peer = link;
    if (peerNs !== ctx.ns) {
      nsidOf(peerNs, ctx.ns);
      nsidOf(ctx.ns, peerNs);
      this.crossing.add(peer).add(link);
    }
    this.touch(peer);
    return ok();
  }

  private checkNewName(ns: NsState, name: string): void {
    if (name.length > MAX_NAME) kernelSays("Attribute failed policy validation.");
    if (!validName(name)) throw new NotModelledError(`a device named ${JSON.stringify(name)}`, FAKE);
    if (this.find(ns, name)) rtnetlink("File exists");
  }

  /**
   * `link set [dev] NAME [address MAC] [mtu N] [up|down] [master BR|nomaster] [alias TEXT]`. ip checks the
   * names and values first; the kernel then applies them in this order and stops at the first it
   * refuses, keeping those before it.
   */
  private linkSet(ctx: Context, words: string[]): Outcome {
    const notModelled = () => this.notModelled(["link", "set", ...words]);
    let i = 0;
    if (words[i] === "dev") i++;
    const name = words[i++];
    if (name === undefined) return notModelled();
    let up: boolean | undefined;
    let mtu: number | undefined;
    let lladdr: string | undefined;
    let master: string | null | undefined;
    let bridge: Link | undefined;
    let alias: string | undefined;
    // ip reads the arguments (and looks up the master) before it looks for the device.
    while (i < words.length) {
      const w = words[i++]!;
      if (w === "up") up = true;
      else if (w === "down") up = false;
      else if (w === "mtu") {
        const v = words[i++] ?? notModelled();
        if (!/^\d+$/.test(v)) invalidArgument(v, 'Invalid "mtu" value');
        mtu = Number(v);
      } else if (w === "address") {
        const mac = words[i++] ?? notModelled();
        if (!/^[0-9a-fA-F]{1,2}(:[0-9a-fA-F]{1,2})*$/.test(mac)) fail(1, `"${mac}" is invalid lladdr.\n`);
        const bytes = mac.split(":").map((h) => parseInt(h, 16));
        if (bytes.length !== 6) return notModelled();
        lladdr = bytes.map((b) => b.toString(16).padStart(2, "0")).join(":");
      } else if (w === "master") {
        master = words[i++] ?? notModelled();
        bridge = this.find(ctx.ns, master) ?? invalidArgument(master, "Device does not exist");
      } else if (w === "nomaster") {
        master = null;
        bridge = undefined;
      } else if (w === "alias") {
        alias = words[i++] ?? notModelled();
      } else return notModelled();
    }
    const l = this.find(ctx.ns, name) ?? cannotFind(name);
    if (l.kind === "loopback" && (mtu !== undefined || lladdr !== undefined || master !== undefined || alias !== undefined)) return notModelled();
    // An alias the kernel takes cannot fail the request (one of 256 characters or more is not modelled).
    if (alias !== undefined && alias.length > 255) return notModelled();
    if (alias !== undefined) {
      if (alias === "") delete l.alias;
      else l.alias = alias;
    }

    if (lladdr !== undefined) {
      if ((parseInt(lladdr.slice(0, 2), 16) & 1) === 1 || lladdr === ZERO_MAC) rtnetlink("Cannot assign requested address");
      l.mac = lladdr;
      if (l.kind === "bridge") l.macSet = true;
      this.touch(l);
      if (l.master) this.recalculateBridge(l.master);
    }
    if (mtu !== undefined) {
      const kind = l.kind as Exclude<LinkKind, "loopback">;
      if (mtu < MIN_MTU) kernelSays("mtu less than device minimum.");
      if (mtu > MAX_MTU[kind]) kernelSays("mtu greater than device maximum.");
      if (mtu < IPV6_MIN_MTU) throw new NotModelledError(`an MTU below ${IPV6_MIN_MTU} (IPv6 leaves the device)`, FAKE);
      l.mtu = mtu;
      if (l.kind === "bridge") l.mtuSet = true;
      this.touch(l);
      if (l.master) this.recalculateBridge(l.master);
    }
    if (up === true && !l.up) this.setUp(l);
    if (up === false && l.up) this.setDown(l);
    if (master === null && l.master) this.release(l);
    if (bridge && l.master !== bridge) {
      if (bridge.kind !== "bridge") rtnetlink("Operation not supported");
      if (l.kind === "bridge" || l.kind === "loopback" || bridge === l) return notModelled();
      if (l.master) this.release(l);
      l.master = bridge;
      bridge.hadPort = true;
      this.touch(l);
      this.recalculateBridge(bridge);
    }
    return ok();
  }

  private tuntap(ctx: Context, words: string[]): Outcome {
    const [verb, ...rest] = words;
    let name: string | undefined;
    let mode: string | undefined;
    for (let i = 0; i < rest.length; i++) {
      const w = rest[i]!;
      if (w === "dev" || w === "name") name = rest[++i];
      else if (w === "mode") mode = rest[++i];
      else if (name === undefined) name = w;
      else name = undefined;
    }
    if (name === undefined || mode !== "tap" || ctx.inBatch) return this.notModelled(["tuntap", ...words]);
    const existing = this.find(ctx.ns, name);
    if (verb === "add") {
      if (existing) fail(1, "ioctl(TUNSETIFF): Device or resource busy\n");
      this.checkNewName(ctx.ns, name);
      this.createLink(ctx.ns, name, "tap");
      return ok();
    }
    if (verb === "del" || verb === "delete") {
      // A tap that is not there is nothing to delete: no error.
      if (existing && existing.kind !== "tap") fail(1, "ioctl(TUNSETIFF): Invalid argument\n");
      if (existing) this.deleteLink(existing);
      return ok();
    }
    return this.notModelled(["tuntap", ...words]);
  }

  // ---- address ---------------------------------------------------------------------------------

  private address(ctx: Context, words: string[]): Outcome {
    const [verb, ...rest] = words;
    if (verb === undefined || verb === "show" || verb === "list" || verb === "ls") return this.linkShow(ctx, rest, true);
    if (verb !== "add" && verb !== "del" && verb !== "delete" && verb !== "replace" && verb !== "change") return this.notModelled(["addr", ...words]);
    const notModelled = () => this.notModelled(["addr", ...words]);
    let local: string | undefined;
    let dev: string | undefined;
    let scope: Scope | undefined;
    let brd: string | undefined;
    for (let i = 0; i < rest.length; i++) {
      const w = rest[i]!;
      if (w === "dev") dev = rest[++i];
      else if (w === "scope") {
        const s = rest[++i];
        if (s !== "global" && s !== "link" && s !== "host") return notModelled();
        scope = s;
      } else if (w === "brd" || w === "broadcast") brd = rest[++i];
      else if (local === undefined && !w.startsWith("-")) local = w === "local" ? rest[++i] : w;
      else return notModelled();
    }
    if (local === undefined || dev === undefined || verb === "change") return notModelled();
    const cidr = parseCidr(local);
    if (!cidr || !local.includes("/")) return notModelled();
    if (ctx.family !== undefined && ctx.family !== cidr.family) return notModelled();
    const l = this.find(ctx.ns, dev) ?? cannotFind(dev);
    const address: Address = { local: cidr.address, prefixlen: cidr.prefix, scope: scope ?? "global" };
    if (cidr.family === 4) {
      if (brd !== undefined) {
        if (brd === "+") {
          // ip computes it, and sets none for /31 and /32.
          if (cidr.prefix <= 30) address.broadcast = textOf(toBits(cidr.address) | hostMask(4, cidr.prefix), 4);
        } else address.broadcast = parseIp(brd)?.text ?? notModelled();
      }
      if (verb === "add" || verb === "replace") this.addAddress4(l, address, verb === "replace");
      else this.deleteAddress4(l, address);
    } else {
      if (brd !== undefined || (scope !== undefined && scope !== scopeOf6(cidr.address))) return notModelled();
      address.scope = scopeOf6(cidr.address);
      if (verb === "add" || verb === "replace") this.addAddress6(l, address, verb === "replace");
      else this.deleteAddress6(l, address);
    }
    return ok();
  }

  /** As `__inet_insert_ifa`: a second address in a subnet is secondary, at the end; a primary goes after the last primary of wider scope. */
  private addAddress4(l: Link, a: Address, replace: boolean): void {
    const existing = l.v4.find((x) => x.prefixlen === a.prefixlen && sameAddress(x.local, a.local));
    if (existing) {
      if (!replace) kernelSays("ipv4: Address already assigned.");
      // Replacing an address that is there renews it (its lifetimes), nothing else.
      if (existing.scope !== a.scope) throw new NotModelledError("addr replace with another scope", FAKE);
      return;
    }
    const net = toBits(a.local) & netMask(4, a.prefixlen);
    let lastPrimary = 0;
    for (const [i, x] of l.v4.entries()) {
      if (!x.secondary && scopeNumber(a.scope) <= scopeNumber(x.scope)) lastPrimary = i + 1;
      if (x.prefixlen === a.prefixlen && (toBits(x.local) & netMask(4, a.prefixlen)) === net) {
        if (x.scope !== a.scope) throw new NotModelledError("a secondary address of another scope", FAKE);
        a.secondary = true;
      }
    }
    if (a.secondary) l.v4.push(a);
    else l.v4.splice(lastPrimary, 0, a);
    if (l.up && !a.secondary) this.addPrefixRoute4(l, a);
    this.touch(l);
  }

  /**
   * Deleting a primary takes its secondaries (`promote_secondaries` is 0 in a new namespace). With
   * `net.ipv4.conf.all.promote_secondaries` set (Neutron sets it), the first of them becomes the
   * primary instead, as `__inet_del_ifa` moves it: after the last primary of the same or a narrower
   * scope between the two, else to the deleted one's place; the subnet's route gets it as source.
   */
  private deleteAddress4(l: Link, a: Address): void {
    const at = l.v4.findIndex((x) => x.prefixlen === a.prefixlen && sameAddress(x.local, a.local));
    if (at === -1) kernelSays("ipv4: Address not found.");
    const list = l.v4;
    const gone = list[at]!;
    const net = toBits(gone.local) & netMask(4, gone.prefixlen);
    const ofSubnet = (x: Address) => x.secondary === true && x.prefixlen === gone.prefixlen && (toBits(x.local) & netMask(4, x.prefixlen)) === net;
    const promoting = !gone.secondary && (l.ns.sysctl.get("net.ipv4.conf.all.promote_secondaries") ?? "0") !== "0";
    const promote = promoting ? list.slice(at + 1).find(ofSubnet) : undefined;
    l.v4 = list.filter((x) => x !== gone && x !== promote && (promoting || gone.secondary || !ofSubnet(x)));
    l.ns.routes = l.ns.routes.filter((r) => !(r.kernel && r.family === 4 && r.dev === l && r.prefsrc === gone.local.text && r.dst.len === gone.prefixlen && r.dst.bits === net));
    if (promote) {
      let after: Address | undefined;
      for (let i = at + 1; list[i] !== promote; i++) if (!list[i]!.secondary && scopeNumber(list[i]!.scope) >= scopeNumber(gone.scope)) after = list[i];
      promote.secondary = false;
      l.v4.splice(after ? l.v4.indexOf(after) + 1 : at, 0, promote);
      if (l.up) this.addPrefixRoute4(l, promote);
    }
    this.touch(l);
  }

  private addPrefixRoute4(l: Link, a: Address): void {
    // A /32 has no prefix route; the loopback's prefixes go to the local table.
    if (a.prefixlen === 32 || l.kind === "loopback") return;
    const dst = { family: 4 as const, bits: toBits(a.local) & netMask(4, a.prefixlen), len: a.prefixlen };
    l.ns.routes.push({ family: 4, dst, dev: l, kernel: true, scope: "link", prefsrc: a.local.text, metric: 0, seq: this.nextSeq++ });
  }

  /** As `ipv6_link_dev_addr`: a new address goes before the first of the same or narrower scope. */
  private addAddress6(l: Link, a: Address, replace: boolean): void {
    const existing = l.v6.find((x) => sameAddress(x.local, a.local));
    if (existing) {
      if (!replace) kernelSays("ipv6: address already assigned.");
      if (existing.prefixlen !== a.prefixlen) throw new NotModelledError("addr replace of an IPv6 address with another prefix length", FAKE);
      return;
    }
    this.insertAddress6(l, a);
    if (l.up) this.addPrefixRoute6(l, a);
    this.touch(l);
  }

  private insertAddress6(l: Link, a: Address): void {
    const at = l.v6.findIndex((x) => srcScope6(x) <= srcScope6(a));
    if (at === -1) l.v6.push(a);
    else l.v6.splice(at, 0, a);
  }

  private deleteAddress6(l: Link, a: Address): void {
    const gone = l.v6.find((x) => x.prefixlen === a.prefixlen && sameAddress(x.local, a.local));
    if (!gone) return kernelSays("ipv6: address not found.");
    l.v6 = l.v6.filter((x) => x !== gone);
    const bits = toBits(gone.local) & netMask(6, gone.prefixlen);
    // The prefix route goes with the last address of the prefix.
    if (!l.v6.some((x) => x.prefixlen === gone.prefixlen && (toBits(x.local) & netMask(6, x.prefixlen)) === bits)) {
      l.ns.routes = l.ns.routes.filter((r) => !(r.kernel && r.family === 6 && r.dev === l && r.dst.len === gone.prefixlen && r.dst.bits === bits && r.metric === KERNEL_METRIC6));
    }
    this.touch(l);
  }

  private addPrefixRoute6(l: Link, a: Address): void {
    if (a.prefixlen === 128 || l.kind === "loopback") return;
    const dst = { family: 6 as const, bits: toBits(a.local) & netMask(6, a.prefixlen), len: a.prefixlen };
    const exists = l.ns.routes.some((r) => r.family === 6 && r.dev === l && !r.gateway && r.metric === KERNEL_METRIC6 && samePrefix(r.dst, dst));
    if (!exists) l.ns.routes.push({ family: 6, dst, dev: l, kernel: true, scope: "global", metric: KERNEL_METRIC6, seq: this.nextSeq++ });
  }

  // ---- route -----------------------------------------------------------------------------------

  private route(ctx: Context, words: string[]): Outcome {
    const [verb, ...rest] = words;
    if (verb === undefined || verb === "show" || verb === "list" || verb === "ls") {
      if (rest.length > 0) return this.notModelled(["route", ...words]);
      const family = ctx.family ?? 4;
      const routes = this.sortedRoutes(ctx.ns, family);
      if (ctx.json) return ok(`${JSON.stringify(routes.map((r) => this.routeJson(r)))}\n`);
      return ok(routes.map((r) => `${this.routeText(r)}\n`).join(""));
    }
    if (verb !== "add" && verb !== "replace" && verb !== "del" && verb !== "delete") return this.notModelled(["route", ...words]);
    const notModelled = () => this.notModelled(["route", ...words]);
    let dstText: string | undefined;
    let via: string | undefined;
    let devName: string | undefined;
    let scope: Scope | undefined;
    let metric: number | undefined;
    for (let i = 0; i < rest.length; i++) {
      const w = rest[i]!;
      if (w === "via") via = rest[++i] ?? notModelled();
      else if (w === "dev") devName = rest[++i] ?? notModelled();
      else if (w === "scope") {
        const s = rest[++i];
        if (s !== "global" && s !== "link" && s !== "host") return notModelled();
        scope = s;
      } else if (w === "metric" || w === "priority" || w === "preference") {
        const v = rest[++i] ?? notModelled();
        if (!/^\d+$/.test(v)) return notModelled();
        metric = Number(v);
      } else if (dstText === undefined) dstText = w === "to" ? (rest[++i] ?? notModelled()) : w;
      else return notModelled();
    }
    if (dstText === undefined) return notModelled();
    // The family: -4/-6, else the destination's, else the gateway's, else IPv4.
    const dstCidr = dstText === "default" ? undefined : parseCidr(dstText);
    if (dstText !== "default" && !dstCidr) return notModelled();
    const gw = via === undefined ? undefined : (parseIp(via) ?? notModelled());
    const family = ctx.family ?? dstCidr?.family ?? gw?.family ?? 4;
    if (dstCidr && dstCidr.family !== family) fatal(1, `Error: ${family === 4 ? "inet" : "inet6"} prefix is expected rather than "${dstText}".\n`);
    if (gw && gw.family !== family) return notModelled();
    const dst: Prefix = dstCidr ? { family, bits: toBits(dstCidr.network), len: dstCidr.prefix } : { family, bits: 0n, len: 0 };
    const dev = devName === undefined ? undefined : (this.find(ctx.ns, devName) ?? cannotFind(devName));

    if (verb === "del" || verb === "delete") {
      if (family === 4 && dstCidr?.hostBitsSet) return notModelled();
      const match = this.sortedRoutes(ctx.ns, family).find(
        (r) =>
          samePrefix(r.dst, dst) &&
          (dev === undefined || r.dev === dev) &&
          (gw === undefined || (r.gateway !== undefined && sameAddress(r.gateway, gw))) &&
          (metric === undefined || r.metric === metric) &&
          (scope === undefined || family === 6 || r.scope === scope),
      );
      if (!match) return rtnetlink("No such process");
      ctx.ns.routes = ctx.ns.routes.filter((r) => r !== match);
      return ok();
    }

    if (family === 4 && dstCidr?.hostBitsSet) kernelSays("Invalid prefix for given prefix length.");
    if (dev === undefined && gw === undefined) return notModelled();
    if (gw && scope !== undefined && scope !== "global") return notModelled();
    let nexthop: Link;
    if (family === 4) nexthop = gw ? (this.gateway4(ctx.ns, gw, dev) ?? kernelSays("Nexthop has invalid gateway.")) : dev!;
    else nexthop = gw ? this.gateway6(ctx.ns, gw, dev) : dev!;
    if (!nexthop.up) kernelSays(family === 4 ? "Device for nexthop is not up." : "Nexthop device is not up.");
    const route: Route = {
      family,
      dst,
      ...(gw ? { gateway: gw } : {}),
      dev: nexthop,
      kernel: false,
      // ip gives an IPv4 route without a gateway link scope unless told otherwise.
      scope: family === 6 ? "global" : (scope ?? (gw ? "global" : "link")),
      metric: metric ?? (family === 4 ? 0 : USER_METRIC6),
      seq: 0,
    };
    const same = this.sortedRoutes(ctx.ns, family).find((r) => samePrefix(r.dst, dst) && r.metric === route.metric);
    if (verb === "replace" && same) {
      route.seq = same.seq;
      ctx.ns.routes[ctx.ns.routes.indexOf(same)] = route;
      return ok();
    }
    // ip route add asks for a new route (NLM_F_EXCL): one at the same destination and metric is in the way.
    if (verb === "add" && same) return rtnetlink("File exists");
    route.seq = this.nextSeq++;
    ctx.ns.routes.push(route);
    return ok();
  }

  /**
   * The device an IPv4 gateway is reached through (`fib_check_nh`): a local address, else the
   * longest route of link scope that holds it, on `dev` when given. Broadcast addresses are refused.
   */
  private gateway4(ns: NsState, gw: IpAddress, dev: Link | undefined): Link | undefined {
    const g = toBits(gw);
    // The local table is looked at first.
    let local: { len: number; dev: Link; unicast: boolean } | undefined;
    const consider = (len: number, d: Link, unicast: boolean) => {
      if (dev !== undefined && d !== dev) return;
      if (!local || len > local.len) local = { len, dev: d, unicast };
    };
    for (const l of ns.links) {
      if (!l.up) continue;
      for (const a of l.v4) {
        if (toBits(a.local) === g) consider(32, l, true);
        if (a.broadcast !== undefined && toBits(parseIp(a.broadcast)!) === g) consider(32, l, false);
        if (l.kind === "loopback" && (toBits(a.local) & netMask(4, a.prefixlen)) === (g & netMask(4, a.prefixlen))) consider(a.prefixlen, l, true);
      }
    }
    if (local) return local.unicast ? local.dev : undefined;
    let best: Route | undefined;
    for (const r of this.sortedRoutes(ns, 4)) {
      if (r.scope !== "global" && contains(r.dst, g) && (dev === undefined || r.dev === dev) && (!best || r.dst.len > best.dst.len)) best = r;
    }
    return best?.dev;
  }

  /** The device an IPv6 gateway is reached through: link-local on `dev`, else a route on it that holds the gateway. */
  private gateway6(ns: NsState, gw: IpAddress, dev: Link | undefined): Link {
    if (ns.links.some((l) => l.v6.some((a) => sameAddress(a.local, gw)))) throw new NotModelledError("an IPv6 gateway that is a local address", FAKE);
    if (scopeOf6(gw) === "link") {
      if (!dev || !dev.up) throw new NotModelledError("a link-local IPv6 gateway without a device that is up", FAKE);
      return dev;
    }
    const g = toBits(gw);
    let best: Route | undefined;
    for (const r of this.sortedRoutes(ns, 6)) if (contains(r.dst, g) && (dev === undefined || r.dev === dev) && (!best || r.dst.len > best.dst.len)) best = r;
    return best?.dev ?? rtnetlink("No route to host");
  }

  /**
   * The routes of a family in the order the kernel dumps them: IPv4 by network address, longer
   * prefix first (fib_trie); IPv6 a post-order walk of the fib6 tree (more specific first,
   * `default` last); then by metric, then as they came.
   */
  private sortedRoutes(ns: NsState, family: 4 | 6): Route[] {
    const routes = ns.routes.filter((r) => r.family === family);
    const tie = (a: Route, b: Route) => a.metric - b.metric || a.seq - b.seq;
    if (family === 4) return routes.sort((a, b) => (a.dst.bits < b.dst.bits ? -1 : a.dst.bits > b.dst.bits ? 1 : b.dst.len - a.dst.len || tie(a, b)));
    return routes.sort((a, b) => {
      const common = Math.min(a.dst.len, b.dst.len);
      const am = a.dst.bits & netMask(6, common);
      const bm = b.dst.bits & netMask(6, common);
      if (am !== bm) return am < bm ? -1 : 1;
      return b.dst.len - a.dst.len || tie(a, b);
    });
  }

  private routeText(r: Route): string {
    const parts = [prefixText(r.dst)];
    if (r.gateway) parts.push(`via ${r.gateway.text}`);
    parts.push(`dev ${r.dev.name}`);
    if (r.kernel) parts.push("proto kernel");
    if (r.family === 4 && r.scope !== "global") parts.push(`scope ${r.scope}`);
    if (r.prefsrc) parts.push(`src ${r.prefsrc}`);
    if (r.metric !== 0 || r.family === 6) parts.push(`metric ${r.metric}`);
    if (!this.carrier(r.dev)) parts.push("linkdown");
    return r.family === 4 ? `${parts.join(" ")} ` : `${parts.join(" ")} pref medium`;
  }

  private routeJson(r: Route): Record<string, unknown> {
    return {
      dst: prefixText(r.dst),
      ...(r.gateway ? { gateway: r.gateway.text } : {}),
      dev: r.dev.name,
      ...(r.kernel ? { protocol: "kernel" } : {}),
      ...(r.family === 4 && r.scope !== "global" ? { scope: r.scope } : {}),
      ...(r.prefsrc ? { prefsrc: r.prefsrc } : {}),
      ...(r.metric !== 0 || r.family === 6 ? { metric: r.metric } : {}),
      flags: this.carrier(r.dev) ? [] : ["linkdown"],
      ...(r.family === 6 ? { pref: "medium" } : {}),
    };
  }

  // ---- devices ---------------------------------------------------------------------------------

  private createLink(ns: NsState, name: string, kind: LinkKind, peer?: Link): Link {
    const link: Link = {
      ns,
      ifindex: ns.nextIfindex++,
      name,
      kind,
      up: false,
      everUp: false,
      mtu: kind === "loopback" ? 65536 : 1500,
      mac: kind === "loopback" ? ZERO_MAC : this.newMac(),
      ...(peer ? { peer } : {}),
      v4: [],
      v6: [],
      alive: true,
    };
    ns.links.push(link);
    this.emit(ns, this.monitorLine(link, false));
    return link;
  }

  /** Deletes a device (a veth with its peer): its routes and addresses go, a bridge frees its ports. */
  private deleteLink(l: Link): void {
    const gone = [l, ...(l.peer?.alive ? [l.peer] : [])];
    for (const x of gone) {
      if (!x.alive) continue;
      x.alive = false;
      this.crossing.delete(x);
      if (x.master) this.release(x);
      for (const port of x.ns.links.filter((p) => p.master === x)) this.release(port);
      x.ns.links = x.ns.links.filter((y) => y !== x);
      x.ns.routes = x.ns.routes.filter((r) => r.dev !== x);
      this.emit(x.ns, this.monitorLine(x, true));
    }
  }

  private setUp(l: Link): void {
    l.up = true;
    l.everUp = true;
    if (l.kind === "loopback") {
      if (l.v4.length === 0) l.v4.push({ local: parseIp("127.0.0.1")!, prefixlen: 8, scope: "host" });
      if (!l.v6.some((a) => a.local.text === "::1")) this.insertAddress6(l, { local: parseIp("::1")!, prefixlen: 128, scope: "host" });
    }
    for (const a of l.v4) if (!a.secondary) this.addPrefixRoute4(l, a);
    for (const a of l.v6) this.addPrefixRoute6(l, a);
    this.touch(l);
  }

  /** Down: the device's routes go, and its IPv6 addresses (`keep_addr_on_down` is 0); IPv4 addresses stay. */
  private setDown(l: Link): void {
    l.up = false;
    l.v6 = [];
    l.ns.routes = l.ns.routes.filter((r) => r.dev !== l);
    this.touch(l);
  }

  private release(port: Link): void {
    const bridge = port.master!;
    this.emit(port.ns, this.portLine(port, true));
    delete port.master;
    this.touch(port);
    this.recalculateBridge(bridge);
  }

  /** A bridge follows its ports (`br_mtu_auto_adjust`, `br_stp_recalculate_bridge_id`) unless set by the user. */
  private recalculateBridge(bridge: Link): void {
    if (!bridge.alive) return;
    const ports = bridge.ns.links.filter((p) => p.master === bridge);
    if (!bridge.mtuSet && ports.length > 0) bridge.mtu = Math.min(...ports.map((p) => p.mtu));
    if (!bridge.macSet) bridge.mac = ports.length === 0 ? ZERO_MAC : ports.map((p) => p.mac).sort()[0]!;
    this.touch(bridge);
  }

  /** The settled carrier: a veth's when both ends are up, a bridge's when a port has carrier (or it never had a port). */
  private carrier(l: Link): boolean {
    if (!l.up) return false;
    switch (l.kind) {
      case "loopback":
        return true;
      case "veth":
        return l.peer?.alive === true && l.peer.up;
      case "tap":
        return false;
      case "bridge": {
        const ports = l.ns.links.filter((p) => p.master === l);
        return ports.length === 0 ? !l.hadPort : ports.some((p) => this.carrier(p));
      }
    }
  }

  private operstate(l: Link): string {
    if (!l.up) return "DOWN";
    if (l.kind === "loopback") return "UNKNOWN";
    if (this.carrier(l)) return l.kind === "bridge" && !l.hadPort ? "UNKNOWN" : "UP";
    // RFC 2863 "lower layer down" needs a lower device with another ifindex: a veth peer that
    // happens to have the same ifindex in its own namespace reads as plain DOWN.
    return l.kind === "veth" && l.peer !== undefined && l.peer.ifindex !== l.ifindex ? "LOWERLAYERDOWN" : "DOWN";
  }

  private flags(l: Link): string[] {
    const carrier = this.carrier(l);
    const f: string[] = [];
    if (l.up && !carrier) f.push("NO-CARRIER");
    f.push(...(l.kind === "loopback" ? ["LOOPBACK"] : ["BROADCAST", "MULTICAST"]));
    if (l.up) f.push("UP");
    if (carrier) f.push("LOWER_UP");
    // ip marks a device whose lower device (a veth peer it can see) is down.
    if (l.peer && l.peer.ns === l.ns && !l.peer.up) f.push("M-DOWN");
    return f;
  }

  private qdisc(l: Link): string {
    if (!l.everUp) return "noop";
    return l.kind === "tap" ? "pfifo_fast" : "noqueue";
  }

  /** `@peer` when ip can see it by name, `@ifN` when it is in another namespace. */
  private peerSuffix(l: Link): string {
    // A veth's first end is printed before its peer exists.
    if (l.kind === "veth" && (!l.peer || !l.peer.alive)) return "@NONE";
    if (!l.peer) return "";
    return l.peer.ns === l.ns ? `@${l.peer.name}` : `@if${l.peer.ifindex}`;
  }

  private linkTail(l: Link): string {
    if (l.kind === "loopback") return "link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00";
    return `link/ether ${l.mac} brd ff:ff:ff:ff:ff:ff`;
  }

  /** Where a veth's peer is, when it is in another namespace. */
  private peerNetns(l: Link): string {
    if (!l.peer?.alive || l.peer.ns === l.ns) return "";
    return l.peer.ns.name !== undefined ? ` link-netns ${l.peer.ns.name}` : ` link-netnsid ${nsidOf(l.ns, l.peer.ns)}`;
  }

  /** `ip link show` (`-o`: the second line after a backslash). */
  private linkText(l: Link, join: "\\" | "\n"): string {
    const master = l.master ? ` master ${l.master.name}` : "";
    const alias = l.alias !== undefined ? `${join}    alias ${l.alias}` : "";
    return `${l.ifindex}: ${l.name}${this.peerSuffix(l)}: <${this.flags(l).join(",")}> mtu ${l.mtu} qdisc ${this.qdisc(l)}${master} state ${this.operstate(l)} mode DEFAULT group default qlen 1000${join}    ${this.linkTail(l)}${this.peerNetns(l)}${alias}`;
  }

  /** A line of `ip -o monitor link`; a deleted device is printed as it was closed, its peer gone. */
  private monitorLine(l: Link, deleted: boolean): string {
    if (deleted) {
      const flags = l.kind === "loopback" ? "LOOPBACK" : "BROADCAST,MULTICAST";
      return `Deleted ${l.ifindex}: ${l.name}${l.peer ? "@NONE" : ""}: <${flags}> mtu ${l.mtu} qdisc noop state DOWN group default \\    ${this.linkTail(l)}`;
    }
    const master = l.master ? ` master ${l.master.name}` : "";
    return `${l.ifindex}: ${l.name}${this.peerSuffix(l)}: <${this.flags(l).join(",")}> mtu ${l.mtu} qdisc ${this.qdisc(l)}${master} state ${this.operstate(l)} group default \\    ${this.linkTail(l)}${this.peerNetns(l)}`;
  }

  /**
   * A line of `ip -o monitor link` from the bridge's side (a port joining, changing, leaving):
   * a port that leaves its bridge is printed as deleted though the device stays.
   */
  private portLine(l: Link, deleted: boolean): string {
    return `${deleted ? "Deleted " : ""}${l.ifindex}: ${l.name}${this.peerSuffix(l)}: <${this.flags(l).join(",")}> mtu ${l.mtu} master ${l.master!.name} state ${this.operstate(l)} \\    link/ether ${l.mac}`;
  }

  /** `ip -j link show` / `ip -j addr show` (with `addr_info`): the keys in ip's order. */
  private linkJson(l: Link, addresses: boolean): Record<string, unknown> {
    const foreignPeer = l.peer?.alive && l.peer.ns !== l.ns ? l.peer : undefined;
    const o: Record<string, unknown> = { ifindex: l.ifindex };
    if (l.peer?.alive && !foreignPeer) o["link"] = l.peer.name;
    if (foreignPeer) o["link_index"] = foreignPeer.ifindex;
    o["ifname"] = l.name;
    o["flags"] = this.flags(l);
    o["mtu"] = l.mtu;
    o["qdisc"] = this.qdisc(l);
    if (l.master) o["master"] = l.master.name;
    o["operstate"] = this.operstate(l);
    if (!addresses) o["linkmode"] = "DEFAULT";
    o["group"] = "default";
    o["txqlen"] = 1000;
    o["link_type"] = l.kind === "loopback" ? "loopback" : "ether";
    o["address"] = l.mac;
    o["broadcast"] = l.kind === "loopback" ? ZERO_MAC : "ff:ff:ff:ff:ff:ff";
    if (foreignPeer) o["link_netnsid"] = nsidOf(l.ns, foreignPeer.ns);
    // `ip addr show` leaves the alias out.
    if (!addresses && l.alias !== undefined) o["ifalias"] = l.alias;
    if (addresses) {
      const tentative = !this.carrier(l);
      o["addr_info"] = [
        ...l.v4.map((a) => ({
          family: "inet",
          local: a.local.text,
          prefixlen: a.prefixlen,
          ...(a.broadcast !== undefined ? { broadcast: a.broadcast } : {}),
          scope: a.scope,
          ...(a.secondary ? { secondary: true } : {}),
          label: l.name,
          valid_life_time: NO_LIFETIME,
          preferred_life_time: NO_LIFETIME,
        })),
        ...l.v6.map((a) => ({
          family: "inet6",
          local: a.local.text,
          prefixlen: a.prefixlen,
          scope: a.scope,
          ...(tentative && l.kind !== "loopback" ? { tentative: true } : {}),
          valid_life_time: NO_LIFETIME,
          preferred_life_time: NO_LIFETIME,
        })),
      ];
    }
    return o;
  }

  // ---- events ----------------------------------------------------------------------------------

  private touch(l: Link): void {
    if (!this.pending.includes(l)) this.pending.push(l);
  }

  /**
   * After each command: a device that now has carrier gets its IPv6 link-local address and
   * route (the one acted on first, then its peer and bridge, as the kernel's events come), and
   * each changed device is reported to the monitors of its namespace.
   */
  private flush(): void {
    const seen = new Set<Link>();
    const queue = this.pending.splice(0);
    while (queue.length > 0) {
      const l = queue.shift()!;
      if (seen.has(l) || !l.alive) continue;
      seen.add(l);
      if (l.kind !== "loopback" && this.carrier(l) && !l.v6.some((a) => a.scope === "link")) {
        l.ns.routes.push({ family: 6, dst: { family: 6, bits: 0xfe80n << 112n, len: 64 }, dev: l, kernel: true, scope: "global", metric: KERNEL_METRIC6, seq: this.nextSeq++ });
        this.insertAddress6(l, { local: parseIp(linkLocalFromMac(l.mac))!, prefixlen: 64, scope: "link" });
      }
      for (const r of [l.peer, l.master, l.peer?.master]) if (r && !seen.has(r)) queue.push(r);
      this.emit(l.ns, this.monitorLine(l, false));
      if (l.master) this.emit(l.ns, this.portLine(l, false));
    }
  }

  private emit(ns: NsState, line: string): void {
    if (ns.monitors.size === 0 || !this.alive(ns)) return;
    for (const m of [...ns.monitors]) if (ns.monitors.has(m)) m.options.onLine(line);
  }

  // ---- namespaces ------------------------------------------------------------------------------

  private state(name: string | undefined): NsState | undefined {
    return this.netns.state(this, name, () => this.newNamespace(name));
  }

  private stateOrThrow(name: string | undefined): NsState {
    const ns = this.state(name);
    if (!ns) throw new Error(`FakeIp: namespace ${JSON.stringify(name)} does not exist`);
    return ns;
  }

  private newNamespace(name: string | undefined): NsState {
    const ns: NsState = { name, links: [], nextIfindex: 1, routes: [], sysctl: new Map(), nsids: new Map(), monitors: new Set() };
    const lo = this.createLink(ns, "lo", "loopback");
    // This process's own namespace has its loopback up.
    if (name === undefined) {
      this.setUp(lo);
      this.pending.splice(0);
    }
    return ns;
  }

  private alive(ns: NsState): boolean {
    return this.netns.statesOf<NsState>(this).get(ns.name) === ns;
  }

  /** Whoever deleted a namespace (this fake or another on the same FakeNetns), its veths' peers die with it. */
  private prune(): void {
    for (const l of [...this.crossing]) {
      if (!this.alive(l.ns)) {
        l.alive = false;
        this.crossing.delete(l);
      } else if (!this.alive(l.peer!.ns)) this.deleteLink(l);
    }
    for (const ns of this.netns.statesOf<NsState>(this).values()) {
      for (const other of [...ns.nsids.keys()]) if (!this.alive(other)) ns.nsids.delete(other);
    }
    this.flush();
  }

  private find(ns: NsState, name: string): Link | undefined {
    return ns.links.find((l) => l.name === name);
  }

  /** Runs a setup helper's change, throwing ip's error as an Error. */
  private setup(what: string, change: () => void): void {
    try {
      change();
    } catch (err) {
      if (err instanceof Failure) throw new Error(`FakeIp.${what}: ${err.outcome.stderr.trim()}`);
      throw err;
    } finally {
      this.flush();
    }
  }

  /** Locally administered unicast addresses, as the kernel's random ones, but reproducible. */
  private newMac(): string {
    const n = this.nextMac++;
    return ["02", "c0", "ff", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff].map((b) => (typeof b === "string" ? b : b.toString(16).padStart(2, "0"))).join(":");
  }

  private notModelled(words: readonly string[]): never {
    throw new NotModelledError(`ip ${words.join(" ")}`, FAKE);
  }
}

/** The id `ns` gives `other` (the lowest free one, given on first use). */
function nsidOf(ns: NsState, other: NsState): number {
  const have = ns.nsids.get(other);
  if (have !== undefined) return have;
  const used = new Set(ns.nsids.values());
  let id = 0;
  while (used.has(id)) id++;
  ns.nsids.set(other, id);
  return id;
}

/** Names the kernel takes (`dev_valid_name`), without the odd characters the fake does not model. */
function validName(name: string): boolean {
  return name.length > 0 && name.length <= MAX_NAME && /^[A-Za-z0-9_.-]+$/.test(name) && name !== "." && name !== "..";
}

function toBits(a: IpAddress): bigint {
  const width = a.family === 4 ? 8n : 16n;
  return a.words.reduce((acc, w) => (acc << width) | BigInt(w), 0n);
}

function textOf(bits: bigint, family: 4 | 6): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((bits >> s) & 0xffn)).join(".");
  const words = [];
  for (let s = 112n; s >= 0n; s -= 16n) words.push(((bits >> s) & 0xffffn).toString(16));
  return parseIp(words.join(":"))!.text;
}

function width(family: 4 | 6): bigint {
  return family === 4 ? 32n : 128n;
}

function netMask(family: 4 | 6, len: number): bigint {
  const all = (1n << width(family)) - 1n;
  return (all << (width(family) - BigInt(len))) & all;
}

function hostMask(family: 4 | 6, len: number): bigint {
  return ((1n << width(family)) - 1n) ^ netMask(family, len);
}

function contains(p: Prefix, bits: bigint): boolean {
  return (bits & netMask(p.family, p.len)) === p.bits;
}

function samePrefix(a: Prefix, b: Prefix): boolean {
  return a.family === b.family && a.len === b.len && a.bits === b.bits;
}

function sameAddress(a: IpAddress, b: IpAddress): boolean {
  return a.family === b.family && a.text === b.text;
}

function prefixText(p: Prefix): string {
  if (p.len === 0) return "default";
  const text = textOf(p.bits, p.family);
  return p.len === Number(width(p.family)) ? text : `${text}/${p.len}`;
}

/** rtm scope numbers: a larger one is narrower. */
function scopeNumber(s: Scope): number {
  return s === "global" ? 0 : s === "link" ? 253 : 254;
}

function scopeOf6(a: IpAddress): Scope {
  if (a.text === "::1") return "host";
  return (toBits(a) >> 118n) === 0x3fan ? "link" : "global";
}

/** `ipv6_addr_src_scope`: global 14, link 2, host 1. */
function srcScope6(a: Address): number {
  return a.scope === "global" ? 14 : a.scope === "link" ? 2 : 1;
}
