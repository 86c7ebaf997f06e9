import { randomUUID } from "node:crypto";
import { versionIsCompatible } from "./rpc-version.js";

/** A request context: what oslo.messaging sends as the `_context_<key>` fields of a message. */
export type RpcContext = Record<string, unknown>;

/** The RPC envelope version oslo.messaging 14 sends and accepts (`_RPC_ENVELOPE_VERSION`). */
export const ENVELOPE_VERSION = "2.0";

/** The AMQP properties kombu gives oslo's messages (JSON, UTF-8, persistent). */
export const MESSAGE_PROPERTIES = { contentType: "application/json", contentEncoding: "utf-8", deliveryMode: 2 } as const;

/**
 * The body of an AMQP message as oslo.messaging's `serialize_msg` makes it: the payload, itself
 * JSON-encoded, under `oslo.message`, with the envelope version under `oslo.version`.
 */
export function serializeMessage(payload: Record<string, unknown>): Buffer {
  return Buffer.from(JSON.stringify({ "oslo.version": ENVELOPE_VERSION, "oslo.message": JSON.stringify(payload) }), "utf8");
}

/**
 * The payload of a received body (`deserialize_msg`): the inner message of a 2.x envelope, or the
 * object itself when it has no envelope (oslo's version 1.0 messages). Throws on a body that is not
 * a JSON object, or an envelope of another major version (oslo's `UnsupportedRpcEnvelopeVersion`).
 */
export function deserializeMessage(body: Buffer): Record<string, unknown> {
  const outer: unknown = JSON.parse(body.toString("utf8"));
  if (!isObject(outer)) throw new Error(`message body is not a JSON object`);
  if (!("oslo.version" in outer) || !("oslo.message" in outer)) return outer;
  const version = String(outer["oslo.version"]);
  if (!versionIsCompatible(ENVELOPE_VERSION, version)) throw new Error(`RPC envelope version ${version} is not supported (this end speaks ${ENVELOPE_VERSION})`);
  const inner: unknown = JSON.parse(String(outer["oslo.message"]));
  if (!isObject(inner)) throw new Error(`oslo.message is not a JSON object`);
  return inner;
}

/** `pack_context`: each context key as a `_context_<key>` field of the message. */
export function packContext(message: Record<string, unknown>, context: RpcContext): void {
  for (const [key, value] of Object.entries(context)) message[`_context_${key}`] = value;
}

/** What `unpack_context` takes out of a received message (the fields are removed from it). */
export interface UnpackedContext {
  context: RpcContext;
  msgId: string | null;
  replyQueue: string | null;
  /** The caller's call-monitor timeout in seconds (`_timeout`), if it asked for heartbeats. */
  clientTimeout: unknown;
}

export function unpackContext(message: Record<string, unknown>): UnpackedContext {
  const context: RpcContext = {};
  for (const key of Object.keys(message)) {
    if (key.startsWith("_context_")) {
      context[key.slice(9)] = message[key];
      delete message[key];
    }
  }
  const take = (key: string): unknown => {
    const value = message[key];
    delete message[key];
    return value ?? null;
  };
  const msgId = take("_msg_id");
  const replyQueue = take("_reply_q");
  return {
    context,
    msgId: typeof msgId === "string" && msgId ? msgId : null,
    replyQueue: typeof replyQueue === "string" && replyQueue ? replyQueue : null,
    clientTimeout: take("_timeout"),
  };
}

/** A fresh id as oslo makes them (`uuid4().hex`): for `_msg_id`, `_unique_id`, reply and fanout queue names. */
export function hexId(): string {
  return randomUUID().replace(/-/g, "");
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
