import type { AuxCommand, ExecOptions, ExecResult } from "./command-runner.js";
import type { HostRunner } from "./host-runner.js";
import type { Backend, IptablesVersion, RestoreOptions, SaveOptions, Target, XtablesLockHold } from "./iptables-runner.js";
import type { SpawnedProcess, SpawnOptions } from "./process-runner.js";

/**
 * A `HostRunner` that passes every call to another one. Extend it and override the calls you
 * want to watch or change — timing restores, recording conntrack commands, a fake host that models
 * `ip` itself — instead of writing the other five delegations again.
 *
 * `restoreStream`, `prepare`, `watch` and `listLinks` (optional) are not passed on: a subclass that
 * watches `restore` or `exec` would not see them, so callers fall back to whole inputs, plain
 * commands, polling and `ip -o link show`. A subclass that wants them defines them.
 * `holdXtablesLock` (and `holdRefusal`) are passed on when the inner runner has it: the restores
 * it lets run side by side still come through `restore`.
 */
export class ForwardingRunner<R extends HostRunner = HostRunner> implements HostRunner {
  constructor(protected readonly inner: R) {}

  backend(): Promise<Backend> {
    return this.inner.backend();
  }

  version(): Promise<IptablesVersion> {
    return this.inner.version();
  }

  save(target: Target, options?: SaveOptions): Promise<string> {
    return this.inner.save(target, options);
  }

  restore(target: Target, input: string, options?: RestoreOptions): Promise<void> {
    return this.inner.restore(target, input, options);
  }

  holdXtablesLock(options?: { waitSeconds?: number }): Promise<XtablesLockHold | undefined> {
    return this.inner.holdXtablesLock ? this.inner.holdXtablesLock(options) : Promise.resolve(undefined);
  }

  get holdRefusal(): string | undefined {
    return this.inner.holdRefusal;
  }

  exec(command: AuxCommand, args: readonly string[], options?: ExecOptions): Promise<ExecResult> {
    return this.inner.exec(command, args, options);
  }

  spawn(command: "node", args: readonly string[], options?: SpawnOptions): SpawnedProcess {
    return this.inner.spawn(command, args, options);
  }
}
