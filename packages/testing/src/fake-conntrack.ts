import {
  CommandError,
  PREPARED_INPUT,
  parseIp,
  type ConntrackRunner,
  type ExecOptions,
  type ExecResult,
  type PreparedCommand,
  type PrepareOptions,
} from "@chainwarden/core";
import { execFailed, execOk, settleExec } from "./fake-exec.js";
import type { FakeNetns } from "./fake-netns.js";
import { NotModelledError } from "./not-modelled-error.js";
import { namespaceGoneFailure } from "./tool-messages.js";

/** A tracked connection, as a test puts it in a namespace's table (`addConnection`). */
export interface FakeConnection {
  /** `tcp`, `udp`, `icmp`, `icmpv6`, or the number of a protocol conntrack tracks without ports (`50`). */
  protocol: "tcp" | "udp" | "icmp" | "icmpv6" | number;
  /** The original direction's addresses (both of one family). */
  src: string;
  dst: string;
  /** tcp and udp: the original direction's ports. */
  sport?: number;
  dport?: number;
  /** icmp and icmpv6: an echo request (type 8, or 128 for icmpv6, the default), its code and id. */
  icmpType?: number;
  icmpCode?: number;
  icmpId?: number;
  /** The reply direction (default: the original reversed); differs for a NATed connection. */
  replySrc?: string;
  replyDst?: string;
  replySport?: number;
  replyDport?: number;
  /** Conntrack zone; 0 (the default) prints no `zone=`. */
  zone?: number;
  /** tcp: the state (default ESTABLISHED). */
  state?: string;
  /** A reply was seen (default true); false prints `[UNREPLIED]`. */
  replied?: boolean;
  /** Default true: `[ASSURED]`. */
  assured?: boolean;
  /** Seconds left, as the listing prints them (default 120; the real kernel counts it down). */
  timeout?: number;
}

/** One command as it was given: an `exec`, or a prepared command's `run` with its input. */
export interface ConntrackCall {
  namespace: string | undefined;
  args: string[];
  /** A prepared command's input. */
  input?: string;
  prepared?: true;
}

/** Options of `FakeConntrack`: the namespaces it shares, and whether it offers prepared commands. */
export interface FakeConntrackOptions {
  /** The host's namespaces, shared with the fakes of the other tools. */
  netns: FakeNetns;
  /**
   * `prepare` (`conntrack -R PREPARED_INPUT`): offered (true, the default), absent (false, as a
   * runner without it), or offered but every prepared command fails to start (`"cannot-start"`,
   * as `ExecaRunner`'s do when no FIFO can be made; see `startFailure`).
   */
  prepare?: boolean | "cannot-start";
}

/** A connection as the kernel holds it: both tuples complete. */
interface Entry {
  family: 4 | 6;
  protonum: number;
  src: string;
  dst: string;
  replySrc: string;
  replyDst: string;
  /** tcp/udp: [sport, dport] of each direction; icmp: [type, code, id]. */
  orig: number[];
  reply: number[];
  zone: number;
  state: string | undefined;
  replied: boolean;
  assured: boolean;
  timeout: number;
}

/** What a `-D`/`-L` matches: every field given must be equal. */
interface Filter {
  family?: 4 | 6;
  protonum?: number;
  src?: string;
  dst?: string;
  replySrc?: string;
  replyDst?: string;
  zone?: number;
  /** tcp/udp ports, icmp type/code/id, by position in `Entry.orig` (unset: any). */
  l4: (number | undefined)[];
}

interface Command {
  command: "-L" | "-D";
  filter: Filter;
}

class ConntrackFailure extends Error {
  constructor(
    readonly exitCode: number,
    readonly stderr: string,
  ) {
    super(stderr);
  }
}

const TOOL = "conntrack v1.4.7 (conntrack-tools)";
/** Exit 2: a command line that does not parse. */
const usage = (message: string) => new ConntrackFailure(2, `${TOOL}: ${message}\nTry \`conntrack -h' or 'conntrack --help' for more information.\n`);

/** conntrack's own protocol extensions: `-p` takes their names in any case, and their options. */
const HANDLERS: ReadonlyMap<string, { protonum: number; options: readonly string[] }> = new Map([
  ["tcp", { protonum: 6, options: ["--sport", "--dport"] }],
  ["udp", { protonum: 17, options: ["--sport", "--dport"] }],
  ["udplite", { protonum: 136, options: ["--sport", "--dport"] }],
  ["sctp", { protonum: 132, options: ["--sport", "--dport"] }],
  ["dccp", { protonum: 33, options: ["--sport", "--dport"] }],
  ["icmp", { protonum: 1, options: ["--icmp-type", "--icmp-code", "--icmp-id"] }],
  ["icmpv6", { protonum: 58, options: ["--icmpv6-type", "--icmpv6-code", "--icmpv6-id"] }],
  ["gre", { protonum: 47, options: [] }],
]);

/**
 * The other names `-p` takes, through getprotobyname(3): Debian 12's /etc/protocols (netbase),
 * primary names. A name missing here (`ipv6-encap`, `pgm`, which Neutron's API accepts) is an
 * unsupported protocol for conntrack.
 */
const PROTOCOL_NAMES: ReadonlyMap<string, number> = new Map(
  (
    "ip 0 hopopt 0 icmp 1 igmp 2 ggp 3 ipencap 4 st 5 tcp 6 egp 8 igp 9 pup 12 udp 17 hmp 20 xns-idp 22 rdp 27 iso-tp4 29 dccp 33 " +
    "xtp 36 ddp 37 idpr-cmtp 38 ipv6 41 ipv6-route 43 ipv6-frag 44 idrp 45 rsvp 46 gre 47 esp 50 ah 51 skip 57 ipv6-icmp 58 " +
    "ipv6-nonxt 59 ipv6-opts 60 rspf 73 vmtp 81 eigrp 88 ospf 89 ax.25 93 ipip 94 etherip 97 encap 98 pim 103 ipcomp 108 vrrp 112 " +
    "l2tp 115 isis 124 sctp 132 fc 133 mobility-header 135 udplite 136 mpls-in-ip 137 manet 138 hip 139 shim6 140 wesp 141 rohc 142 ethernet 143"
  )
    .split(" ")
    .reduce<[string, number][]>((pairs, word, i, words) => (i % 2 === 0 ? [...pairs, [word, Number(words[i + 1])]] : pairs), []),
);

/** The names the listing prints (libnetfilter_conntrack's); any other protocol is `unknown`. */
const PRINTED_NAMES: ReadonlyMap<number, string> = new Map([
  [1, "icmp"], [6, "tcp"], [17, "udp"], [33, "dccp"], [47, "gre"], [58, "icmpv6"], [132, "sctp"], [136, "udplite"],
]);

/** Echo request → reply: the ICMP types whose connections the fake can make. */
const ICMP_REPLY: Readonly<Record<number, Record<number, number>>> = { 1: { 8: 0 }, 58: { 128: 129 } };

/**
 * An honest in-memory `conntrack` 1.4.7 behind core's `ConntrackRunner`, per namespace of a
 * `FakeNetns`, checked against the real tool by `describeConntrackRunnerContract`: the
 * connections a test adds (`addConnection`), `-L` and `-D` filtered by family, protocol,
 * addresses of either direction, ports, ICMP type/code/id and zone (the filters Chainwarden
 * uses), printing entries and summaries as the tool does (`-D` exits 1 when it deleted nothing),
 * and `conntrack -R PREPARED_INPUT` through `prepare` (every line read before any runs; what is
 * deleted printed, no summary, exit 0). Every command is recorded in `calls`. Everything else
 * throws `NotModelledError`.
 */
export class FakeConntrack implements ConntrackRunner {
  readonly netns: FakeNetns;
  readonly calls: ConntrackCall[] = [];
  /** `conntrack -R PREPARED_INPUT`, started now and given its lines later; absent with `prepare: false`. */
  readonly prepare?: (command: "conntrack", args: readonly string[], options?: PrepareOptions) => PreparedCommand;
  /**
   * While set, commands prepared from then on cannot start, and their `run` rejects with this as
   * the reason (a `CommandError` without an exit status, as `ExecaRunner`'s when no FIFO can be made).
   */
  startFailure: string | undefined;
  private readonly waiting = new Set<{ namespace: string | undefined; args: string[] }>();

  constructor(options: FakeConntrackOptions) {
    this.netns = options.netns;
    if (options.prepare === "cannot-start") this.startFailure = "mkfifo: cannot create fifo: Read-only file system";
    if (options.prepare !== false) this.prepare = (command, args, opts) => this.prepareCommand(command, args, opts ?? {});
  }

  /**
   * The `conntrack -I` arguments that make `connection` on a real kernel, for tests that run the
   * same scenario against both.
   */
  static insertArgs(connection: FakeConnection): string[] {
    const c = complete(connection);
    const p = connection.protocol;
    const args = ["-I", "-p", String(p), "-s", c.src, "-d", c.dst];
    if (c.protonum === 6 || c.protonum === 17) args.push("--sport", String(c.orig[0]), "--dport", String(c.orig[1]));
    if (c.protonum === 1 || c.protonum === 58) {
      const v6 = c.protonum === 58 ? "v6" : "";
      args.push(`--icmp${v6}-type`, String(c.orig[0]), `--icmp${v6}-code`, String(c.orig[1]), `--icmp${v6}-id`, String(c.orig[2]));
    }
    if (connection.replySrc !== undefined || connection.replyDst !== undefined || connection.replySport !== undefined || connection.replyDport !== undefined) {
      args.push("-r", c.replySrc, "-q", c.replyDst);
      if (c.protonum === 6 || c.protonum === 17) args.push("--reply-port-src", String(c.reply[0]), "--reply-port-dst", String(c.reply[1]));
    }
    if (c.state !== undefined) args.push("--state", c.state);
    args.push("-t", String(c.timeout));
    const status = [...(c.replied ? ["SEEN_REPLY"] : []), ...(c.assured ? ["ASSURED"] : [])];
    if (status.length > 0) args.push("-u", status.join(","));
    if (c.zone !== 0) args.push("-w", String(c.zone));
    return args;
  }

  /**
   * A connection the namespace's table holds, as traffic would have made it. Throws as
   * `conntrack -I` fails when the zone already tracks either of its tuples.
   */
  addConnection(namespace: string | undefined, connection: FakeConnection): void {
    const table = this.table(namespace);
    if (!table) throw new Error(`FakeConntrack: namespace ${JSON.stringify(namespace)} does not exist`);
    const entry = complete(connection);
    const tuple = (e: Entry, dir: "orig" | "reply") =>
      dir === "orig" ? [e.protonum, e.src, e.dst, ...e.orig].join(" ") : [e.protonum, e.replySrc, e.replyDst, ...e.reply].join(" ");
    const clash = table.some((e) => e.zone === entry.zone && (["orig", "reply"] as const).some((a) => (["orig", "reply"] as const).some((b) => tuple(e, a) === tuple(entry, b))));
    if (clash) throw new Error(`${TOOL}: Operation failed: Such conntrack exists, try -U to update`);
    table.push(entry);
  }

  /** The listing lines of the namespace's connections, in the order `-L` prints them. */
  listing(namespace: string | undefined): string[] {
    return (this.table(namespace) ?? []).map(formatEntry);
  }

  /** The number of connections the namespace tracks. */
  count(namespace: string | undefined): number {
    return this.table(namespace)?.length ?? 0;
  }

  /** Prepared commands neither run nor cancelled nor expired (each a leak, if left at the end of a test). */
  get preparedWaiting(): { namespace: string | undefined; args: string[] }[] {
    return [...this.waiting];
  }

  async exec(command: "conntrack", args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    this.calls.push({ namespace: options.namespace, args: [...args] });
    if (command !== "conntrack") throw new NotModelledError(`exec(${JSON.stringify([command, ...args].join(" "))})`, "FakeConntrack");
    if (options.input !== undefined) throw new NotModelledError(`conntrack ${args.join(" ")} with an input`, "FakeConntrack");
    const table = this.table(options.namespace);
    if (!table) return settleExec(command, args, options, gone(options.namespace!));
    let result: ExecResult;
    try {
      const cmd = parseCommand(args, false);
      const hits = table.filter((e) => matches(cmd.filter, e));
      const stdout = hits.map((e) => `${formatEntry(e)}\n`).join("");
      if (cmd.command === "-L") {
        result = { stdout, stderr: `${TOOL}: ${hits.length} flow entries have been shown.\n`, exitCode: 0 };
      } else {
        this.remove(table, hits);
        result = { stdout, stderr: `${TOOL}: ${hits.length} flow entries have been deleted.\n`, exitCode: hits.length === 0 ? 1 : 0 };
      }
    } catch (err) {
      if (!(err instanceof ConntrackFailure)) throw err;
      result = execFailed(err.exitCode, err.stderr);
    }
    return settleExec(command, args, options, result);
  }

  private prepareCommand(command: "conntrack", args: readonly string[], options: PrepareOptions): PreparedCommand {
    if (!args.includes(PREPARED_INPUT)) throw new CommandError([command, ...args], undefined, "prepare() needs PREPARED_INPUT among the arguments: the command reads its input from it");
    if (command !== "conntrack" || args.length !== 2 || args[0] !== "-R" || args[1] !== PREPARED_INPUT) {
      throw new NotModelledError(`prepare(${JSON.stringify([command, ...args].join(" "))})`, "FakeConntrack");
    }
    const namespace = options.namespace;
    const startFailure = this.startFailure;
    // The command enters its namespace when it starts: one deleted later is still its own.
    const startedIn = startFailure !== undefined || !this.netns.has(namespace) ? undefined : this.table(namespace);
    const record = { namespace, args: [...args] };
    this.waiting.add(record);
    let state: "waiting" | "run" | "cancelled" = "waiting";
    const cancel = () => {
      if (state !== "waiting") return;
      state = "cancelled";
      clearTimeout(expiry);
      this.waiting.delete(record);
    };
    const expiry = setTimeout(cancel, options.expireMs ?? 30_000);
    expiry.unref();
    return {
      run: async (input) => {
        if (state !== "waiting") throw new CommandError([command, ...args], undefined, state === "run" ? "prepared command run twice" : "prepared command was cancelled (or expired) before it was run", { namespace });
        state = "run";
        clearTimeout(expiry);
        this.waiting.delete(record);
        await Promise.resolve();
        if (startFailure !== undefined) throw new CommandError([command, ...args], undefined, `could not be started: ${startFailure}`, { namespace });
        this.calls.push({ ...record, args: [...args], input, prepared: true });
        const result = startedIn ? this.loadFile(startedIn, input) : gone(namespace!);
        return settleExec(command, args, { namespace, ...(options.reject !== undefined ? { reject: options.reject } : {}) }, result);
      },
      cancel,
      get waiting() {
        return state === "waiting";
      },
    };
  }

  /** `-R`: every line is read first (one that does not parse fails the whole file), then each runs. */
  private loadFile(table: Entry[], input: string): ExecResult {
    let commands: Command[];
    try {
      commands = input
        .split("\n")
        .map((l) => l.trim())
        .filter(Boolean)
        .map((l) => parseCommand(l.split(/\s+/), true));
    } catch (err) {
      if (!(err instanceof ConntrackFailure)) throw err;
      return execFailed(err.exitCode, err.stderr);
    }
    let stdout = "";
    for (const cmd of commands) {
      const hits = table.filter((e) => matches(cmd.filter, e));
      stdout += hits.map((e) => `${formatEntry(e)}\n`).join("");
      this.remove(table, hits);
    }
    return execOk(stdout);
  }

  private remove(table: Entry[], hits: readonly Entry[]): void {
    const drop = new Set(hits);
    const kept = table.filter((e) => !drop.has(e));
    table.splice(0, table.length, ...kept);
  }

  private table(namespace: string | undefined): Entry[] | undefined {
    return this.netns.state<Entry[]>(this, namespace, () => []);
  }
}

function gone(namespace: string): ExecResult {
  const f = namespaceGoneFailure(namespace);
  return execFailed(f.exitCode, f.stderr);
}

/**
 * `-L|-D [options]` (a `-R` line when `loadFile`): the options Chainwarden uses, in any order
 * (`-f`, `-p`, `-s`, `-d`, `-r`, `-q`, `-w`/`--zone`, and after `-p` its extension's ports or
 * ICMP fields), refused with the tool's messages where it refuses them.
 */
function parseCommand(args: readonly string[], loadFile: boolean): Command {
  const notModelled = (): never => {
    throw new NotModelledError(`conntrack ${loadFile ? "-R line " : ""}${args.join(" ")}`, "FakeConntrack");
  };
  const [command, ...rest] = args;
  if (loadFile && command === "-L") throw usage("Cannot use command `-L' with --load-file");
  if (command !== "-D" && (command !== "-L" || loadFile)) return notModelled();
  const filter: Filter = { l4: [] };
  let family: 4 | 6 | undefined;
  const families: (4 | 6)[] = [];
  let extension: readonly string[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < rest.length; i++) {
    const flag = rest[i]!;
    if (!flag.startsWith("-")) return notModelled();
    const known = ["-f", "-p", "-s", "-d", "-r", "-q", "-w", "--zone"].includes(flag);
    const l4 = ["--sport", "--dport", "--icmp-type", "--icmp-code", "--icmp-id", "--icmpv6-type", "--icmpv6-code", "--icmpv6-id"].includes(flag);
    if (!known && !l4) return notModelled();
    if (l4 && !extension.includes(flag)) throw usage(`unknown option \`${flag}'`);
    const value = rest[++i];
    if (value === undefined) throw usage(`option \`${flag}' requires an argument`);
    const key = flag === "--zone" ? "-w" : flag;
    if (seen.has(key)) return notModelled();
    seen.add(key);
    switch (key) {
      case "-f":
        if (value === "ipv4") family = 4;
        else if (value === "ipv6") family = 6;
        else throw usage(`\`${value}' unsupported protocol`);
        break;
      case "-p": {
        const p = protocol(value);
        if (p === undefined) throw usage(`\`${value}' unsupported protocol`);
        filter.protonum = p.protonum;
        extension = p.options;
        break;
      }
      case "-s":
      case "-d":
      case "-r":
      case "-q": {
        if (value.includes("/")) return notModelled();
        const ip = parseIp(value);
        if (!ip) throw usage(`Invalid IP address \`${value}'`);
        families.push(ip.family);
        filter[({ "-s": "src", "-d": "dst", "-r": "replySrc", "-q": "replyDst" } as const)[key]] = ip.text;
        break;
      }
      case "-w":
        if (!/^(0|[1-9][0-9]{0,4})$/.test(value) || Number(value) > 65535) return notModelled();
        filter.zone = Number(value);
        break;
      default: {
        if (!/^(0|[1-9][0-9]{0,4})$/.test(value) || Number(value) > 65535) return notModelled();
        const at = l4Position(flag);
        filter.l4[at] = Number(value);
      }
    }
  }
  if (family !== undefined) families.push(family);
  if (families.some((f) => f !== families[0])) throw usage("mismatched address family");
  if (families[0] !== undefined) filter.family = families[0];
  return { command, filter };
}

/** Where an extension option's value sits in an entry's original-direction fields. */
function l4Position(flag: string): number {
  if (flag === "--sport") return 0;
  if (flag === "--dport") return 1;
  return flag.endsWith("-type") ? 0 : flag.endsWith("-code") ? 1 : 2;
}

/** What `-p` names: an extension by name (any case), another name of /etc/protocols, or a number. */
function protocol(text: string): { protonum: number; options: readonly string[] } | undefined {
  const handler = HANDLERS.get(text.toLowerCase());
  if (handler) return handler;
  const named = PROTOCOL_NAMES.get(text);
  if (named !== undefined) return { protonum: named, options: [] };
  if (/[A-Z]/.test(text) || text === "mptcp" || /^0[0-9xX]/.test(text)) {
    // An alias, a protocol above 255, or a number strtoul reads in another base.
    throw new NotModelledError(`conntrack -p ${text}`, "FakeConntrack");
  }
  if (!/^(0|[1-9][0-9]*)$/.test(text) || Number(text) > 255) return undefined;
  const protonum = Number(text);
  return [...HANDLERS.values()].find((h) => h.protonum === protonum) ?? { protonum, options: [] };
}

function matches(f: Filter, e: Entry): boolean {
  return (
    (f.family === undefined || e.family === f.family) &&
    (f.protonum === undefined || e.protonum === f.protonum) &&
    (f.src === undefined || e.src === f.src) &&
    (f.dst === undefined || e.dst === f.dst) &&
    (f.replySrc === undefined || e.replySrc === f.replySrc) &&
    (f.replyDst === undefined || e.replyDst === f.replyDst) &&
    (f.zone === undefined || e.zone === f.zone) &&
    f.l4.every((v, i) => v === undefined || e.orig[i] === v)
  );
}

/** Fills in the defaults and checks what the fake can make; throws for the rest. */
function complete(c: FakeConnection): Entry {
  const bad = (why: string): never => {
    throw new NotModelledError(`a connection ${why} (${JSON.stringify(c)})`, "FakeConntrack");
  };
  const protonum = typeof c.protocol === "number" ? c.protocol : HANDLERS.get(c.protocol)!.protonum;
  if (typeof c.protocol === "number" && (PRINTED_NAMES.has(c.protocol) || !Number.isInteger(c.protocol) || c.protocol < 1 || c.protocol > 255)) {
    bad("of a protocol given by number that conntrack tracks with fields of its own (name tcp, udp, icmp or icmpv6)");
  }
  const src = parseIp(c.src) ?? bad("with an invalid source");
  const dst = parseIp(c.dst) ?? bad("with an invalid destination");
  const replySrc = c.replySrc === undefined ? dst : (parseIp(c.replySrc) ?? bad("with an invalid reply source"));
  const replyDst = c.replyDst === undefined ? src : (parseIp(c.replyDst) ?? bad("with an invalid reply destination"));
  if (new Set([src.family, dst.family, replySrc.family, replyDst.family]).size !== 1) bad("mixing address families");
  if ((protonum === 1 && src.family !== 4) || (protonum === 58 && src.family !== 6)) bad("of an ICMP version that is not its address family's");
  let orig: number[] = [];
  let reply: number[] = [];
  if (protonum === 6 || protonum === 17) {
    if (c.sport === undefined || c.dport === undefined) bad("without ports");
    orig = [c.sport!, c.dport!];
    reply = [c.replySport ?? c.dport!, c.replyDport ?? c.sport!];
  } else if (protonum === 1 || protonum === 58) {
    const type = c.icmpType ?? (protonum === 1 ? 8 : 128);
    const replyType = ICMP_REPLY[protonum]![type] ?? bad("of an ICMP type other than an echo request");
    orig = [type, c.icmpCode ?? 0, c.icmpId ?? 0];
    reply = [replyType, c.icmpCode ?? 0, c.icmpId ?? 0];
  }
  const zone = c.zone ?? 0;
  if (!Number.isInteger(zone) || zone < 0 || zone > 65535) bad("with a zone out of 0-65535");
  return {
    family: src.family,
    protonum,
    src: src.text,
    dst: dst.text,
    replySrc: replySrc.text,
    replyDst: replyDst.text,
    orig,
    reply,
    zone,
    state: protonum === 6 ? (c.state ?? "ESTABLISHED") : undefined,
    replied: c.replied ?? true,
    assured: c.assured ?? true,
    timeout: c.timeout ?? 120,
  };
}

/** One line of `conntrack -L` (the default output format of 1.4.7). */
function formatEntry(e: Entry): string {
  const fields = (values: number[]) =>
    e.protonum === 6 || e.protonum === 17 ? [`sport=${values[0]}`, `dport=${values[1]}`] : e.protonum === 1 || e.protonum === 58 ? [`type=${values[0]}`, `code=${values[1]}`, `id=${values[2]}`] : [];
  return [
    `${(PRINTED_NAMES.get(e.protonum) ?? "unknown").padEnd(8)} ${e.protonum} ${e.timeout}`,
    ...(e.state !== undefined ? [e.state] : []),
    `src=${e.src}`,
    `dst=${e.dst}`,
    ...fields(e.orig),
    ...(e.replied ? [] : ["[UNREPLIED]"]),
    `src=${e.replySrc}`,
    `dst=${e.replyDst}`,
    ...fields(e.reply),
    ...(e.assured ? ["[ASSURED]"] : []),
    "mark=0",
    ...(e.zone !== 0 ? [`zone=${e.zone}`] : []),
    "use=1",
  ].join(" ");
}
