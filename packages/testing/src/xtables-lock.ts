import { spawn } from "node:child_process";
import { runCommand } from "./run-command.js";

/** A lock held by a `flock` child process this module started. */
export interface HeldXtablesLock {
  /** Settles when the holder has exited (the lock is free). */
  readonly released: Promise<void>;
  /** Ends the holder now (its whole process group: flock and its sleep). */
  release(): Promise<void>;
}

/**
 * Holds the xtables lock file `lockFile` for `durationMs`, as another iptables user would: runs
 * `flock -o FILE sleep SECONDS` and resolves once the lock is taken. Point the runner under test at
 * the same file with `XTABLES_LOCKFILE`; never use the host's `/run/xtables.lock`.
 */
export async function holdXtablesLock(lockFile: string, durationMs: number): Promise<HeldXtablesLock> {
  // -o: only flock holds the lock, not its `sleep` (which would inherit the descriptor): so the lock
  // is free exactly when flock has exited, which is what `released` reports. Without it a release
  // could resolve while the killed sleep still held the lock for a moment.
  const child = spawn("flock", ["-o", lockFile, "sleep", (durationMs / 1000).toFixed(3)], { stdio: "ignore", detached: true });
  const released = new Promise<void>((resolve) => {
    child.on("exit", () => resolve());
    child.on("error", () => resolve());
  });
  const release = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
    await released;
  };
  // Held once a non-blocking attempt of our own reports the conflict (exit code chosen with -E).
  const deadline = Date.now() + 5000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`flock ${lockFile} exited before taking the lock`);
    const probe = await runCommand(["flock", "-n", "-E", "75", lockFile, "true"], { reject: false });
    if (probe.exitCode === 75) break;
    if (Date.now() > deadline) {
      await release();
      throw new Error(`flock did not take ${lockFile} within 5s`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return { released, release };
}
