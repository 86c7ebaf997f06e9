import type { RpcContext } from "./envelope.js";
import { NoSuchMethodError, UnsupportedVersionError } from "./oslo-messaging-errors.js";
import { versionIsCompatible } from "./rpc-version.js";

/** What an endpoint method learns about the request besides the context and arguments. */
export interface RpcRequest {
  method: string;
  /** The request's namespace, `null` for oslo's null namespace. */
  namespace: string | null;
  /** The version the caller asked for (`1.0` when it named none). */
  version: string;
  /** The routing key it came with: `<topic>`, `<topic>.<server>`, or `<topic>` for a fanout cast. */
  routingKey: string;
  /** Whether the caller waits for a reply (a call) or not (a cast, fanout or not). */
  isCall: boolean;
  fanout: boolean;
}

/**
 * An endpoint method: the caller's keyword arguments by name; what it returns (or resolves to) is
 * the reply, JSON-encoded; what it throws is sent as a failure (see `RpcFailure`).
 */
export type RpcMethod = (context: RpcContext, args: Record<string, unknown>, request: RpcRequest) => unknown;

/**
 * A set of methods served under one oslo `Target` (namespace and version), as an endpoint object of
 * a Python RPC server. Neutron's l3 agent, for instance, serves its notifications as version `1.4`
 * in the null namespace.
 */
export interface RpcEndpoint {
  /** The endpoint's namespace; absent or `null`: the null namespace (requests that name none). */
  namespace?: string | null;
  /** Namespaces also accepted (oslo's `legacy_namespaces`, for renames during rolling upgrades). */
  legacyNamespaces?: readonly (string | null)[];
  /** The `major.minor` version implemented; requests for the same major and an older or equal minor are served. Default `1.0`. */
  version?: string;
  methods: Readonly<Record<string, RpcMethod>>;
}

/**
 * oslo's `RPCDispatcher` with its default access policy: the first endpoint whose namespace and
 * version accept the request and that has the method serves it; a method whose name starts with
 * `_` is never served. Throws `NoSuchMethodError` when compatible endpoints exist but none has the
 * method, `UnsupportedVersionError` when none is compatible.
 */
export function findMethod(endpoints: readonly RpcEndpoint[], method: string, namespace: string | null, version: string): RpcMethod {
  let foundCompatible = false;
  for (const endpoint of endpoints) {
    const accepted = [endpoint.namespace ?? null, ...(endpoint.legacyNamespaces ?? [])];
    if (!accepted.includes(namespace) || !versionIsCompatible(endpoint.version ?? "1.0", version)) continue;
    foundCompatible = true;
    if (!method.startsWith("_") && Object.hasOwn(endpoint.methods, method)) {
      const fn = endpoint.methods[method];
      if (typeof fn === "function") return fn;
    }
  }
  if (foundCompatible) throw new NoSuchMethodError(method);
  throw new UnsupportedVersionError(version, method);
}
