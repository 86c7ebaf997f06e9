import { ForwardingRunner, type AuxCommand, type ExecOptions, type ExecResult } from "@chainwarden/core";

/** Delegates to a real runner and records the aux commands it runs (for asserting conntrack/ipset calls). */
export class RecordingRunner extends ForwardingRunner {
  readonly calls: { command: AuxCommand; args: string[]; namespace: string | undefined }[] = [];

  override exec(command: AuxCommand, args: readonly string[], options?: ExecOptions): Promise<ExecResult> {
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
