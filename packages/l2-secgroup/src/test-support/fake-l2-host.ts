/**
 * A fake host for the l2 tests: iptables is `@chainwarden/testing`'s honest FakeIptablesRunner;
 * around it, in memory, the other tools the firewall runs through `runner.exec`:
 * - `listLinks` and `ip -o link show` list the devices a test declares (plus `lo`);
 *   `watch("ip", ["-o", "monitor", "link"])` prints a line as the real monitor does for each device
 *   a test adds or removes while it runs (`listLinksUnsupported` and `monitorUnsupported` leave
 *   those methods out, as a runner without them);
 * - `ipset` (create, restore, swap, destroy, list -n, save) keeps sets per namespace, refuses what
 *   the real tool refuses (a missing set, a swap of unlike sets, destroying a set a rule names);
 * - `conntrack` keeps the connections a test adds (`addConnection`): `-L [-w ZONE]` prints them as
 *   the tool does, `-D` deletes those matching its `-s`/`-d`/`-w`/`-p` and answers like the tool
 *   (exit 1 when nothing matched); every call is recorded.
 * It is stricter than it needs to be where that catches ordering bugs (a restore naming a missing
 * set fails, as it does in the kernel).
 */
import type { AuxCommand, Backend, ExecOptions, ExecResult, RestoreOptions, RestoreStream, Target, WatchedCommand, WatchOptions } from "@chainwarden/core";
import { ForwardingRunner, parseCidr, parseIp } from "@chainwarden/core";
import { FakeIptablesRunner } from "@chainwarden/testing";

/** A tracked TCP connection: the original direction's addresses and port, and its zone. */
export interface FakeConnection {
  src: string;
  dst: string;
  dport: number;
  zone: number;
}

interface FakeSet {
  family: "inet" | "inet6";
  members: Set<string>;
}

const HOST = "\u0000host";
const key = (ns: string | undefined) => ns ?? HOST;

export class FakeL2Host extends ForwardingRunner<FakeIptablesRunner> {
  readonly conntrackCalls: { namespace: string | undefined; args: string[] }[] = [];
  /** Connections in the conntrack table, per namespace (`addConnection`). */
  readonly connections = new Map<string, FakeConnection[]>();
  readonly ipsetCalls: { namespace: string | undefined; args: string[]; input?: string }[] = [];
  private readonly devices = new Map<string, Set<string>>();
  /** Running `ip -o monitor link` watches, per namespace. */
  private readonly monitors = new Map<string, Set<WatchOptions>>();
  private linkIndex = 100;
  /** Device listings (`listLinks`, `ip -o link show`), and `ip -o monitor link` watches started. */
  deviceLists = 0;
  monitorStarts = 0;
  private readonly sets = new Map<string, Map<string, FakeSet>>();

  constructor(options: { variant?: Backend; namespaces?: readonly string[]; restoreStream?: boolean; monitorUnsupported?: boolean; listLinksUnsupported?: boolean } = {}) {
    super(new FakeIptablesRunner({ variant: options.variant ?? "nft", namespaces: options.namespaces ?? [] }));
    if (options.restoreStream === false) this.restoreStream = undefined;
    if (options.monitorUnsupported) this.watch = undefined;
    if (options.listLinksUnsupported) this.listLinks = undefined;
  }

  /** `ip -o monitor link` watches running now, in a namespace. */
  monitorCount(namespace: string | undefined): number {
    return this.monitors.get(key(namespace))?.size ?? 0;
  }

  /** Ends every monitor of a namespace as if it had been killed (each one's `onExit` is told). */
  killMonitors(namespace: string | undefined): void {
    const set = this.monitors.get(key(namespace));
    if (!set) return;
    this.monitors.delete(key(namespace));
    for (const m of set) m.onExit?.(new Error("ip -o monitor link failed (exit ?): killed"));
  }

  watch?: (command: AuxCommand, args: readonly string[], options: WatchOptions) => WatchedCommand = (command, args, options) => {
    if (command !== "ip" || args.join(" ") !== "-o monitor link") throw new Error(`fake host: cannot watch ${command} ${args.join(" ")}`);
    const k = key(options.namespace);
    this.monitorStarts++;
    let set = this.monitors.get(k);
    if (!set) this.monitors.set(k, (set = new Set()));
    set.add(options);
    return {
      started: Promise.resolve(),
      stop: () => void this.monitors.get(k)?.delete(options),
    };
  };

  private linkEvent(namespace: string | undefined, name: string, deleted: boolean): void {
    const line = `${deleted ? "Deleted " : ""}${++this.linkIndex}: ${name}: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP group default \\    link/ether 00:00:00:00:00:00 brd ff:ff:ff:ff:ff:ff`;
    for (const m of [...(this.monitors.get(key(namespace)) ?? [])]) m.onLine(line);
  }

  /** The fake iptables underneath (dumps, injected faults, recorded calls). */
  get iptables(): FakeIptablesRunner {
    return this.inner;
  }

  /** A connection the namespace's conntrack table holds (as traffic would have made it). */
  addConnection(namespace: string | undefined, connection: FakeConnection): void {
    const list = this.connections.get(key(namespace)) ?? [];
    list.push({ ...connection, src: parseIp(connection.src)!.text, dst: parseIp(connection.dst)!.text });
    this.connections.set(key(namespace), list);
  }

  addDevice(namespace: string | undefined, ...names: string[]): void {
    let set = this.devices.get(key(namespace));
    if (!set) this.devices.set(key(namespace), (set = new Set()));
    for (const n of names) {
      if (set.has(n)) continue;
      set.add(n);
      this.linkEvent(namespace, n, false);
    }
  }

  removeDevice(namespace: string | undefined, name: string): void {
    if (this.devices.get(key(namespace))?.delete(name)) this.linkEvent(namespace, name, true);
  }

  /** `ipset save` as the reference files print it: no initval, members sorted per set. */
  ipsetSave(namespace: string | undefined): string {
    const out: string[] = [];
    for (const [name, s] of this.setsOf(namespace)) {
      out.push(`create ${name} hash:net family ${s.family} hashsize 1024 maxelem 65536 bucketsize 12`);
      for (const m of [...s.members].sort()) out.push(`add ${name} ${m}`);
    }
    return out.length ? `${out.join("\n")}\n` : "";
  }

  // ---- IptablesRunner (what is not modelled here goes to the fake iptables) ---------------------

  override async restore(target: Target, input: string, options?: RestoreOptions): Promise<void> {
    this.checkSets(target, input);
    return this.iptables.restore(target, input, options);
  }

  /**
   * The fake iptables' stream, with the same ipset check, made as each piece arrives: the tool
   * parses a line when it reads it, so a set must exist before the rule naming it is written.
   */
  restoreStream?: (target: Target, options?: RestoreOptions) => RestoreStream = (target, options) => {
    const inner = this.iptables.restoreStream!(target, options);
    let refused: Error | undefined;
    return {
      write: (text) => {
        try {
          this.checkSets(target, text);
        } catch (err) {
          refused ??= err as Error;
        }
        inner.write(text);
      },
      end: async () => {
        if (refused) throw refused;
        return inner.end();
      },
    };
  };

  /** The kernel refuses a rule that names a set that does not exist. */
  private checkSets(target: Target, input: string): void {
    for (const m of input.matchAll(/--match-set (\S+) /g)) {
      if (!this.setsOf(target.namespace).has(m[1]!)) {
        throw new Error(`fake kernel: restore names ipset ${m[1]} which does not exist`);
      }
    }
  }

  /** Like the real runner's: `lo` and the devices a test declares (`listLinksUnsupported` leaves it out). */
  listLinks?: (namespace?: string) => Promise<string[]> = async (namespace) => {
    this.deviceLists++;
    return ["lo", ...(this.devices.get(key(namespace)) ?? [])];
  };

  override async exec(command: AuxCommand, args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    if (command === "ip" && args.join(" ") === "-o link show") {
      this.deviceLists++;
      const names = ["lo", ...(this.devices.get(key(options.namespace)) ?? [])];
      return ok(names.map((n, i) => `${i + 1}: ${n}: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT\\    link/ether 00:00:00:00:00:00 brd ff:ff:ff:ff:ff:ff\n`).join(""));
    }
    if (command === "conntrack") {
      this.conntrackCalls.push({ namespace: options.namespace, args: [...args] });
      return this.conntrack(options.namespace, args);
    }
    if (command === "ipset") {
      this.ipsetCalls.push({ namespace: options.namespace, args: [...args], ...(options.input !== undefined ? { input: options.input } : {}) });
      const r = this.ipset(options.namespace, args, options.input);
      if (r.exitCode !== 0 && options.reject !== false) throw new Error(`ipset ${args.join(" ")} failed: ${r.stderr}`);
      return r;
    }
    return this.iptables.exec(command, args, options);
  }

  // ---- ipset ---------------------------------------------------------------------------------

  private setsOf(namespace: string | undefined): Map<string, FakeSet> {
    let m = this.sets.get(key(namespace));
    if (!m) this.sets.set(key(namespace), (m = new Map()));
    return m;
  }

  /** `conntrack -L [-w Z]` and `-D [-p P] -f F -s|-d IP -w Z [-s|-d IP]` over `connections`. */
  private conntrack(namespace: string | undefined, args: readonly string[]): ExecResult {
    const tool = "conntrack v1.4.7 (conntrack-tools)";
    const want: { src?: string; dst?: string; zone?: number; proto?: string } = {};
    for (let i = 1; i < args.length; i += 2) {
      const [flag, value] = [args[i], args[i + 1]];
      if (value === undefined) return { stdout: "", stderr: `${tool}: option requires an argument -- '${flag}'\n`, exitCode: 2 };
      if (flag === "-s" || flag === "-d") {
        const ip = parseIp(value);
        if (!ip) return { stdout: "", stderr: `${tool}: Invalid IP address \`${value}'\n`, exitCode: 2 };
        want[flag === "-s" ? "src" : "dst"] = ip.text;
      } else if (flag === "-w") want.zone = Number(value);
      else if (flag === "-p") want.proto = value;
      else if (flag !== "-f") throw new Error(`FakeL2Host: conntrack ${args.join(" ")}`);
    }
    const all = this.connections.get(key(namespace)) ?? [];
    const hit = (c: FakeConnection) =>
      (want.src === undefined || c.src === want.src) && (want.dst === undefined || c.dst === want.dst) && (want.zone === undefined || c.zone === want.zone) && (want.proto === undefined || want.proto === "tcp" || want.proto === "6");
    const matched = all.filter(hit);
    if (args[0] === "-L") {
      const line = (c: FakeConnection) =>
        `tcp      6 431999 ESTABLISHED src=${c.src} dst=${c.dst} sport=40000 dport=${c.dport} src=${c.dst} dst=${c.src} sport=${c.dport} dport=40000 [ASSURED] mark=0${c.zone ? ` zone=${c.zone}` : ""} use=1\n`;
      return { stdout: matched.map(line).join(""), stderr: `${tool}: ${matched.length} flow entries have been shown.\n`, exitCode: 0 };
    }
    if (args[0] !== "-D") throw new Error(`FakeL2Host: conntrack ${args.join(" ")}`);
    this.connections.set(key(namespace), all.filter((c) => !hit(c)));
    return { stdout: "", stderr: `${tool}: ${matched.length} flow entries have been deleted.\n`, exitCode: matched.length === 0 ? 1 : 0 };
  }

  private ipset(namespace: string | undefined, args: readonly string[], input: string | undefined): ExecResult {
    const sets = this.setsOf(namespace);
    const [verb, ...rest] = args;
    switch (verb) {
      case "create": {
        const exist = rest[0] === "-exist";
        const [name, type, fam, family] = exist ? rest.slice(1) : rest;
        return this.create(sets, name!, type!, fam!, family!, exist);
      }
      case "restore": {
        const exist = rest[0] === "-exist";
        // Restore is applied line by line; the real tool stops at the first failing line.
        for (const line of (input ?? "").split("\n").filter((l) => l.trim() !== "")) {
          const w = line.trim().split(/\s+/);
          let r: ExecResult;
          if (w[0] === "create") r = this.create(sets, w[1]!, w[2]!, w[3]!, w[4]!, exist);
          else if (w[0] === "flush") r = sets.has(w[1]!) ? (sets.get(w[1]!)!.members.clear(), ok()) : fail(`The set with the given name does not exist`);
          else if (w[0] === "add") r = this.add(sets, w[1]!, w[2]!, exist);
          else r = fail(`unknown restore command ${w[0]}`);
          if (r.exitCode !== 0) return r;
        }
        return ok();
      }
      case "swap": {
        const a = sets.get(rest[0]!);
        const b = sets.get(rest[1]!);
        if (!a || !b) return fail("The set with the given name does not exist");
        if (a.family !== b.family) return fail("The sets cannot be swapped: their type does not match");
        sets.set(rest[0]!, b);
        sets.set(rest[1]!, a);
        return ok();
      }
      case "destroy": {
        const name = rest[0]!;
        if (!sets.has(name)) return fail(`The set with the given name does not exist`);
        for (const family of [4, 6] as const) {
          let dump = "";
          try {
            dump = this.iptables.dump({ namespace, family });
          } catch {
            dump = "";
          }
          if (dump.includes(`--match-set ${name} `)) return fail("Set cannot be destroyed: it is in use by a kernel component");
        }
        sets.delete(name);
        return ok();
      }
      case "list":
        if (rest[0] === "-n") return ok([...sets.keys()].map((n) => `${n}\n`).join(""));
        return fail("not modelled");
      case "save":
        return ok(this.ipsetSave(namespace));
      default:
        return fail(`not modelled: ipset ${args.join(" ")}`);
    }
  }

  private create(sets: Map<string, FakeSet>, name: string, type: string, fam: string, family: string, exist: boolean): ExecResult {
    if (type !== "hash:net" || fam !== "family" || (family !== "inet" && family !== "inet6")) return fail(`not modelled: create ${name} ${type} ${fam} ${family}`);
    if (name.length > 31) return fail("Syntax error: setname is longer than 31 characters");
    const have = sets.get(name);
    if (have) {
      if (exist && have.family === family) return ok();
      return fail("Set cannot be created: set with the same name already exists");
    }
    sets.set(name, { family, members: new Set() });
    return ok();
  }

  private add(sets: Map<string, FakeSet>, name: string, member: string, exist: boolean): ExecResult {
    const s = sets.get(name);
    if (!s) return fail("The set with the given name does not exist");
    const n = parseCidr(member);
    if (!n || (n.family === 4) !== (s.family === "inet") || n.prefix === 0) return fail(`Syntax error: cannot parse ${member}`);
    // hash:net stores the network; a host prefix prints without its length.
    const text = n.prefix === (n.family === 4 ? 32 : 128) ? n.network.text : n.text;
    if (s.members.has(text) && !exist) return fail("Element cannot be added to the set: it's already added");
    s.members.add(text);
    return ok();
  }
}

function ok(stdout = ""): ExecResult {
  return { stdout, stderr: "", exitCode: 0 };
}

function fail(message: string): ExecResult {
  return { stdout: "", stderr: `ipset v7.17: ${message}\n`, exitCode: 1 };
}
