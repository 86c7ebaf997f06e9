import { describe, expect, it } from "vitest";
import { NoSuchMethodError, RemoteError, RpcFailure } from "./oslo-messaging-errors.js";
import { deserializeFailure, serializeFailure } from "./remote-failure.js";

describe("remote failures", () => {
  it("sends an RpcFailure under its Python class and module, with its arguments", () => {
    const failure = JSON.parse(serializeFailure(new RpcFailure("NotFound", "neutron_lib.exceptions", "Router r1 could not be found", { args: [], kwargs: { id: "r1" } })));
    expect(failure).toMatchObject({ class: "NotFound", module: "neutron_lib.exceptions", message: "Router r1 could not be found", args: [], kwargs: { id: "r1" } });
    expect(failure.tb.length).toBeGreaterThan(0);
  });

  it("sends dispatch errors as oslo's and other errors as their JavaScript class", () => {
    expect(JSON.parse(serializeFailure(new NoSuchMethodError("frob")))).toMatchObject({ class: "NoSuchMethod", module: "oslo_messaging.rpc.dispatcher", message: "Endpoint does not support RPC method frob" });
    expect(JSON.parse(serializeFailure(new TypeError("x is undefined")))).toMatchObject({ class: "TypeError", module: "chainwarden", message: "x is undefined", args: ["x is undefined"] });
    class RouterGone extends Error {}
    expect(JSON.parse(serializeFailure(new RouterGone("gone"))).class).toBe("RouterGone");
  });

  it("reads oslo's failure JSON into a RemoteError naming the remote class", () => {
    const json = JSON.stringify({ class: "ValueError", module: "builtins", message: "bad", tb: ["Traceback...\n"], args: ["bad"], kwargs: {} });
    const error = deserializeFailure(json, { method: "sync_routers", topic: "q-l3-plugin" });
    expect(error).toBeInstanceOf(RemoteError);
    expect(error).toMatchObject({ code: "RPC_REMOTE_ERROR", className: "ValueError", module: "builtins", remoteMessage: "bad", args: ["bad"] });
    expect(error.message).toBe("remote builtins.ValueError from sync_routers on topic q-l3-plugin: bad");
    // A RemoteError passed on by a server keeps the original class.
    expect(JSON.parse(serializeFailure(error))).toMatchObject({ class: "ValueError", module: "builtins", message: "bad", tb: ["Traceback...\n"] });
  });
});
