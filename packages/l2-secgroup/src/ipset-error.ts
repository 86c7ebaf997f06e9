import { ChainwardenError } from "@chainwarden/core";

/**
 * One or more ipsets could not be made or filled. Names the sets, what `ipset` said of each, and the
 * ports whose rules name them (`resources`, `port/<id>`): the agent holds those ports as the kernel
 * has them and retries them alone, while the rest of the namespace applies.
 */
export class IpsetError extends ChainwardenError {
  readonly sets: readonly string[];
  readonly resources: readonly string[];

  constructor(
    readonly failures: ReadonlyMap<string, Error>,
    options: { namespace?: string | undefined; resources?: readonly string[] } = {},
  ) {
    const first = [...failures][0];
    const more = failures.size > 1 ? ` (and ${failures.size - 1} more set${failures.size > 2 ? "s" : ""})` : "";
    super("COMMAND_FAILED", `ipset ${first?.[0]} could not be made: ${first?.[1].message}${more}`, {
      ...(options.namespace !== undefined ? { namespace: options.namespace } : {}),
      ...(first ? { cause: first[1] } : {}),
    });
    this.sets = [...failures.keys()];
    this.resources = options.resources ?? [];
  }
}
