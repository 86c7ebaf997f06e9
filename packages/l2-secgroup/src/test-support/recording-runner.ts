import type { AuxCommand, ExecOptions, ExecResult, IptablesRunner, RestoreOptions, SaveOptions, Target } from "@chainwarden/core";

/** Delegates to a real runner and records the aux commands it runs (for asserting conntrack/ipset calls). */
export class RecordingRunner implements IptablesRunner {
  /** Long-lived processes are not modelled here. */
  spawn(command: "node", args: readonly string[]): never {
    throw new Error(`spawn ${command} ${args.join(" ")} is not modelled by this fake`);
  }

  readonly calls: { command: AuxCommand; args: string[]; namespace: string | undefined }[] = [];

  constructor(private readonly inner: IptablesRunner) {}

  backend() {
    return this.inner.backend();
  }

  version() {
    return this.inner.version();
  }

  save(target: Target, options?: SaveOptions): Promise<string> {
    return this.inner.save(target, options);
  }

  restore(target: Target, input: string, options?: RestoreOptions): Promise<void> {
    return this.inner.restore(target, input, options);
  }

  exec(command: AuxCommand, args: readonly string[], options?: ExecOptions): Promise<ExecResult> {
    this.calls.push({ command, args: [...args], namespace: options?.namespace });
    return this.inner.exec(command, args, options);
  }

  /** The `conntrack` argument lists recorded since the last call. */
  takeConntrack(): string[][] {
    const out: string[][] = [];
    for (let i = 0; i < this.calls.length; ) {
      const c = this.calls[i]!;
      if (c.command === "conntrack") {
        out.push(c.args);
        this.calls.splice(i, 1);
      } else i++;
    }
    return out;
  }
}
