import { describe, expect, it } from "vitest";
import { deserializeMessage, packContext, serializeMessage, unpackContext } from "./envelope.js";

describe("envelope", () => {
  it("wraps the payload as oslo's serialize_msg does and unwraps 2.x envelopes and bare messages", () => {
    const body = serializeMessage({ method: "m", args: { a: 1 } });
    const outer = JSON.parse(body.toString());
    expect(outer).toEqual({ "oslo.version": "2.0", "oslo.message": '{"method":"m","args":{"a":1}}' });
    expect(deserializeMessage(body)).toEqual({ method: "m", args: { a: 1 } });
    // oslo checks the envelope as a request version against 2.0: a newer minor is refused too.
    expect(() => deserializeMessage(Buffer.from(JSON.stringify({ "oslo.version": "2.1", "oslo.message": "{}" })))).toThrow(/envelope version 2.1/);
    expect(deserializeMessage(Buffer.from('{"method":"old"}'))).toEqual({ method: "old" });
    expect(() => deserializeMessage(Buffer.from(JSON.stringify({ "oslo.version": "3.0", "oslo.message": "{}" })))).toThrow(/envelope version 3.0/);
    expect(() => deserializeMessage(Buffer.from("[1]"))).toThrow(/not a JSON object/);
  });

  it("packs the context as _context_ fields and unpacks it with the reply fields", () => {
    const message: Record<string, unknown> = { method: "m", _msg_id: "id", _reply_q: "reply_x", _timeout: null };
    packContext(message, { user_id: "u", is_admin: true });
    expect(message).toMatchObject({ _context_user_id: "u", _context_is_admin: true });
    expect(unpackContext(message)).toEqual({ context: { user_id: "u", is_admin: true }, msgId: "id", replyQueue: "reply_x", clientTimeout: null });
    expect(message).toEqual({ method: "m" });
  });
});
