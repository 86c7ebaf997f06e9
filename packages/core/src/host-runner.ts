import type { AuxCommand, ExecOptions, ExecResult, PreparedCommand, PrepareOptions, WatchedCommand, WatchOptions } from "./command-runner.js";
import type { IptablesRunner } from "./iptables-runner.js";
import type { ProcessRunner } from "./process-runner.js";

/**
 * Every tool on a host: what `ExecaRunner` implements and what the agent hands to plugins. Code
 * takes the narrowest runner it uses (`IptablesRunner`, `IpRunner`, `IpsetRunner`,
 * `ConntrackRunner`, `ProcessRunner`, or an intersection of them), and a `HostRunner` is each of
 * those; a test builds one from the fakes of the tools the code under test runs.
 */
export interface HostRunner extends IptablesRunner, ProcessRunner {
  /** Runs `ip`, `ipset`, `conntrack` (or iptables for diagnostics) as `CommandRunner.exec` promises. */
  exec(command: AuxCommand, args: readonly string[], options?: ExecOptions): Promise<ExecResult>;
  /** Starts a command before its input is known (see `CommandRunner.prepare`); optional: callers fall back to `exec`. */
  prepare?(command: AuxCommand, args: readonly string[], options?: PrepareOptions): PreparedCommand;
  /** Runs `ip monitor`-style commands and reports their lines as printed (see `IpRunner.watch`); optional. */
  watch?(command: "ip", args: readonly string[], options: WatchOptions): WatchedCommand;
  /** The names of the network devices in a namespace (the host's when undefined); optional. */
  listLinks?(namespace?: string): Promise<string[]>;
}
