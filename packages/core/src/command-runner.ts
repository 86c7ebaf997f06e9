/**
 * The tools besides iptables that Chainwarden runs in a network namespace: `ip` (namespaces,
 * devices, addresses, routes, the link monitor), `ipset` and `conntrack`. Each has a runner
 * interface of its own, so that code which only manages ipsets takes an `IpsetRunner` and its tests
 * need only a fake ipset (the test kit's `FakeIpset`, `FakeConntrack`, `FakeIp`, each checked
 * against the real tool by a contract suite). `ExecaRunner` implements them all.
 *
 * Contract: `exec` runs the tool with the arguments (an array, never a shell), inside
 * `ip netns exec NS` when a namespace is named, with `input` on stdin; a non-zero exit throws
 * `CommandError` (`NamespaceGoneError` when the namespace is gone) unless `reject: false`, which
 * returns it.
 */

/** The tools a `CommandRunner` runs (`iptables`/`ip6tables` for diagnostics and tests only). */
export type AuxCommand = "ipset" | "conntrack" | "ip" | "iptables" | "ip6tables";

/** What a command printed and how it ended. */
export interface ExecResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** Where and how `CommandRunner.exec` runs a command. */
export interface ExecOptions {
  namespace?: string | undefined;
  input?: string;
  /** Do not throw on a non-zero exit; return it. */
  reject?: boolean;
}

/**
 * In the arguments of `CommandRunner.prepare`: the file the command reads its input from. The
 * runner puts a name there that the command can open (`conntrack -R <it>`); what `run` is given
 * arrives through it.
 */
export const PREPARED_INPUT = "<prepared input>";

/**
 * A command started before its input is known (`CommandRunner.prepare`): the process runs,
 * inside its namespace, with its binary loaded, and waits for its input.
 */
export interface PreparedCommand {
  /**
   * Gives the command its whole input, ends it and settles as `exec` would (with the `reject` and
   * `namespace` given to `prepare`). Once only; rejects after `cancel` or expiry.
   */
  run(input: string): Promise<ExecResult>;
  /**
   * Ends a command that was not run with an empty input (so only commands for which no input
   * means nothing to do may be prepared: `conntrack -R`, `ip -batch`); a no-op after `run`.
   */
  cancel(): void;
  /** True until `run`, `cancel` or expiry: whether `run` may still be called. */
  readonly waiting: boolean;
}

/** Options of `CommandRunner.prepare`. */
export interface PrepareOptions {
  namespace?: string | undefined;
  /** Do not throw on a non-zero exit; return it. */
  reject?: boolean;
  /**
   * A prepared command not run within this many milliseconds is cancelled (default 30,000): a
   * caller that never gets to run it leaves no process waiting.
   */
  expireMs?: number;
}

/** What `IpRunner.watch` reports while the command runs. */
export interface WatchOptions {
  namespace?: string | undefined;
  /** Each line the command prints on stdout, as soon as it is printed (without the newline). */
  onLine(line: string): void;
  /**
   * The command ended or could not start, without `stop` asking it to: a `CommandError` with its
   * exit status and the end of its stderr (`NamespaceGoneError` when the namespace is gone).
   */
  onExit?(error: Error): void;
}

/** A command started by `IpRunner.watch`. */
export interface WatchedCommand {
  /** Settles once the process runs; rejects (as `onExit` is told) when it cannot be started. */
  readonly started: Promise<void>;
  /** Ends the command (SIGTERM); nothing is reported after it. Idempotent. */
  stop(): void;
}

/** Runs one tool (`C`), one command at a time. */
export interface CommandRunner<C extends AuxCommand = AuxCommand> {
  /** Runs the tool with the arguments (never a shell), in the namespace when named; throws `CommandError` on a non-zero exit unless `reject: false`. */
  exec(command: C, args: readonly string[], options?: ExecOptions): Promise<ExecResult>;
  /**
   * Optional: starts a command now and gives it its input later, so that the start (entering the
   * namespace, loading the tool) is not paid once the input is ready. `args` name the input file
   * as `PREPARED_INPUT` (`["-R", PREPARED_INPUT]`). Without it, callers `exec` when ready.
   */
  prepare?(command: C, args: readonly string[], options?: PrepareOptions): PreparedCommand;
}

/** `ip`: namespaces, devices, addresses, routes; and the device monitor. */
export interface IpRunner extends CommandRunner<"ip"> {
  /**
   * Optional: starts a command that runs until `stop` (`ip -o monitor link`: the namespace's
   * device events) and reports its output line by line. The process ends with this one (it is
   * killed when this process exits). Without it, callers poll.
   */
  watch?(command: "ip", args: readonly string[], options: WatchOptions): WatchedCommand;
  /**
   * Optional: the names of the network devices in the namespace (the host's own: this process's).
   * Without it, callers read `ip -o link show`, which prints every device's details: slow with
   * thousands of devices, where a namespace's `/sys/class/net` is quick and our own is instant.
   */
  listLinks?(namespace?: string): Promise<string[]>;
}

/** `ipset`: the address sets security groups match against. */
export type IpsetRunner = CommandRunner<"ipset">;

/** `conntrack`: listing and deleting connection-tracking entries. */
export type ConntrackRunner = CommandRunner<"conntrack">;
