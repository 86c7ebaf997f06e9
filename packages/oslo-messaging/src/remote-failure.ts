import { isObject } from "./envelope.js";
import { NoSuchMethodError, RemoteError, RpcFailure, UnsupportedVersionError } from "./oslo-messaging-errors.js";

/** The module JavaScript errors are reported from; not an importable Python module, so Python clients raise `RemoteError`. */
export const JAVASCRIPT_MODULE = "chainwarden";

const DISPATCHER_MODULE = "oslo_messaging.rpc.dispatcher";

/** The failure fields of oslo.messaging's `serialize_remote_exception`. */
export interface RemoteFailure {
  class: string;
  module: string;
  message: string;
  tb: string[];
  args: unknown[];
  kwargs: Record<string, unknown>;
}

/**
 * An endpoint's error as the `failure` string of a reply (`serialize_remote_exception`): JSON with
 * the exception's class, module, message, traceback lines and constructor arguments. An `RpcFailure`
 * names its Python class; dispatch errors are oslo's own (`NoSuchMethod`, `UnsupportedVersion` of
 * `oslo_messaging.rpc.dispatcher`); a `RemoteError` from a nested call is passed on as it came; any
 * other error is its JavaScript class in module `chainwarden`.
 */
export function serializeFailure(error: unknown): string {
  return JSON.stringify(failureOf(error));
}

export function failureOf(error: unknown): RemoteFailure {
  if (error instanceof RpcFailure) {
    return { class: error.className, module: error.module, message: error.message, tb: traceback(error), args: [...error.args], kwargs: { ...error.kwargs } };
  }
  if (error instanceof RemoteError) {
    return { class: error.className, module: error.module, message: error.remoteMessage, tb: [...error.traceback], args: [...error.args], kwargs: { ...error.kwargs } };
  }
  if (error instanceof NoSuchMethodError) return { class: "NoSuchMethod", module: DISPATCHER_MODULE, message: error.message, tb: traceback(error), args: [error.message], kwargs: {} };
  if (error instanceof UnsupportedVersionError) {
    return { class: "UnsupportedVersion", module: DISPATCHER_MODULE, message: error.message, tb: traceback(error), args: [error.message], kwargs: {} };
  }
  if (error instanceof Error) {
    const name = error.name && error.name !== "Error" ? error.name : error.constructor?.name || "Error";
    return { class: name, module: JAVASCRIPT_MODULE, message: error.message, tb: traceback(error), args: [error.message], kwargs: {} };
  }
  const message = String(error);
  return { class: "Error", module: JAVASCRIPT_MODULE, message, tb: [], args: [message], kwargs: {} };
}

/**
 * A reply's `failure` as a `RemoteError` (the counterpart of `deserialize_remote_exception`, which
 * rebuilds Python classes; here the class and module stay names). Accepts the JSON string oslo
 * sends, or an already parsed object.
 */
export function deserializeFailure(failure: unknown, call?: { method: string; topic: string }): RemoteError {
  let data: unknown = failure;
  if (typeof failure === "string") {
    try {
      data = JSON.parse(failure);
    } catch {
      data = { message: failure };
    }
  }
  const f = isObject(data) ? data : { message: String(data) };
  const tb = Array.isArray(f.tb) ? f.tb.map(String) : [];
  const args = Array.isArray(f.args) ? f.args : [];
  const kwargs = isObject(f.kwargs) ? f.kwargs : {};
  let module = typeof f.module === "string" ? f.module : "";
  // oslo treats Python 2's `exceptions` module as `builtins`.
  if (module === "exceptions") module = "builtins";
  return new RemoteError(typeof f.class === "string" ? f.class : "Exception", module, typeof f.message === "string" ? f.message : String(f.message ?? ""), tb, args, kwargs, call);
}

function traceback(error: Error): string[] {
  return (error.stack ?? `${error.name}: ${error.message}`).split("\n").map((line) => `${line}\n`);
}
