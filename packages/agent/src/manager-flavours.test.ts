import { describe, expect, it } from "vitest";
import { ManagerFlavours, managerNeedsProblems, type HandlerOwner, type ManagerDefaults } from "./manager-flavours.js";

const owner = (kind: string, plugin: string, ...managers: HandlerOwner["handler"]["managers"][]): HandlerOwner => ({ handler: { kind, ...(managers[0] ? { managers: managers[0] } : {}) }, plugin });
const resolve = (owners: HandlerOwner[], defaults?: ManagerDefaults) => ManagerFlavours.resolve(owners, { wrapName: "neutron-linuxbridge-agent", useIpv6: true, defaults });
const STATEFUL = { stateless: false, nat: true, useIpv6: true };
const STATELESS = { stateless: true, nat: false, useIpv6: true };

describe("ManagerFlavours", () => {
  it("without declarations or app defaults: stateful, nat, the agent's use_ipv6", () => {
    const f = resolve([owner("router", "l3-nat")]);
    expect(f.defaultWrapName).toBe("neutron-linuxbri");
    expect(f.flavour("neutron-linuxbri")).toEqual(STATEFUL);
    expect(f.origin("neutron-linuxbri")).toBe("the agent's defaults");
  });

  it("the app's defaults give every wrap name its flavour (the l2 agent: stateless, no nat)", () => {
    const f = resolve([], { stateless: true });
    expect(f.flavour("neutron-linuxbri")).toEqual(STATELESS);
    expect(f.flavour("other")).toEqual(STATELESS);
  });

  it("declared options win over the app's defaults for their wrap name, cut as wrapNameFor cuts it", () => {
    const f = resolve([owner("port", "l2-secgroup", [{ stateless: true, wrapName: "neutron-linuxbridge-agent" }]), owner("nat_rule", "acme", [{ wrapName: "acme-nat", nat: true }])], { stateless: true });
    expect(f.flavour("neutron-linuxbri")).toEqual(STATELESS);
    expect(f.origin("neutron-linuxbri")).toBe("stateless declared by the port handler of plugin l2-secgroup");
    // A need for nat makes its wrap name stateful, over the app's stateless default.
    expect(f.flavour("acme-nat")).toEqual(STATEFUL);
    expect([...f.wrapNamesOf("port")]).toEqual(["neutron-linuxbri"]);
    expect([...f.wrapNamesOf("nat_rule")]).toEqual(["acme-nat"]);
    expect([...f.wrapNamesOf("unknown")]).toEqual([]);
    expect(f.describe("port")).toBe("the port handler of plugin l2-secgroup");
    expect(f.pluginOf("nat_rule")).toBe("acme");
  });

  it("options left out are no clash; one option needed two ways is, naming both plugins, the wrap name and the options", () => {
    expect(() => resolve([owner("port", "l2-secgroup", [{ stateless: true }]), owner("chain_set", "static-chains", [{}]), owner("x", "y", [{ useIpv6: false }])])).not.toThrow();
    expect(() => resolve([owner("router", "l3-nat", [{ stateless: false, nat: true }]), owner("port", "l2-secgroup", [{ stateless: true }])])).toThrow(
      expect.objectContaining({
        code: "PLUGIN_INVALID",
        plugin: "l2-secgroup",
        message:
          "the router handler of plugin l3-nat and the port handler of plugin l2-secgroup share the neutron-linuxbri manager of a namespace but need it with stateless: false and stateless: true; give one of them a wrap name of its own",
      }),
    );
    expect(() => resolve([owner("a", "pa", [{ useIpv6: true }]), owner("b", "pb", [{ useIpv6: false, wrapName: "neutron-linuxbri-x" }])])).toThrow(/useIpv6: true and useIpv6: false/);
  });

  it("a malformed declaration is refused naming its plugin", () => {
    expect(() => resolve([owner("a", "pa", [{ stateless: true, nat: true }])])).toThrow("the a handler of plugin pa declares managers it cannot have: managers[0] is stateless and needs nat: a stateless manager has no nat table");
    expect(managerNeedsProblems(undefined)).toEqual([]);
    expect(managerNeedsProblems({})).toEqual(["managers must be a list of { wrapName?, stateless?, nat?, useIpv6? }"]);
    expect(managerNeedsProblems([null, { stateles: true }, { nat: "yes" }, { wrapName: 7 }])).toEqual([
      "managers[0] must be an object",
      "managers[1].stateles is not a manager option (wrapName, stateless, nat, useIpv6)",
      "managers[2].nat must be true or false",
      "managers[3].wrapName must be a string",
    ]);
    expect(managerNeedsProblems([{ wrapName: "bad!" }])).toEqual([expect.stringMatching(/^managers\[0\]\.wrapName: .*wrap name may only hold/)]);
  });

  it("the first caller's options decide what no declaration does; one against a declaration is named, with who declared it", () => {
    const f = resolve([owner("port", "l2-secgroup", [{ stateless: true }])]);
    expect(f.forFirstCaller("neutron-linuxbri", {})).toEqual({ flavour: STATELESS });
    expect(f.forFirstCaller("neutron-linuxbri", { stateless: false })).toEqual({ flavour: STATEFUL, conflict: "the port handler of plugin l2-secgroup declares stateless: true for it" });
    expect(f.forFirstCaller("neutron-linuxbri", { nat: true })).toEqual({ flavour: { ...STATELESS, nat: false }, conflict: "a stateless manager has no nat table" });
    expect(f.forFirstCaller("own-wrap", { stateless: true, useIpv6: false })).toEqual({ flavour: { ...STATELESS, useIpv6: false } });
  });
});
