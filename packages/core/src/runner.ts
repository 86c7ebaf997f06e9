/**
 * The one seam between Chainwarden and the host: every external command goes through an
 * `IptablesRunner`. The production implementation (`ExecaRunner`) runs the tools with execa,
 * argument arrays only, prefixed by `ip netns exec NS` when a namespace is named; the test kit's
 * `FakeIptablesRunner` implements the same contract in memory and is checked against the real
 * tools by one shared contract suite.
 *
 * Contract (both implementations):
 * - `save` returns `iptables-save` output for the family (optionally one table, optionally with
 *   `[packets:bytes]` counters).
 * - `restore` feeds the input to `iptables-restore --noflush` (plus `-w` when supported). Each table
 *   block is atomic (the tool commits per `COMMIT`): on failure the failing table is unchanged, earlier
 *   tables of the same input are applied, and it throws `RestoreError` (with the failing line when
 *   the tool named it), `XtablesLockError` (exit 4, lock held), `ResourceProblemError` (exit 4,
 *   anything else) or `NamespaceGoneError`.
 * - `restoreStream` (optional) is `restore` with the input given in pieces while the tool already
 *   reads it: the same command, the same errors, settled by `end()` for everything written.
 * - `exec` runs one of the other tools Chainwarden needs (ipset, conntrack, ip) in the namespace.
 * - `watch` (optional) runs one of them for as long as the caller wants (`ip -o monitor link`) and
 *   hands over each line it prints as it prints it.
 * - `listLinks` (optional) names the namespace's network devices.
 */
import { BackendUnavailableError } from "./errors.js";

export type IpFamily = 4 | 6;
export type Backend = "nft" | "legacy";
export type BackendChoice = Backend | "auto";

/** Where a command runs: the host's own namespace when `namespace` is undefined. */
export interface Target {
  namespace?: string | undefined;
  family: IpFamily;
}

export interface SaveOptions {
  /** Only this table. */
  table?: string;
  /** Include `[packets:bytes]` counters (`-c`). */
  counters?: boolean;
}

export interface RestoreOptions {
  /**
   * Seconds to wait for the xtables lock inside the tool (`-w N`). Ignored when the binary does not
   * support `-w`.
   */
  lockWaitSeconds?: number;
  /**
   * A hold of the host's xtables lock this process has taken (`IptablesRunner.holdXtablesLock`): the
   * tool then takes a lock file of its own family instead of the host's, so that it runs beside the
   * other family's restore. Only for restores of one namespace's two families, one of each at a time.
   */
  underHold?: XtablesLockHold;
}

/**
 * The host's xtables lock, held by this process (`IptablesRunner.holdXtablesLock`) until `release`.
 */
export interface XtablesLockHold {
  /** The lock file held: `/run/xtables.lock`, or what `XTABLES_LOCKFILE` names. */
  readonly path: string;
  /** Lets the lock go. Idempotent. */
  release(): void;
}

export interface IptablesVersion {
  /** e.g. "1.8.9" */
  version: string;
  major: number;
  minor: number;
  patch: number;
  backend: Backend;
  /** iptables-restore accepts `-w` (1.6.2 and later). */
  supportsWait: boolean;
  /** SNAT/MASQUERADE accept `--random-fully` (1.6.2 and later). */
  supportsRandomFully: boolean;
}

export type AuxCommand = "ipset" | "conntrack" | "ip" | "iptables" | "ip6tables";

export interface ExecResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export interface ExecOptions {
  namespace?: string | undefined;
  input?: string;
  /** Do not throw on a non-zero exit; return it. */
  reject?: boolean;
}

/** A long-lived child (a metadata proxy): Node's ChildProcess, with pipes on all three streams. */
export type SpawnedProcess = import("node:child_process").ChildProcess;

export interface SpawnOptions {
  namespace?: string | undefined;
  env?: Record<string, string>;
  /**
   * Start it as a daemon that outlives this process (a metadata proxy, as Neutron's haproxy): in a
   * session of its own, stdin from /dev/null, stdout and stderr appended to `logFile` (created with
   * mode 0640 if missing), not killed when this process exits and not keeping its event loop alive.
   * The returned process has no pipes; it reports its exit while this process lives.
   */
  detached?: { logFile: string };
}

/**
 * One `iptables-restore` fed while it runs (`IptablesRunner.restoreStream`). The tool parses each
 * line as it arrives and commits at `COMMIT`, so a producer that writes as it computes has the
 * tool's parsing done by the time it has finished.
 */
export interface RestoreStream {
  /**
   * Appends input. Never throws: a tool that stopped reading reports through `end()`. What the
   * tool has not taken yet is fed to it while the caller's event loop runs.
   */
  write(text: string): void;
  /** Ends the input and settles as `restore` would for the whole input written. */
  end(): Promise<void>;
}

/**
 * In the arguments of `IptablesRunner.prepare`: the file the command reads its input from. The
 * runner puts a name there that the command can open (`conntrack -R <it>`); what `run` is given
 * arrives through it.
 */
export const PREPARED_INPUT = "<prepared input>";

/**
 * A command started before its input is known (`IptablesRunner.prepare`): the process runs,
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

/** What `IptablesRunner.watch` reports while the command runs. */
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

/** A command started by `IptablesRunner.watch`. */
export interface WatchedCommand {
  /** Settles once the process runs; rejects (as `onExit` is told) when it cannot be started. */
  readonly started: Promise<void>;
  /** Ends the command (SIGTERM); nothing is reported after it. Idempotent. */
  stop(): void;
}

export interface IptablesRunner {
  /** The backend this runner drives (resolves `auto` on first use). */
  backend(): Promise<Backend>;
  save(target: Target, options?: SaveOptions): Promise<string>;
  restore(target: Target, input: string, options?: RestoreOptions): Promise<void>;
  /** Optional: a restore whose input is written while it runs. Without it, callers send whole inputs. */
  restoreStream?(target: Target, options?: RestoreOptions): RestoreStream;
  /**
   * Optional: takes the host-wide xtables lock for this process. The legacy tools hold that one lock
   * for any table of either family, so a namespace's IPv4 and IPv6 restores (separate kernel
   * tables, nothing to protect from each other) otherwise only take turns. While held, restores
   * given `underHold` run under lock files of their own (`XTABLES_LOCKFILE`) side by side, and every
   * other xtables user still waits for us as before. Undefined when there is nothing to gain or it
   * cannot be done: nf_tables (its tools take no lock), or tools that do not honour
   * `XTABLES_LOCKFILE` or do not use the lock file this runner would hold (checked once). Throws
   * `XtablesLockError`, naming the holder when it can be found, when the lock is not free within
   * `waitSeconds` (default: the runner's lock wait).
   */
  holdXtablesLock?(options?: { waitSeconds?: number }): Promise<XtablesLockHold | undefined>;
  /** Optional: why `holdXtablesLock` gives nothing with these tools, once that is known (for the log). */
  readonly holdRefusal?: string | undefined;
  version(): Promise<IptablesVersion>;
  exec(command: AuxCommand, args: readonly string[], options?: ExecOptions): Promise<ExecResult>;
  /**
   * Optional: starts a command now and gives it its input later, so that the start (entering the
   * namespace, loading the tool) is not paid once the input is ready. `args` name the input file
   * as `PREPARED_INPUT` (`["-R", PREPARED_INPUT]`). Without it, callers `exec` when ready.
   */
  prepare?(command: AuxCommand, args: readonly string[], options?: PrepareOptions): PreparedCommand;
  /**
   * Optional: starts a command that runs until `stop` (`ip -o monitor link`: the namespace's
   * device events) and reports its output line by line. The process ends with this one (it is
   * killed when this process exits). Without it, callers poll.
   */
  watch?(command: AuxCommand, args: readonly string[], options: WatchOptions): WatchedCommand;
  /**
   * Optional: the names of the network devices in the namespace (the host's own: this process's).
   * Without it, callers read `ip -o link show`, which prints every device's details: ~50 ms at
   * 4,000 devices, against ~11 ms for a namespace's `/sys/class/net` and ~0 for our own.
   */
  listLinks?(namespace?: string): Promise<string[]>;
  /**
   * Starts a long-lived process (only `node`, i.e. this Node.js binary running one of our scripts),
   * inside the namespace when one is named; the caller owns its lifetime.
   */
  spawn(command: "node", args: readonly string[], options?: SpawnOptions): SpawnedProcess;
}

/** Parses `iptables v1.8.9 (nf_tables)` / `iptables-restore v1.8.9 (legacy)`. */
export function parseIptablesVersion(text: string, fallbackBackend: Backend): IptablesVersion {
  const m = /v(\d+)\.(\d+)(?:\.(\d+))?(?:\s+\((nf_tables|legacy)\))?/.exec(text);
  if (!m) throw new BackendUnavailableError(`cannot parse iptables version from ${JSON.stringify(text.trim())}`);
  const major = Number(m[1]);
  const minor = Number(m[2]);
  const patch = Number(m[3] ?? 0);
  const backend: Backend = m[4] === "nf_tables" ? "nft" : m[4] === "legacy" ? "legacy" : fallbackBackend;
  const atLeast = (a: number, b: number, c: number) =>
    major !== a ? major > a : minor !== b ? minor > b : patch >= c;
  return {
    version: `${major}.${minor}.${patch}`,
    major,
    minor,
    patch,
    backend,
    supportsWait: atLeast(1, 6, 2),
    supportsRandomFully: atLeast(1, 6, 2),
  };
}
