import { ChainwardenError, type ChainwardenErrorOptions } from "@chainwarden/core";

/** The `code` of an `L3NatError`: stable strings for callers and logs to branch on (e.g. `ROUTER_EXTENSION_FAILED` is a `RouterExtensionError`). */
export type L3NatErrorCode =
  | "ROUTER_EXTENSION_FAILED"
  | "ROUTER_DEVICES_MISSING"
  | "INTERFACE_DRIVER_UNKNOWN"
  | "ADDRESS_SCOPES_EXHAUSTED"
  | "METADATA_UPSTREAM_INVALID"
  | "METADATA_PROXY_MISSING"
  | "FLOATING_IP_ADDRESSES_FAILED";

/**
 * Errors of the l3 NAT plugin (`ChainwardenError`s): a stable `code`, the router (`resource`,
 * `router/<id>`) and the cause. The reconcile loop logs these fields, and holds the router it names
 * while the rest of its namespace applies.
 */
export class L3NatError extends ChainwardenError<L3NatErrorCode> {
  constructor(code: L3NatErrorCode, message: string, resource?: string, options: Pick<ChainwardenErrorOptions, "cause" | "namespace"> = {}) {
    super(code, message, { ...options, ...(resource !== undefined ? { resource } : {}) });
  }
}

/** A router extension's callback threw; names the extension. */
export class RouterExtensionError extends L3NatError {
  constructor(
    readonly extension: string,
    readonly callback: string,
    routerId: string,
    cause: unknown,
  ) {
    super("ROUTER_EXTENSION_FAILED", `router extension ${extension} failed in ${callback} for router ${routerId}: ${cause instanceof Error ? cause.message : String(cause)}`, `router/${routerId}`, { cause });
  }
}

/**
 * The interface driver could not provide some devices (`noop`: nobody created them yet). The router's
 * rules were applied regardless; throwing makes the loop retry the router with backoff.
 */
export class RouterDevicesMissingError extends L3NatError {
  constructor(
    readonly devices: readonly string[],
    routerId: string,
  ) {
    super("ROUTER_DEVICES_MISSING", `router ${routerId}: devices missing (${devices.join(", ")}); rules are applied, devices will be retried`, `router/${routerId}`);
  }
}

export class InterfaceDriverUnknownError extends L3NatError {
  constructor(name: string, known: readonly string[]) {
    super("INTERFACE_DRIVER_UNKNOWN", `plugin l3-nat: interface_driver ${JSON.stringify(name)} is not registered (registered: ${known.join(", ") || "none"})`);
  }
}

/** A line of a floating IP `ip -batch` that failed (line 0: the batch as a whole). */
export interface FloatingIpBatchFailure {
  readonly line: number;
  readonly command: string;
  /** What ip said for it. */
  readonly error: string;
}

/**
 * Floating IP addresses could not all be added to or removed from the gateway device, for another
 * reason than an address already there or already gone. Names the router's namespace and each
 * failing batch line; the cause is the `ip` command's `CommandError`.
 */
export class FloatingIpAddressError extends L3NatError {
  constructor(
    routerId: string,
    namespace: string,
    readonly failures: readonly FloatingIpBatchFailure[],
    cause: unknown,
  ) {
    const lines = failures.map((f) => (f.line === 0 ? `${f.command}: ${f.error}` : `line ${f.line} (${f.command}): ${f.error}`));
    super("FLOATING_IP_ADDRESSES_FAILED", `router ${routerId}: floating IP addresses in namespace ${namespace} failed: ${lines.join("; ")}`, `router/${routerId}`, { cause, namespace });
  }
}
