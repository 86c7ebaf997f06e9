/**
 * What this package needs of an oslo.messaging connection, and no more: Neutron's APIs here are
 * written against it, the plugins hand them `@chainwarden/oslo-messaging`'s connection.
 */

/** Where a message goes, in oslo.messaging's terms. */
export interface RpcTarget {
  topic: string;
  /** The per-host topic `<topic>.<server>`. */
  server?: string;
  /** A cast to every consumer of the topic (`<topic>_fanout`). */
  fanout?: boolean;
  /** The API version the call needs (the server refuses a version it does not have). */
  version?: string;
  namespace?: string;
}

/** Methods a server may call or cast to us, by name; each gets the message's keyword arguments. */
export type RpcEndpoints = Record<string, (args: Record<string, unknown>) => unknown>;

export interface RpcTransport {
  call<T = unknown>(target: RpcTarget, method: string, args: Record<string, unknown>, options?: { timeoutMs?: number }): Promise<T>;
  cast(target: RpcTarget, method: string, args: Record<string, unknown>): Promise<void>;
  /**
   * Consumes `<topic>`, `<topic>.<server>` and `<topic>_fanout` and dispatches to `endpoints`
   * (served as API `version`: requests for the same major and an older minor are taken), across
   * reconnects. Resolves once registered, not once connected: a broker that is away must not hold
   * the agent's start.
   */
  serve(target: { topic: string; server: string; version: string }, endpoints: RpcEndpoints): Promise<void>;
  /** Called after every reconnect, once the consumers are back: what was sent meanwhile is lost, so resync in full. */
  onReconnected(listener: () => void): void;
  /**
   * Whether it is connected to the message broker now (for `/readyz`); undefined, or absent (a
   * test's transport): it does not know.
   */
  connected?(): boolean | undefined;
  close(): Promise<void>;
}

/** Whether a call failed because no answer came in time (the server may just be slow: ask for less). */
export function isRpcTimeout(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && code.endsWith("TIMEOUT");
}
