import type {
  AuxCommand,
  Backend,
  ExecOptions,
  ExecResult,
  HostRunner,
  IptablesVersion,
  PreparedCommand,
  PrepareOptions,
  RestoreOptions,
  RestoreStream,
  SaveOptions,
  SpawnedProcess,
  Target,
  WatchedCommand,
  WatchOptions,
  XtablesLockHold,
} from "@chainwarden/core";
import { FakeConntrack } from "./fake-conntrack.js";
import { FakeIp } from "./fake-ip.js";
import { FakeIpset } from "./fake-ipset.js";
import { FakeIptablesRunner, type FakeIptablesRunnerOptions } from "./fake-iptables-runner.js";
import { FakeNetns } from "./fake-netns.js";
import { NotModelledError } from "./not-modelled-error.js";

/** Options of `FakeHost`: the iptables variant, the namespaces that exist, and each fake tool's optional features (all on by default). */
export interface FakeHostOptions {
  /** Which iptables 1.8.9 variant (default nft). */
  variant?: Backend;
  /** Network namespaces that exist from the start (the host's always does). */
  namespaces?: readonly string[];
  /** More options of the fake iptables (`restoreStream: false`, lock waits, ...). */
  iptables?: Omit<FakeIptablesRunnerOptions, "variant" | "namespaces" | "netns" | "setExists">;
  /** `watch: false` / `listLinks: false`: a runner without the device monitor or the quick listing. */
  ip?: { watch?: boolean; listLinks?: boolean };
  /** `prepare: false` (no prepared commands) or `"cannot-start"`. */
  conntrack?: { prepare?: boolean | "cannot-start" };
}

/** One thing that happened on the host, in order (`FakeHost.events`). */
export interface FakeHostEvent {
  namespace: string | undefined;
  /** `restore` (with its family), or the tool that ran. */
  what: "restore" | AuxCommand;
  family?: 4 | 6;
  args?: string[];
  /** What the command read: an exec's input, or a prepared command's at `run`. */
  input?: string;
  /** A prepared command given its input (`run`) or dropped unrun (`cancel`); its `prepare` has no step. */
  step?: "run" | "cancel";
}

/**
 * A whole fake host behind `HostRunner`, for tests of code that runs several tools (an agent, a
 * plugin): the honest fake of each tool (`iptables`, `ip`, `ipset`, `conntrack`, each checked
 * against the real one by its contract suite) on one `FakeNetns`, wired as the kernel ties them:
 * a namespace deleted by one is gone for all, an iptables rule naming a missing ipset is refused,
 * a set a rule names cannot be destroyed. `exec` goes to the tool's fake; `spawn` is not modelled
 * (a test that needs a process runs it for real). `events` keeps restores and commands, with what
 * they read (a batch's lines), and a prepared command's start, run and cancel, in the order they
 * happened, for tests of ordering (a cleanup after the rules).
 */
export class FakeHost implements HostRunner {
  readonly netns: FakeNetns;
  readonly iptables: FakeIptablesRunner;
  readonly ip: FakeIp;
  readonly ipset: FakeIpset;
  readonly conntrack: FakeConntrack;
  readonly events: FakeHostEvent[] = [];

  readonly restoreStream?: (target: Target, options?: RestoreOptions) => RestoreStream;
  readonly prepare?: (command: AuxCommand, args: readonly string[], options?: PrepareOptions) => PreparedCommand;
  readonly watch?: (command: "ip", args: readonly string[], options: WatchOptions) => WatchedCommand;
  readonly listLinks?: (namespace?: string) => Promise<string[]>;

  constructor(options: FakeHostOptions = {}) {
    this.netns = new FakeNetns(options.namespaces ?? []);
    let ipset: FakeIpset | undefined;
    this.iptables = new FakeIptablesRunner({
      ...options.iptables,
      variant: options.variant ?? "nft",
      netns: this.netns,
      setExists: (namespace, name) => ipset!.has(namespace, name),
    });
    this.ipset = ipset = new FakeIpset({ netns: this.netns, inUse: FakeIpset.referencedBy(this.iptables) });
    this.ip = new FakeIp({ netns: this.netns, ...options.ip });
    this.conntrack = new FakeConntrack({ netns: this.netns, ...options.conntrack });

    const stream = this.iptables.restoreStream;
    if (stream) {
      this.restoreStream = (target, opts) => {
        this.events.push({ namespace: target.namespace, what: "restore", family: target.family });
        return stream(target, opts);
      };
    }
    const prepare = this.conntrack.prepare;
    if (prepare) {
      this.prepare = (command, args, opts) => {
        if (command !== "conntrack") throw new NotModelledError(`prepare(${JSON.stringify([command, ...args].join(" "))})`, "FakeHost");
        const event = { namespace: opts?.namespace, what: command, args: [...args] };
        this.events.push(event);
        const prepared = prepare(command, args, opts);
        return {
          run: (input) => {
            if (prepared.waiting) this.events.push({ ...event, input, step: "run" });
            return prepared.run(input);
          },
          cancel: () => {
            if (prepared.waiting) this.events.push({ ...event, step: "cancel" });
            prepared.cancel();
          },
          get waiting() {
            return prepared.waiting;
          },
        };
      };
    }
    const watch = this.ip.watch;
    if (watch) this.watch = (command, args, opts) => watch(command, args, opts);
    const listLinks = this.ip.listLinks;
    if (listLinks) this.listLinks = (namespace) => listLinks(namespace);
  }

  /** The commands one tool ran in a namespace, as argument lists, in order (a prepared one once). */
  commandsIn(namespace: string | undefined, tool: AuxCommand): string[][] {
    return this.events.filter((e) => e.what === tool && e.namespace === namespace && e.step === undefined).map((e) => e.args!);
  }

  // ---- HostRunner ------------------------------------------------------------------------------

  backend(): Promise<Backend> {
    return this.iptables.backend();
  }

  version(): Promise<IptablesVersion> {
    return this.iptables.version();
  }

  save(target: Target, options?: SaveOptions): Promise<string> {
    return this.iptables.save(target, options);
  }

  restore(target: Target, input: string, options?: RestoreOptions): Promise<void> {
    this.events.push({ namespace: target.namespace, what: "restore", family: target.family });
    return this.iptables.restore(target, input, options);
  }

  holdXtablesLock(options?: { waitSeconds?: number }): Promise<XtablesLockHold | undefined> {
    return this.iptables.holdXtablesLock(options);
  }

  exec(command: AuxCommand, args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    this.events.push({ namespace: options.namespace, what: command, args: [...args], ...(options.input !== undefined ? { input: options.input } : {}) });
    switch (command) {
      case "ip":
        return this.ip.exec(command, args, options);
      case "ipset":
        return this.ipset.exec(command, args, options);
      case "conntrack":
        return this.conntrack.exec(command, args, options);
      case "iptables":
      case "ip6tables":
        return this.iptables.exec(command, args, options);
    }
  }

  spawn(command: "node", args: readonly string[]): SpawnedProcess {
    throw new NotModelledError(`spawn ${command} ${args.join(" ")}`, "FakeHost");
  }
}
