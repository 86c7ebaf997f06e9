/**
 * The iptables tools (`iptables-save`, `iptables-restore` and their IPv6 twins), the one runner
 * the rule engine needs. The production implementation is `ExecaRunner`; the test kit's
 * `FakeIptablesRunner` implements the same contract in memory and is checked against the real
 * tools by one shared contract suite. The other tools Chainwarden runs have runners of their own
 * (`IpRunner`, `IpsetRunner`, `ConntrackRunner`, `ProcessRunner`; `HostRunner` is all of them).
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
 */
import { BackendUnavailableError } from "./errors.js";

/** The address family of an iptables tool: 4 (`iptables`) or 6 (`ip6tables`). */
export type IpFamily = 4 | 6;
/** The iptables flavour: `nft` (iptables-nft, nf_tables) or `legacy` (x_tables, the xtables lock). */
export type Backend = "nft" | "legacy";
/** A configured backend: one of `Backend`, or `auto` (whichever `iptables` on the host is). */
export type BackendChoice = Backend | "auto";

/** Where a command runs: the host's own namespace when `namespace` is undefined. */
export interface Target {
  namespace?: string | undefined;
  family: IpFamily;
}

/** Options of `IptablesRunner.save`. */
export interface SaveOptions {
  /** Only this table. */
  table?: string;
  /** Include `[packets:bytes]` counters (`-c`). */
  counters?: boolean;
}

/** Options of `IptablesRunner.restore` and `restoreStream`. */
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

/** The iptables tools' version and what it supports (`IptablesRunner.version`). */
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

/** The iptables tools of one host, as the contract at the top of this file says. */
export interface IptablesRunner {
  /** The backend this runner drives (resolves `auto` on first use). */
  backend(): Promise<Backend>;
  /** `iptables-save` (or `ip6tables-save`) of the target's namespace: the whole ruleset, or one table. */
  save(target: Target, options?: SaveOptions): Promise<string>;
  /** `iptables-restore --noflush` of the input in the target's namespace; throws the typed errors of the contract above. */
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
  /** The tools' version and features, read once and cached. */
  version(): Promise<IptablesVersion>;
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
