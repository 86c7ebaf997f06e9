import { describe, expect, it } from "vitest";
import { conntrackCommands } from "./conntrack-cleanup.js";
import { ConntrackZoneExhaustedError, ConntrackZones } from "./conntrack-zones.js";

describe("ConntrackZones", () => {
  it("hands out zones from 4097, the next after the highest, and keeps them for a key", () => {
    const z = new ConntrackZones();
    expect(z.allocate("net-a", () => [])).toBe(4097);
    expect(z.allocate("net-b", () => [])).toBe(4098);
    expect(z.allocate("net-a", () => [])).toBe(4097);
  });

  it("recovers the map from the raw table as Neutron does (device minus its prefix)", () => {
    const z = new ConntrackZones();
    z.recover(
      [
        '-A neutron-linuxbri-PREROUTING -m physdev --physdev-in brq8f2e0c6a-3d -m comment --comment "Set zone for bc18a88-96" -j CT --zone 4100',
        '-A neutron-linuxbri-PREROUTING -i brq8f2e0c6a-3d -m comment --comment "Set zone for bc18a88-96" -j CT --zone 4100',
        '-A neutron-linuxbri-PREROUTING -m physdev --physdev-in tap6bc18a88-96 -m comment --comment "Make bc18a88-96 stateless" -j CT --notrack',
      ].join("\n"),
    );
    expect(z.get("8f2e0c6a-3d")).toBe(4100);
    expect(z.allocate("other", () => [])).toBe(4101);
  });

  it("at the top, reuses gaps after freeing keys no port uses; fails when all are taken", () => {
    const z = new ConntrackZones();
    z.recover("--physdev-in brqaaaaaaaaaaa -j CT --zone 65535\n--physdev-in brqbbbbbbbbbbb -j CT --zone 4097");
    expect(z.allocate("c", () => ["aaaaaaaaaaa", "bbbbbbbbbbb"])).toBe(4098);
    const full = new ConntrackZones();
    for (let i = 0; i <= 65535 - 4097; i++) full.allocate(`k${i}`, () => []);
    expect(() => full.allocate("one-more", () => [...Array(65535 - 4097 + 1).keys()].map((i) => `k${i}`))).toThrow(ConntrackZoneExhaustedError);
    expect(full.allocate("one-more", () => ["k0"])).toBe(4098);
  });
});

describe("conntrackCommands", () => {
  it("builds Neutron's argument lists: per device address of the family, per remote address", () => {
    expect(conntrackCommands({ ethertype: "IPv4", direction: "ingress", protocol: "tcp", deviceIps: ["10.0.0.5", "2001:db8::5"], zone: 4097 })).toEqual([
      ["-D", "-p", "tcp", "-f", "ipv4", "-d", "10.0.0.5", "-w", "4097"],
    ]);
    expect(conntrackCommands({ ethertype: "IPv6", direction: "egress", deviceIps: ["10.0.0.5", "2001:db8::5"], zone: 4097, remoteIps: ["2001:db8::7/128", "10.0.0.7"] })).toEqual([
      ["-D", "-f", "ipv6", "-s", "2001:db8::5", "-w", "4097", "-d", "2001:db8::7"],
    ]);
  });
});
