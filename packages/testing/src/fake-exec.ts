import { CommandError, NamespaceGoneError, type AuxCommand, type ExecOptions, type ExecResult } from "@chainwarden/core";

/**
 * What a fake tool's `exec` returns or throws for a result, exactly as `ExecaRunner` settles the
 * real tool's: a non-zero exit throws `CommandError` (`NamespaceGoneError` when the namespace is
 * gone) unless `reject: false`, which returns it.
 */
export function settleExec(command: AuxCommand | string, args: readonly string[], options: ExecOptions, result: ExecResult): ExecResult {
  if (result.exitCode === 0 || options.reject === false) return result;
  if (options.namespace !== undefined && result.exitCode === 255 && result.stderr.startsWith("Cannot open network namespace")) {
    throw new NamespaceGoneError(options.namespace, result.stderr);
  }
  throw new CommandError([command, ...args], result.exitCode, result.stderr, { namespace: options.namespace });
}

export const execOk = (stdout = ""): ExecResult => ({ stdout, stderr: "", exitCode: 0 });
export const execFailed = (exitCode: number, stderr: string): ExecResult => ({ stdout: "", stderr, exitCode });
