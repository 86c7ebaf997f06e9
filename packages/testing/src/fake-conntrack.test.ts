import { CommandError, PREPARED_INPUT } from "@chainwarden/core";
import { describe, expect, it } from "vitest";
import { FakeConntrack, type FakeConnection } from "./fake-conntrack.js";
import { FakeNetns } from "./fake-netns.js";
import { NotModelledError } from "./not-modelled-error.js";

// What the contract suite (contract/conntrack-runner-contract.ts) does not reach: the helpers tests
// use to arrange and inspect, the ways to leave prepare out or make it fail, and what is not modelled.

const make = (options: { prepare?: boolean | "cannot-start" } = {}) => {
  const netns = new FakeNetns(["ns1", "ns2"]);
  return { netns, conntrack: new FakeConntrack({ netns, ...options }) };
};
const TCP: FakeConnection = { protocol: "tcp", src: "10.0.0.1", dst: "10.0.0.2", sport: 40000, dport: 22, zone: 4 };

describe("FakeConntrack", () => {
  it("records every exec, and each prepared command's run with its input", async () => {
    const { conntrack } = make();
    await conntrack.exec("conntrack", ["-L", "-w", "4"], { namespace: "ns1" });
    await conntrack.exec("conntrack", ["-D", "-d", "10.0.0.2"], { reject: false });
    const prepared = conntrack.prepare!("conntrack", ["-R", PREPARED_INPUT], { namespace: "ns2" });
    await prepared.run("-D -d 10.0.0.2\n");
    conntrack.prepare!("conntrack", ["-R", PREPARED_INPUT]).cancel();
    expect(conntrack.calls).toEqual([
      { namespace: "ns1", args: ["-L", "-w", "4"] },
      { namespace: undefined, args: ["-D", "-d", "10.0.0.2"] },
      { namespace: "ns2", args: ["-R", PREPARED_INPUT], input: "-D -d 10.0.0.2\n", prepared: true },
    ]);
  });

  it("lists the prepared commands still waiting, for leak checks", async () => {
    const { conntrack } = make();
    const a = conntrack.prepare!("conntrack", ["-R", PREPARED_INPUT], { namespace: "ns1" });
    const b = conntrack.prepare!("conntrack", ["-R", PREPARED_INPUT], { namespace: "ns2" });
    const c = conntrack.prepare!("conntrack", ["-R", PREPARED_INPUT], { expireMs: 20 });
    expect(conntrack.preparedWaiting).toEqual([
      { namespace: "ns1", args: ["-R", PREPARED_INPUT] },
      { namespace: "ns2", args: ["-R", PREPARED_INPUT] },
      { namespace: undefined, args: ["-R", PREPARED_INPUT] },
    ]);
    await a.run("");
    b.cancel();
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(c.waiting).toBe(false);
    expect(conntrack.preparedWaiting).toEqual([]);
  });

  it("offers no prepare with prepare: false, and prepared commands that cannot start with \"cannot-start\"", async () => {
    expect(make({ prepare: false }).conntrack.prepare).toBeUndefined();
    const { conntrack } = make({ prepare: "cannot-start" });
    const prepared = conntrack.prepare!("conntrack", ["-R", PREPARED_INPUT], { namespace: "ns1" });
    const err = await prepared.run("-D -d 10.0.0.2\n").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect(err).toMatchObject({ exitCode: undefined, stderr: "could not be started: mkfifo: cannot create fifo: Read-only file system" });
    // Once the reason is cleared, commands prepared afterwards start.
    conntrack.startFailure = undefined;
    expect(await conntrack.prepare!("conntrack", ["-R", PREPARED_INPUT], { namespace: "ns1" }).run("")).toEqual({ stdout: "", stderr: "", exitCode: 0 });
  });

  it("keeps connections per namespace, and drops them with their namespace", async () => {
    const { netns, conntrack } = make();
    conntrack.addConnection("ns1", TCP);
    conntrack.addConnection(undefined, { ...TCP, zone: 0, timeout: 431999 });
    expect(conntrack.count("ns1")).toBe(1);
    expect(conntrack.count("ns2")).toBe(0);
    expect(conntrack.listing(undefined)).toEqual([
      "tcp      6 431999 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=40000 dport=22 src=10.0.0.2 dst=10.0.0.1 sport=22 dport=40000 [ASSURED] mark=0 use=1",
    ]);
    netns.delete("ns1");
    netns.add("ns1");
    expect(conntrack.count("ns1")).toBe(0);
    expect(() => conntrack.addConnection("gone", TCP)).toThrow(/does not exist/);
    expect(() => conntrack.addConnection(undefined, { ...TCP, zone: 0 })).toThrow(/Such conntrack exists/);
    // The reply tuple clashes too: the reverse connection is the same one.
    expect(() => conntrack.addConnection(undefined, { protocol: "tcp", src: "10.0.0.2", dst: "10.0.0.1", sport: 22, dport: 40000 })).toThrow(/Such conntrack exists/);
  });

  it("gives the conntrack -I arguments that make the same connection on a real kernel", () => {
    expect(FakeConntrack.insertArgs(TCP)).toEqual(["-I", "-p", "tcp", "-s", "10.0.0.1", "-d", "10.0.0.2", "--sport", "40000", "--dport", "22", "--state", "ESTABLISHED", "-t", "120", "-u", "SEEN_REPLY,ASSURED", "-w", "4"]);
    expect(FakeConntrack.insertArgs({ protocol: "tcp", src: "10.0.0.1", dst: "203.0.113.5", sport: 1, dport: 80, replySrc: "192.168.0.5", replyDport: 1 })).toEqual([
      "-I", "-p", "tcp", "-s", "10.0.0.1", "-d", "203.0.113.5", "--sport", "1", "--dport", "80",
      "-r", "192.168.0.5", "-q", "10.0.0.1", "--reply-port-src", "80", "--reply-port-dst", "1",
      "--state", "ESTABLISHED", "-t", "120", "-u", "SEEN_REPLY,ASSURED",
    ]);
    expect(FakeConntrack.insertArgs({ protocol: "icmpv6", src: "2001:db8::1", dst: "2001:db8::2", icmpId: 3, replied: false, assured: false, timeout: 30 })).toEqual([
      "-I", "-p", "icmpv6", "-s", "2001:db8::1", "-d", "2001:db8::2", "--icmpv6-type", "128", "--icmpv6-code", "0", "--icmpv6-id", "3", "-t", "30",
    ]);
    expect(FakeConntrack.insertArgs({ protocol: 50, src: "10.0.0.1", dst: "10.0.0.7", assured: false })).toEqual(["-I", "-p", "50", "-s", "10.0.0.1", "-d", "10.0.0.7", "-t", "120", "-u", "SEEN_REPLY"]);
  });

  it("throws NotModelledError for what it does not model", async () => {
    const { conntrack } = make();
    const run = (args: string[]) => conntrack.exec("conntrack", args, { namespace: "ns1", reject: false });
    for (const args of [
      ["-F"],
      ["-L", "-o", "extended"],
      ["-D", "-s", "10.0.0.0/24"],
      ["-D", "-w", "x"],
      ["-D", "-p", "6", "-p", "6"],
      ["-D", "-p", "IPIP"],
      ["-D", "-d", "10.0.0.1", "extra"],
      ["-R", "/tmp/input"],
    ]) {
      await expect(run(args), args.join(" ")).rejects.toBeInstanceOf(NotModelledError);
    }
    await expect(conntrack.exec("conntrack", ["-L"], { input: "x" })).rejects.toBeInstanceOf(NotModelledError);
    expect(() => conntrack.prepare!("conntrack", ["-D", PREPARED_INPUT])).toThrow(NotModelledError);
    await expect(conntrack.prepare!("conntrack", ["-R", PREPARED_INPUT], { namespace: "ns1" }).run("-F\n")).rejects.toBeInstanceOf(NotModelledError);
    for (const c of [
      { protocol: 6, src: "10.0.0.1", dst: "10.0.0.2" },
      { protocol: 47, src: "10.0.0.1", dst: "10.0.0.2" },
      { protocol: "tcp", src: "10.0.0.1", dst: "10.0.0.2" },
      { protocol: "udp", src: "10.0.0.1", dst: "2001:db8::2", sport: 1, dport: 2 },
      { protocol: "icmp", src: "10.0.0.1", dst: "10.0.0.2", icmpType: 3 },
      { protocol: "icmp", src: "2001:db8::1", dst: "2001:db8::2" },
    ] as FakeConnection[]) {
      expect(() => conntrack.addConnection("ns1", c), JSON.stringify(c)).toThrow(NotModelledError);
    }
  });
});
