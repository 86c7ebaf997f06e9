import { ChainwardenError, type ChainwardenErrorOptions } from "@chainwarden/core";

export type NeutronRpcErrorCode = "NEUTRON_RPC_BAD_ANSWER" | "NEUTRON_RPC_CONFIG";

/**
 * Something about talking to neutron-server: an answer that is not what the API promises (a
 * server too old or too new), or settings that cannot work (no `transport_url`, no host).
 */
export class NeutronRpcError extends ChainwardenError<NeutronRpcErrorCode> {
  constructor(code: NeutronRpcErrorCode, message: string, options: ChainwardenErrorOptions = {}) {
    super(code, message, options);
  }
}

/** A short, safe rendering of an unexpected answer for a message. */
export function describeAnswer(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 120 ? `${text.slice(0, 120)}…` : text;
}

/** No connection to the broker within a call's timeout (the broker is away, or the URL is wrong). */
export class NotConnectedError extends ChainwardenError<"RPC_TIMEOUT"> {
  constructor(what: string, timeoutMs: number) {
    super("RPC_TIMEOUT", `${what}: not connected to the message broker within ${timeoutMs} ms (it keeps trying)`);
  }
}
