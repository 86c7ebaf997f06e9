import { describe, expect, it } from "vitest";
import { closestKey, didYouMean, nearMissKeys } from "./near-miss.js";

describe("closestKey", () => {
  it("finds a typo's key, ignoring case and dashes, and nothing for unrelated words", () => {
    expect(closestKey("routrs", ["routers", "firewalls"])).toBe("routers");
    expect(closestKey("router", ["routers", "firewalls"])).toBe("routers");
    expect(closestKey("Log-Level", ["log_level"])).toBe("log_level");
    expect(closestKey("devices", ["routers"])).toBeUndefined();
    expect(closestKey("routers", ["routers"])).toBeUndefined();
  });
  it("says did you mean", () => {
    expect(didYouMean("backnd", ["backend", "state"])).toBe("; did you mean backend?");
    expect(didYouMean("zzz", ["backend"])).toBe("");
  });
});

describe("nearMissKeys", () => {
  it("names an expected key that is missing while its near miss is present", () => {
    expect(nearMissKeys({ id: "x", floating_ip_adress: "1.2.3.4", fixed_ip_address: "10.0.0.1" }, ["id", "floating_ip_address", "fixed_ip_address"])).toEqual([
      { given: "floating_ip_adress", expected: "floating_ip_address" },
    ]);
    expect(nearMissKeys({ id: "r", _interfacs: [] }, ["id", "_interfaces", "gw_port"])).toEqual([{ given: "_interfacs", expected: "_interfaces" }]);
  });
  it("accepts keys it does not know when nothing expected is missing or they resemble nothing", () => {
    expect(nearMissKeys({ id: "r", _interfaces: [], description: "x", _interfacs: [] }, ["id", "_interfaces"])).toEqual([]);
    expect(nearMissKeys({ id: "r", tenant_id: "t", revision_number: 3 }, ["id", "gw_port"])).toEqual([]);
    expect(nearMissKeys({ port_range_min: 22 }, ["port_range_min", "port_range_max"])).toEqual([]);
    // A router without a gateway: the server sends gw_port_id, not gw_port; that is no typo.
    expect(nearMissKeys({ id: "r", gw_port_id: null }, ["id", "gw_port"])).toEqual([]);
  });
});
