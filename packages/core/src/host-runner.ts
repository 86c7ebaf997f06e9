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
  exec(command: AuxCommand, args: readonly string[], options?: ExecOptions): Promise<ExecResult>;
  prepare?(command: AuxCommand, args: readonly string[], options?: PrepareOptions): PreparedCommand;
  watch?(command: "ip", args: readonly string[], options: WatchOptions): WatchedCommand;
  listLinks?(namespace?: string): Promise<string[]>;
}
