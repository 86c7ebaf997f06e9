import { spawn } from "node:child_process";

/** Options of `runCommand`: stdin input, whether a non-zero exit throws (default true), and environment added to the process's (with `LC_ALL=C`). */
export interface RunOptions {
  /** Written to the command's stdin (stdin is closed either way). */
  input?: string;
  /** Throw on a non-zero exit (default true). */
  reject?: boolean;
  /** Added to this process's environment (after `LC_ALL=C`, so it may override that). */
  env?: Record<string, string>;
}

/** A finished command's output and exit code (128 + n when a signal killed it); non-zero only when `reject: false`. */
export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/**
 * Runs one command from an argument array (never a shell) and collects its output. A command that
 * cannot start always throws; a non-zero exit throws unless `reject` is false.
 */
export function runCommand(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const [file, ...args] = argv;
  if (file === undefined) return Promise.reject(new Error("runCommand: empty argv"));
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, LC_ALL: "C", ...options.env },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      const exitCode = code ?? 128 + (signal ? signalNumber(signal) : 0);
      if (exitCode !== 0 && options.reject !== false) {
        reject(new Error(`${argv.join(" ")} failed (exit ${exitCode}): ${stderr.trim()}`));
      } else {
        resolve({ stdout, stderr, exitCode });
      }
    });
    child.stdin.on("error", () => {
      // The command may exit before reading its input (EPIPE); its exit status tells what happened.
    });
    child.stdin.end(options.input ?? "");
  });
}

function signalNumber(signal: NodeJS.Signals): number {
  const numbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };
  return numbers[signal] ?? 0;
}
