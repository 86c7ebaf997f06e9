/**
 * A fake host for the l2 tests: iptables is `@chainwarden/testing`'s honest FakeIptablesRunner;
 * around it, in memory, the other tools the firewall runs through `runner.exec`:
 * - `ip -o link show` lists the devices a test declares (plus `lo`);
 * - `ipset` (create, restore, swap, destroy, list -n, save) keeps sets per namespace, refuses what
 *   the real tool refuses (a missing set, a swap of unlike sets, destroying a set a rule names);
 * - `conntrack -D` is recorded and answers like the tool when nothing matched (exit 1).
 * It is stricter than it needs to be where that catches ordering bugs (a restore naming a missing
 * set fails, as it does in the kernel).
 */
import type { AuxCommand, Backend, ExecOptions, ExecResult, RestoreOptions, RestoreStream, Target } from "@chainwarden/core";
import { ForwardingRunner, parseCidr } from "@chainwarden/core";
import { FakeIptablesRunner } from "@chainwarden/testing";

interface FakeSet {
  family: "inet" | "inet6";
  members: Set<string>;
}

const HOST = "\u0000host";
const key = (ns: string | undefined) => ns ?? HOST;

export class FakeL2Host extends ForwardingRunner<FakeIptablesRunner> {
  readonly conntrackCalls: { namespace: string | undefined; args: string[] }[] = [];
  readonly ipsetCalls: { namespace: string | undefined; args: string[]; input?: string }[] = [];
  private readonly devices = new Map<string, Set<string>>();
  private readonly sets = new Map<string, Map<string, FakeSet>>();

  constructor(options: { variant?: Backend; namespaces?: readonly string[]; restoreStream?: boolean } = {}) {
    super(new FakeIptablesRunner({ variant: options.variant ?? "nft", namespaces: options.namespaces ?? [] }));
    if (options.restoreStream === false) this.restoreStream = undefined;
  }

  /** The fake iptables underneath (dumps, injected faults, recorded calls). */
  get iptables(): FakeIptablesRunner {
    return this.inner;
  }

  addDevice(namespace: string | undefined, ...names: string[]): void {
    let set = this.devices.get(key(namespace));
    if (!set) this.devices.set(key(namespace), (set = new Set()));
    for (const n of names) set.add(n);
  }

  removeDevice(namespace: string | undefined, name: string): void {
    this.devices.get(key(namespace))?.delete(name);
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

  override async exec(command: AuxCommand, args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    if (command === "ip" && args.join(" ") === "-o link show") {
      const names = ["lo", ...(this.devices.get(key(options.namespace)) ?? [])];
      return ok(names.map((n, i) => `${i + 1}: ${n}: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT\\    link/ether 00:00:00:00:00:00 brd ff:ff:ff:ff:ff:ff\n`).join(""));
    }
    if (command === "conntrack") {
      this.conntrackCalls.push({ namespace: options.namespace, args: [...args] });
      return { stdout: "", stderr: "conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n", exitCode: 1 };
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
