/**
 * Long-lived processes Chainwarden starts (the metadata proxy): only this Node.js binary running
 * one of our scripts, inside a namespace when one is named; the caller owns its lifetime.
 */
/** A long-lived child (a metadata proxy): Node's ChildProcess, with pipes on all three streams. */
export type SpawnedProcess = import("node:child_process").ChildProcess;

/** Options of `ProcessRunner.spawn`. */
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

/** Starts long-running processes (a metadata proxy) in a namespace, as argument arrays, never a shell. */
export interface ProcessRunner {
  /** Starts `node` with the arguments (an array, never a shell). */
  spawn(command: "node", args: readonly string[], options?: SpawnOptions): SpawnedProcess;
}
