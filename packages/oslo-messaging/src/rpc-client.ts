import type { RpcContext } from "./envelope.js";
import type { CallOptions, CastOptions, RpcTarget, RpcTransport } from "./rpc-transport.js";

/** What a client applies to every call and cast unless the call says otherwise. */
export interface ClientDefaults {
  timeoutMs?: number;
  /** A context, or a function making a fresh one per message (neutron: a new `request_id` each time). */
  context?: RpcContext | (() => RpcContext);
  callMonitorTimeoutMs?: number;
}

/** `prepare()`'s overrides: target fields and defaults. */
export type PrepareOptions = Partial<RpcTarget> & ClientDefaults;

/**
 * oslo's `RPCClient`: a target and defaults bound once, varied per call with `prepare()` as neutron's
 * agent-side APIs do (`client.prepare({ version: "1.9" }).call("get_router_ids", { host })`).
 */
export class RpcClient {
  constructor(
    private readonly transport: RpcTransport,
    readonly target: Readonly<RpcTarget>,
    readonly defaults: Readonly<ClientDefaults> = {},
  ) {}

  /** A client with some target fields (version, server, fanout, namespace, ...) or defaults replaced. */
  prepare(options: PrepareOptions): RpcClient {
    const { timeoutMs, context, callMonitorTimeoutMs, ...target } = options;
    const defaults: ClientDefaults = { ...this.defaults };
    if (timeoutMs !== undefined) defaults.timeoutMs = timeoutMs;
    if (context !== undefined) defaults.context = context;
    if (callMonitorTimeoutMs !== undefined) defaults.callMonitorTimeoutMs = callMonitorTimeoutMs;
    return new RpcClient(this.transport, { ...this.target, ...target }, defaults);
  }

  call<T = unknown>(method: string, args: Record<string, unknown> = {}, options: CallOptions = {}): Promise<T> {
    const callOptions: CallOptions = { ...options };
    const timeoutMs = options.timeoutMs ?? this.defaults.timeoutMs;
    if (timeoutMs !== undefined) callOptions.timeoutMs = timeoutMs;
    const monitor = options.callMonitorTimeoutMs ?? this.defaults.callMonitorTimeoutMs;
    if (monitor !== undefined) callOptions.callMonitorTimeoutMs = monitor;
    const context = options.context ?? this.context();
    if (context !== undefined) callOptions.context = context;
    return this.transport.call<T>(this.target, method, args, callOptions);
  }

  cast(method: string, args: Record<string, unknown> = {}, options: CastOptions = {}): Promise<void> {
    const castOptions: CastOptions = { ...options };
    const timeoutMs = options.timeoutMs ?? this.defaults.timeoutMs;
    if (timeoutMs !== undefined) castOptions.timeoutMs = timeoutMs;
    const context = options.context ?? this.context();
    if (context !== undefined) castOptions.context = context;
    return this.transport.cast(this.target, method, args, castOptions);
  }

  private context(): RpcContext | undefined {
    const context = this.defaults.context;
    return typeof context === "function" ? context() : context;
  }
}
