import { parseCidr, parseIp, type ExecOptions, type ExecResult, type IpsetRunner } from "@chainwarden/core";
import { execFailed, execOk, settleExec } from "./fake-exec.js";
import type { FakeIptablesRunner } from "./fake-iptables-runner.js";
import type { FakeNetns } from "./fake-netns.js";
import { NotModelledError } from "./not-modelled-error.js";
import { namespaceGoneFailure } from "./tool-messages.js";

/** An ipset's address family as `ipset create NAME hash:net family …` names it. */
export type IpsetFamily = "inet" | "inet6";

/** Options of `FakeIpset`: the namespaces it shares, and what the kernel holds sets for. */
export interface FakeIpsetOptions {
  /** The host's namespaces, shared with the fakes of the other tools. */
  netns: FakeNetns;
  /**
   * Whether something in the kernel holds the set (an iptables rule of the namespace naming it
   * with `--match-set`): such a set cannot be destroyed. Default: nothing does. Wire it to the
   * iptables fake with `FakeIpset.referencedBy`.
   */
  inUse?: (namespace: string | undefined, name: string) => boolean;
}

/** One `exec` as it was asked for. */
export interface IpsetCall {
  namespace: string | undefined;
  args: string[];
  input?: string;
}

interface IpSet {
  family: IpsetFamily;
  /** As `ipset save` prints them (a host prefix without its length), in the order added. */
  members: Set<string>;
  /** The hash seed the kernel picks at random for each set; `save` prints it. */
  initval: number;
}

/**
 * The sets of one namespace by kernel index: `list` and `save` go in index order, a new set takes
 * the lowest free index, and `swap` exchanges the contents while each name keeps its index (so a
 * rule naming a set still names it after a swap).
 */
type Slots = ({ name: string; set: IpSet } | undefined)[];

/** A failure that ends the command (exit code and stderr as the tool prints them). */
class IpsetFailure extends Error {
  constructor(
    readonly exitCode: number,
    readonly stderr: string,
  ) {
    super(stderr);
  }
}

const VERSION = "ipset v7.17";
const MAX_NAME = 31;
/** The ipset commands the fake does not model, so that a word that is none of them can be refused as the tool refuses it. */
const OTHER_COMMANDS = new Set(["n", "x", "list", "save", "del", "test", "destroy", "rename", "e", "swap", "w", "help", "version", "-"]);

/** Exit 1: a problem the tool or the kernel found in a well-formed command. */
const problem = (message: string, line?: number) => new IpsetFailure(1, `${VERSION}: ${line === undefined ? "" : `Error in line ${line}: `}${message}\n`);
/** Exit 2: the command line (or a restore line) does not parse. */
const usage = (message: string) => new IpsetFailure(2, `${VERSION}: ${message}\nTry \`ipset help' for more information.\n`);

/**
 * An honest in-memory `ipset` 7.17 behind core's `IpsetRunner`, per namespace of a `FakeNetns`:
 * `hash:net` sets (`create [-exist]`, `restore [-exist]` of `create`/`flush`/`add` lines, `swap`,
 * `destroy [-exist]`, `list -n [NAME]`, `save [NAME]`), with the tool's messages and exit codes,
 * checked against the real tool by `describeIpsetRunnerContract`. A restore keeps the tool's
 * partial effects: `create` and `flush` lines take effect as they are read, consecutive `add`
 * lines of one set go to the kernel together when another command comes or the input ends, so a
 * line that does not parse drops the adds waiting before it, and an add the kernel refuses keeps
 * those before it. (The real tool also sends a batch when its buffer fills, after thousands of
 * adds; the fake never does.) The kernel refuses to destroy a set something holds: `inUse` says
 * what the iptables fake's rules hold; in the other direction, an iptables restore naming a set
 * that does not exist is refused, which the composer checks with `has` (see `missingSet`).
 * Everything else throws `NotModelledError`.
 */
export class FakeIpset implements IpsetRunner {
  readonly netns: FakeNetns;
  /** Every `exec`, in order. */
  readonly calls: IpsetCall[] = [];
  private readonly inUse: (namespace: string | undefined, name: string) => boolean;
  private seeds = 0;

  constructor(options: FakeIpsetOptions) {
    this.netns = options.netns;
    this.inUse = options.inUse ?? (() => false);
  }

  /**
   * An `inUse` that asks the iptables fake: a set is held while a rule of either family in the
   * namespace names it with `--match-set`.
   */
  static referencedBy(iptables: FakeIptablesRunner): (namespace: string | undefined, name: string) => boolean {
    return (namespace, name) =>
      (namespace === undefined || iptables.hasNamespace(namespace)) &&
      ([4, 6] as const).some((family) => iptables.dump({ namespace, family }).split("\n").some((line) => matchSets(line).includes(name)));
  }

  async exec(command: "ipset", args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    this.calls.push({ namespace: options.namespace, args: [...args], ...(options.input !== undefined ? { input: options.input } : {}) });
    if (command !== "ipset") throw new NotModelledError(`exec(${JSON.stringify([command, ...args].join(" "))})`, "FakeIpset");
    const slots = this.slots(options.namespace);
    if (!slots) {
      const gone = namespaceGoneFailure(options.namespace!);
      return settleExec(command, args, options, execFailed(gone.exitCode, gone.stderr));
    }
    return settleExec(command, args, options, this.run(options.namespace, slots, args, options.input));
  }

  /** Whether the set exists in the namespace (false when the namespace does not). */
  has(namespace: string | undefined, name: string): boolean {
    return this.find(this.slots(namespace) ?? [], name) !== undefined;
  }

  /** The names `ipset list -n` prints, in its order. */
  names(namespace: string | undefined): string[] {
    return (this.slots(namespace) ?? []).flatMap((s) => (s ? [s.name] : []));
  }

  /** A set's members as `ipset save` prints them, sorted; undefined when it does not exist. */
  members(namespace: string | undefined, name: string): string[] | undefined {
    const set = this.find(this.slots(namespace) ?? [], name)?.set;
    return set && [...set.members].sort();
  }

  /**
   * The namespace's sets as the reference outputs print `ipset save`: without the random
   * `initval`, members sorted.
   */
  dump(namespace: string | undefined): string {
    return (this.slots(namespace) ?? [])
      .flatMap((s) => (s ? [`create ${s.name} ${createOptions(s.set)}`, ...[...s.set.members].sort().map((m) => `add ${s.name} ${m}`)] : []))
      .map((l) => `${l}\n`)
      .join("");
  }

  /** A set that exists before the test starts (left by an earlier run, say). Throws when it exists. */
  addSet(namespace: string | undefined, name: string, family: IpsetFamily, members: readonly string[] = []): void {
    const slots = this.slots(namespace);
    if (!slots) throw new Error(`FakeIpset: namespace ${JSON.stringify(namespace)} does not exist`);
    try {
      this.create(slots, name, family, false);
      const set = this.find(slots, name)!.set;
      for (const m of members) set.members.add(this.element(set, m, undefined).text);
    } catch (err) {
      if (err instanceof IpsetFailure) throw new Error(`FakeIpset.addSet: ${err.stderr.trim()}`);
      throw err;
    }
  }

  /**
   * The first set an iptables-restore input names with `--match-set` that does not exist in the
   * namespace, with its line (1-based), or undefined. iptables 1.8.9 (both variants) refuses such
   * an input with exit 2 and a parameter problem, `Set NAME doesn't exist.` plus an empty line,
   * then `Error occurred at line: N`.
   */
  missingSet(namespace: string | undefined, restoreInput: string): { name: string; line: number } | undefined {
    const lines = restoreInput.split("\n");
    for (const [i, line] of lines.entries()) {
      if (line.trimStart().startsWith("#")) continue;
      for (const name of matchSets(line)) if (!this.has(namespace, name)) return { name, line: i + 1 };
    }
    return undefined;
  }

  private slots(namespace: string | undefined): Slots | undefined {
    return this.netns.state<Slots>(this, namespace, () => []);
  }

  private find(slots: Slots, name: string): { name: string; set: IpSet } | undefined {
    return slots.find((s) => s?.name === name);
  }

  private run(namespace: string | undefined, slots: Slots, rawArgs: readonly string[], input: string | undefined): ExecResult {
    const notModelled = (): never => {
      throw new NotModelledError(`ipset ${rawArgs.join(" ")}`, "FakeIpset");
    };
    // -exist is a global option: the tool takes it anywhere on the line.
    const exist = rawArgs.includes("-exist");
    const args = rawArgs.filter((a) => a !== "-exist");
    const [verb, ...rest] = args;
    try {
      switch (verb) {
        case "create": {
          const { name, family } = this.parseCreate(rest, undefined);
          this.create(slots, name, family, exist);
          return execOk();
        }
        case "restore":
          if (rest.length > 0 || input === undefined) return notModelled();
          this.restore(slots, input, exist);
          return execOk();
        case "swap":
          if (rest.length === 0) throw usage("Missing mandatory argument to command swap");
          if (rest.length === 1) throw usage("Missing second mandatory argument to command swap");
          if (rest.length > 2) return notModelled();
          this.swap(slots, rest[0]!, rest[1]!);
          return execOk();
        case "destroy":
          if (rest.length === 0) return notModelled(); // destroys every set
          if (rest.length > 1) throw usage(`Unknown argument ${rest[1]}`);
          this.destroy(namespace, slots, rest[0]!, exist);
          return execOk();
        case "list":
          if (rest[0] !== "-n" || rest.length > 2) return notModelled();
          if (rest[1] !== undefined && !this.find(slots, rest[1])) throw problem("The set with the given name does not exist");
          return execOk(
            slots
              .flatMap((s) => (s && (rest[1] === undefined || s.name === rest[1]) ? [`${s.name}\n`] : []))
              .join(""),
          );
        case "save": {
          if (rest.length > 1) return notModelled();
          if (rest[0] !== undefined && !this.find(slots, rest[0])) throw problem("The set with the given name does not exist");
          const text = slots
            .filter((s) => s && (rest[0] === undefined || s.name === rest[0]))
            .flatMap((s) => [`create ${s!.name} ${createOptions(s!.set)} initval 0x${s!.set.initval.toString(16).padStart(8, "0")}`, ...[...s!.set.members].map((m) => `add ${s!.name} ${m}`)]);
          return execOk(text.map((l) => `${l}\n`).join(""));
        }
        default:
          return notModelled();
      }
    } catch (err) {
      if (err instanceof IpsetFailure) return execFailed(err.exitCode, err.stderr);
      throw err;
    }
  }

  /** `create NAME hash:net [family inet|inet6]`, on the command line or a restore line (`line`): what to create. */
  private parseCreate(words: readonly string[], line: number | undefined): { name: string; family: IpsetFamily } {
    if (words.length === 0) throw usage("Missing mandatory argument to command create");
    if (words.length === 1) throw usage("Missing second mandatory argument to command create");
    const [name, type, ...options] = words as [string, string, ...string[]];
    if (name.length > MAX_NAME) throw problem(`Syntax error: setname '${name}' is longer than ${MAX_NAME} characters`, line);
    if (type !== "hash:net") throw new NotModelledError(`create of type ${type}`, "FakeIpset");
    if (options.length === 0) return { name, family: "inet" };
    if (options.length === 1 && options[0] === "family") throw usage("Missing mandatory argument of option `family'");
    if (options.length === 2 && options[0] === "family" && (options[1] === "inet" || options[1] === "ipv4")) return { name, family: "inet" };
    if (options.length === 2 && options[0] === "family" && (options[1] === "inet6" || options[1] === "ipv6")) return { name, family: "inet6" };
    throw new NotModelledError(`create options ${options.join(" ")}`, "FakeIpset");
  }

  private create(slots: Slots, name: string, family: IpsetFamily, exist: boolean, line?: number): void {
    if (this.find(slots, name)) {
      // The kernel takes -exist for a set of the same type and options; it does not compare the
      // family, so an existing set of the other family is kept as it is.
      if (exist) return;
      throw problem("Set cannot be created: set with the same name already exists", line);
    }
    const free = slots.indexOf(undefined);
    const slot = { name, set: { family, members: new Set<string>(), initval: this.nextSeed() } };
    if (free === -1) slots.push(slot);
    else slots[free] = slot;
  }

  private swap(slots: Slots, from: string, to: string): void {
    const a = this.find(slots, from);
    if (!a) throw problem("The set with the given name does not exist");
    const b = this.find(slots, to);
    if (!b) throw problem("Sets cannot be swapped: the second set does not exist");
    if (a.set.family !== b.set.family) throw problem("The sets cannot be swapped: their type does not match");
    [a.set, b.set] = [b.set, a.set];
  }

  private destroy(namespace: string | undefined, slots: Slots, name: string, exist: boolean): void {
    const at = slots.findIndex((s) => s?.name === name);
    if (at === -1) {
      if (exist) return;
      throw problem("The set with the given name does not exist");
    }
    if (this.inUse(namespace, name)) throw problem("Set cannot be destroyed: it is in use by a kernel component");
    slots[at] = undefined;
  }

  /** `ipset restore`: see the class comment for which lines take effect when one fails. */
  private restore(slots: Slots, input: string, exist: boolean): void {
    let batch: { set: IpSet; adds: { line: number; text: string; prefix: number }[] } | undefined;
    const send = () => {
      const b = batch;
      batch = undefined;
      for (const add of b?.adds ?? []) {
        if (add.prefix === 0) throw problem("The value of the CIDR parameter of the IP address is invalid", add.line);
        if (b!.set.members.has(add.text)) {
          if (exist) continue;
          throw problem("Element cannot be added to the set: it's already added", add.line);
        }
        b!.set.members.add(add.text);
      }
    };
    const lines = input.split("\n");
    for (const [i, raw] of lines.entries()) {
      const line = i + 1;
      const words = raw.trim().split(/\s+/).filter(Boolean);
      if (words.length === 0 || words[0]!.startsWith("#")) continue;
      if (words.includes("-exist") || words.includes("-!")) throw new NotModelledError(`restore line ${JSON.stringify(raw)}`, "FakeIpset");
      const [cmd, ...rest] = words as [string, ...string[]];
      if (cmd === "create") {
        // Read first (a bad line drops the waiting adds), then sent after them.
        const { name, family } = this.parseCreate(rest, line);
        send();
        this.create(slots, name, family, exist, line);
      } else if (cmd === "flush") {
        if (rest.length !== 1) throw new NotModelledError(`restore line ${JSON.stringify(raw)}`, "FakeIpset");
        send();
        const s = this.find(slots, rest[0]!);
        if (!s) throw problem("The set with the given name does not exist", line);
        s.set.members.clear();
      } else if (cmd === "add") {
        if (rest.length === 0) throw usage("Missing mandatory argument to command add");
        if (rest.length === 1) throw usage("Missing second mandatory argument to command add");
        if (rest.length > 2) throw usage(`Unknown argument: \`${rest[2]}'`);
        // The tool asks the kernel for the set's type to read the element: a missing set is found here.
        const s = this.find(slots, rest[0]!);
        if (!s) throw problem("The set with the given name does not exist", line);
        const element = this.element(s.set, rest[1]!, line);
        if (batch?.set !== s.set) {
          send();
          batch = { set: s.set, adds: [] };
        }
        batch.adds.push({ line, ...element });
      } else if (OTHER_COMMANDS.has(cmd)) {
        throw new NotModelledError(`restore line ${JSON.stringify(raw)}`, "FakeIpset");
      } else {
        throw usage(`No command specified: unknown argument ${cmd}`);
      }
    }
    send();
  }

  /** An element of a `hash:net` set as the tool reads it; a /0 passes here and the kernel refuses it. */
  private element(set: IpSet, text: string, line: number | undefined): { text: string; prefix: number } {
    const [address, length, ...more] = text.split("/");
    const ip = parseIp(address!);
    if (!ip || more.length > 0 || (length !== undefined && !/^\d+$/.test(length))) {
      // The tool would resolve it as a host name.
      throw new NotModelledError(`element ${JSON.stringify(text)}`, "FakeIpset");
    }
    const family = set.family === "inet" ? 4 : 6;
    if (ip.family !== family) throw problem(`Syntax error: cannot parse ${text}: resolving to IPv${family} address failed`, line);
    const max = family === 4 ? 32 : 128;
    const prefix = length === undefined ? max : Number(length);
    if (prefix > max) throw problem(`Syntax error: '${length}' is out of range 0-${max}`, line);
    // hash:net keeps the network; a host prefix prints without its length.
    return { text: prefix === max ? ip.text : parseCidr(`${ip.text}/${prefix}`)!.text, prefix };
  }

  private nextSeed(): number {
    // Deterministic, but as varied as the kernel's random seeds look.
    return Math.imul(++this.seeds, 0x9e3779b1) >>> 0;
  }
}

function createOptions(set: IpSet): string {
  return `hash:net family ${set.family} hashsize 1024 maxelem 65536 bucketsize 12`;
}

/** The set names a rule line names with `--match-set` (negated or not; `--set` is its old name). */
function matchSets(line: string): string[] {
  return [...line.matchAll(/(?:^|\s)(?:--match-set|--set)\s+(\S+)/g)].map((m) => m[1]!);
}
