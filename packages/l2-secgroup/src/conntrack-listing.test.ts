import { describe, expect, it } from "vitest";
import { deletionMayMatch, parseConntrackListing } from "./conntrack-listing.js";

// Lines as conntrack v1.4.7 prints them (taken from `conntrack -L` in a test namespace).
const LISTING = [
  "tcp      6 93 ESTABLISHED src=10.0.0.5 dst=10.0.0.9 sport=1000 dport=22 src=10.0.0.9 dst=10.0.0.5 sport=22 dport=1000 mark=0 zone=4097 use=1",
  "udp      17 99 src=fd00::5 dst=fd00::9 sport=1000 dport=53 [UNREPLIED] src=fd00::9 dst=fd00::5 sport=53 dport=1000 mark=0 zone=4097 use=1",
  "icmp     1 93 src=10.0.0.5 dst=10.0.0.9 type=8 code=0 id=77 [UNREPLIED] src=10.0.0.9 dst=10.0.0.5 type=0 code=0 id=77 mark=0 zone=4098 use=1",
  "tcp      6 93 ESTABLISHED src=10.0.0.6 dst=10.0.0.9 sport=1001 dport=22 src=10.0.0.9 dst=10.0.0.6 sport=22 dport=1001 mark=0 use=1",
  "",
].join("\n");

describe("conntrack listing", () => {
  it("reads each entry's original source, destination and zone", () => {
    expect(parseConntrackListing(LISTING)).toEqual([
      { src: "10.0.0.5", dst: "10.0.0.9", zone: 4097 },
      { src: "fd00::5", dst: "fd00::9", zone: 4097 },
      { src: "10.0.0.5", dst: "10.0.0.9", zone: 4098 },
      { src: "10.0.0.6", dst: "10.0.0.9", zone: 0 },
    ]);
    expect(parseConntrackListing("")).toEqual([]);
  });

  it("gives up on a line it cannot read (the caller then deletes without looking)", () => {
    expect(parseConntrackListing("tcp 6 93 ESTABLISHED sport=1 dport=2")).toBeUndefined();
    expect(parseConntrackListing("tcp 6 93 src=10.0.0.5 dst=not-an-address")).toBeUndefined();
  });

  it("a deletion may match when an entry has its addresses in its zone, whatever the protocol", () => {
    const entries = parseConntrackListing(LISTING)!;
    expect(deletionMayMatch(["-D", "-f", "ipv4", "-d", "10.0.0.9", "-w", "4097"], entries)).toBe(true);
    expect(deletionMayMatch(["-D", "-p", "udp", "-f", "ipv4", "-s", "10.0.0.5", "-w", "4097", "-d", "10.0.0.9"], entries)).toBe(true);
    // IPv6 written another way is the same address.
    expect(deletionMayMatch(["-D", "-f", "ipv6", "-s", "fd00:0:0::5", "-w", "4097"], entries)).toBe(true);
    // Wrong zone, wrong direction, another remote: no.
    expect(deletionMayMatch(["-D", "-f", "ipv4", "-d", "10.0.0.9", "-w", "4099"], entries)).toBe(false);
    expect(deletionMayMatch(["-D", "-f", "ipv4", "-s", "10.0.0.9", "-w", "4097"], entries)).toBe(false);
    expect(deletionMayMatch(["-D", "-f", "ipv4", "-d", "10.0.0.9", "-w", "4097", "-s", "10.0.0.7"], entries)).toBe(false);
    expect(deletionMayMatch(["-D", "-f", "ipv4", "-d", "10.0.0.9", "-w", "4097"], [])).toBe(false);
  });

  it("says yes to arguments it does not know", () => {
    expect(deletionMayMatch(["-D", "--mark", "1"], [])).toBe(true);
    expect(deletionMayMatch(["-D", "-f", "ipv4", "-d", "10.0.0.999", "-w", "1"], [])).toBe(true);
    expect(deletionMayMatch(["-D", "-f", "ipv4", "-d"], [])).toBe(true);
  });
});
