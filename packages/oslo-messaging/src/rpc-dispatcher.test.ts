import { describe, expect, it } from "vitest";
import { NoSuchMethodError, UnsupportedVersionError } from "./oslo-messaging-errors.js";
import { findMethod, type RpcEndpoint } from "./rpc-dispatcher.js";

const l3 = () => "l3";
const state = () => "state";
const endpoints: RpcEndpoint[] = [
  { version: "1.4", methods: { routers_updated: l3, _private: l3 } },
  { namespace: "cw_state", legacyNamespaces: ["cw_old_state"], version: "1.2", methods: { report_state: state } },
];

describe("findMethod", () => {
  it("serves a request from the first endpoint whose namespace and version accept it", () => {
    expect(findMethod(endpoints, "routers_updated", null, "1.0")).toBe(l3);
    expect(findMethod(endpoints, "routers_updated", null, "1.4")).toBe(l3);
    expect(findMethod(endpoints, "report_state", "cw_state", "1.2")).toBe(state);
    expect(findMethod(endpoints, "report_state", "cw_old_state", "1.1")).toBe(state);
  });

  it("refuses as oslo's dispatcher does: NoSuchMethod when a compatible endpoint lacks it, UnsupportedVersion when none is compatible", () => {
    expect(() => findMethod(endpoints, "report_state", null, "1.0")).toThrow(NoSuchMethodError);
    expect(() => findMethod(endpoints, "_private", null, "1.0")).toThrow(NoSuchMethodError);
    expect(() => findMethod(endpoints, "toString", null, "1.0")).toThrow(NoSuchMethodError);
    expect(() => findMethod(endpoints, "routers_updated", null, "1.5")).toThrow(UnsupportedVersionError);
    expect(() => findMethod(endpoints, "routers_updated", null, "2.0")).toThrow("Endpoint does not support RPC version 2.0. Attempted method: routers_updated");
    expect(() => findMethod(endpoints, "report_state", "other", "1.0")).toThrow(UnsupportedVersionError);
  });
});
