import { FakeConntrack, FakeNetns } from "@chainwarden/testing";
import { describe, expect, it } from "vitest";
import { ConntrackCleaner, conntrackFilterMatches, conntrackFilterOf, mergeConntrackPlans } from "./conntrack-cleaner.js";
import { deleteEntryArgs, parseConntrackEntries } from "./conntrack-entry.js";
import { parseFirewallRule } from "./firewall-rule.js";

const LISTING = [
  "tcp      6 431995 ESTABLISHED src=10.10.10.2 dst=203.0.113.9 sport=40000 dport=5001 src=203.0.113.9 dst=200.200.128.2 sport=5001 dport=40000 [ASSURED] mark=0 use=1",
  "tcp      6 431995 ESTABLISHED src=10.10.10.2 dst=203.0.113.9 sport=40001 dport=22 src=203.0.113.9 dst=200.200.128.2 sport=22 dport=40001 [ASSURED] mark=0 use=1",
  "icmp     1 29 src=10.10.10.2 dst=203.0.113.9 type=8 code=0 id=77 src=203.0.113.9 dst=10.10.10.2 type=0 code=0 id=77 mark=0 use=1",
  "tcp      6 117 SYN_SENT src=203.0.113.9 dst=200.200.128.3 sport=50000 dport=80 [UNREPLIED] src=10.10.10.2 dst=203.0.113.9 sport=80 dport=50000 mark=0 zone=3 use=1",
  "garbage line",
  "udp      17 20 src=10.10.10.2 dst=not-an-ip sport=1 dport=2 src=x dst=y sport=2 dport=1 mark=0 use=1",
].join("\n");

const rule = (raw: Record<string, unknown>) => parseFirewallRule({ action: "deny", ...raw }).rule!;

describe("conntrack entries", () => {
  it("parses the original tuple, the reply's addresses and the zone; skips what is not an entry", () => {
    const entries = parseConntrackEntries(LISTING, 4);
    expect(entries).toHaveLength(4);
    expect(entries[0]).toMatchObject({ protocolNumber: 6, source: "10.10.10.2", destination: "203.0.113.9", sourcePort: 40000, destinationPort: 5001 });
    expect(entries[2]).toMatchObject({ protocolName: "icmp", icmpType: 8, icmpCode: 0, icmpId: 77 });
    expect(entries[3]).toMatchObject({ destination: "200.200.128.3", replySource: "10.10.10.2", zone: 3 });
    expect(deleteEntryArgs(entries[0]!)).toEqual(["-D", "-f", "ipv4", "-p", "tcp", "-s", "10.10.10.2", "-d", "203.0.113.9", "--sport", "40000", "--dport", "5001"]);
    expect(deleteEntryArgs(entries[2]!)).toEqual(["-D", "-f", "ipv4", "-p", "icmp", "-s", "10.10.10.2", "-d", "203.0.113.9", "--icmp-type", "8", "--icmp-code", "0", "--icmp-id", "77"]);
    expect(deleteEntryArgs(entries[3]!)).toContain("--zone");
  });

  it("deletes an ICMPv6 entry by its own fields (conntrack refuses --icmp-* after -p icmpv6)", async () => {
    const netns = new FakeNetns(["qrouter-1"]);
    const conntrack = new FakeConntrack({ netns });
    conntrack.addConnection("qrouter-1", { protocol: "icmpv6", src: "fd00::2", dst: "2001:db8::9", icmpId: 7 });
    conntrack.addConnection("qrouter-1", { protocol: "icmp", src: "10.10.10.2", dst: "203.0.113.9", icmpId: 8 });
    const [entry] = parseConntrackEntries(conntrack.listing("qrouter-1").filter((l) => l.startsWith("icmpv6")).join("\n"), 6);
    expect(deleteEntryArgs(entry!)).toEqual(["-D", "-f", "ipv6", "-p", "icmpv6", "-s", "fd00::2", "-d", "2001:db8::9", "--icmpv6-type", "128", "--icmpv6-code", "0", "--icmpv6-id", "7"]);
    await conntrack.exec("conntrack", deleteEntryArgs(entry!), { namespace: "qrouter-1" });
    expect(conntrack.count("qrouter-1")).toBe(1);
  });

  it("matches by protocol, port ranges and addresses (the DNATed destination too)", () => {
    const [tcp5001, tcp22, icmp, dnat] = parseConntrackEntries(LISTING, 4);
    const m = (raw: Record<string, unknown>, e: typeof tcp5001) => conntrackFilterMatches(conntrackFilterOf(rule(raw)), e!);
    expect(m({ protocol: "tcp", destination_port: "5000:5010" }, tcp5001)).toBe(true);
    expect(m({ protocol: "tcp", destination_port: "5000:5010" }, tcp22)).toBe(false);
    expect(m({ protocol: "icmp" }, icmp)).toBe(true);
    expect(m({ protocol: "icmp" }, tcp22)).toBe(false);
    expect(m({}, tcp22)).toBe(true);
    expect(m({ source_ip_address: "10.10.10.0/24" }, icmp)).toBe(true);
    expect(m({ source_ip_address: "10.10.11.0/24" }, icmp)).toBe(false);
    expect(m({ destination_ip_address: "10.10.10.2" }, dnat)).toBe(true);
    expect(m({ ip_version: 6 }, tcp22)).toBe(false);
  });

  it("merges plans: a flushed family needs no filters", () => {
    const f4 = conntrackFilterOf(rule({ protocol: "tcp" }));
    const f6 = conntrackFilterOf(rule({ protocol: "tcp", ip_version: 6 }));
    expect(mergeConntrackPlans([{ flush: [6], filters: [f4] }, { flush: [], filters: [f6] }])).toEqual({ flush: [6], filters: [f4] });
  });
});

/** FakeConntrack with ns1's connections: the first three of LISTING, and an IPv6 one. */
function conntrackWithEntries(): FakeConntrack {
  const conntrack = new FakeConntrack({ netns: new FakeNetns(["ns1"]) });
  const snat = { src: "10.10.10.2", dst: "203.0.113.9", replySrc: "203.0.113.9" };
  conntrack.addConnection("ns1", { protocol: "tcp", ...snat, replyDst: "200.200.128.2", sport: 40000, dport: 5001 });
  conntrack.addConnection("ns1", { protocol: "tcp", ...snat, replyDst: "200.200.128.2", sport: 40001, dport: 22 });
  conntrack.addConnection("ns1", { protocol: "icmp", src: "10.10.10.2", dst: "203.0.113.9", icmpId: 77 });
  conntrack.addConnection("ns1", { protocol: "tcp", src: "fd00::2", dst: "2001:db8::9", sport: 40000, dport: 5001 });
  return conntrack;
}

describe("ConntrackCleaner", () => {
  it("flushes families with conntrack -D -f, in the namespace", async () => {
    const conntrack = conntrackWithEntries();
    const r = await new ConntrackCleaner(conntrack).apply("ns1", { flush: [4, 6], filters: [] });
    expect(r).toEqual({ flushed: [4, 6], deleted: 0 });
    expect(conntrack.calls).toEqual([
      { args: ["-D", "-f", "ipv4"], namespace: "ns1" },
      { args: ["-D", "-f", "ipv6"], namespace: "ns1" },
    ]);
    expect(conntrack.count("ns1")).toBe(0);
    // Nothing left to flush: conntrack exits 1, which is no error.
    expect(await new ConntrackCleaner(conntrack).apply("ns1", { flush: [4], filters: [] })).toEqual({ flushed: [4], deleted: 0 });
  });

  it("lists once per family and deletes exactly the matching entries", async () => {
    const conntrack = conntrackWithEntries();
    const r = await new ConntrackCleaner(conntrack).apply("ns1", { flush: [], filters: [conntrackFilterOf(rule({ protocol: "tcp", destination_port: "5001" }))] });
    expect(r.deleted).toBe(1);
    expect(conntrack.calls.map((c) => c.args.join(" "))).toEqual([
      "-L -f ipv4",
      "-D -f ipv4 -p tcp -s 10.10.10.2 -d 203.0.113.9 --sport 40000 --dport 5001",
    ]);
    expect(conntrack.listing("ns1").map((l) => /dport=(\d+)|id=(\d+)/.exec(l)![0])).toEqual(["dport=22", "id=77", "dport=5001"]);
  });

  it("fails with the command and stderr when conntrack itself fails (its namespace is gone)", async () => {
    const conntrack = new FakeConntrack({ netns: new FakeNetns() });
    await expect(new ConntrackCleaner(conntrack).apply("ns-gone", { flush: [4], filters: [] })).rejects.toThrow(
      'conntrack -D -f ipv4 failed (exit 255): Cannot open network namespace "ns-gone": No such file or directory',
    );
  });
});
