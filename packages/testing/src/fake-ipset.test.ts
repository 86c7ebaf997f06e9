import { describe, expect, it } from "vitest";
import { FakeIpset } from "./fake-ipset.js";
import { FakeIptablesRunner } from "./fake-iptables-runner.js";
import { FakeNetns } from "./fake-netns.js";
import { NotModelledError } from "./not-modelled-error.js";

// What the contract suite (contract/ipset-runner-contract.ts) does not reach: the helpers tests
// use to arrange and inspect, the wiring to the iptables fake, and what is not modelled.

const make = (inUse?: (namespace: string | undefined, name: string) => boolean) => {
  const netns = new FakeNetns(["ns1", "ns2"]);
  return { netns, ipset: new FakeIpset({ netns, ...(inUse ? { inUse } : {}) }) };
};

describe("FakeIpset", () => {
  it("records every exec with its namespace, arguments and input", async () => {
    const { ipset } = make();
    await ipset.exec("ipset", ["create", "-exist", "s", "hash:net", "family", "inet"], { namespace: "ns1" });
    await ipset.exec("ipset", ["restore", "-exist"], { namespace: "ns1", input: "add s 10.0.0.1\n" });
    await ipset.exec("ipset", ["destroy", "nope"], { reject: false });
    expect(ipset.calls).toEqual([
      { namespace: "ns1", args: ["create", "-exist", "s", "hash:net", "family", "inet"] },
      { namespace: "ns1", args: ["restore", "-exist"], input: "add s 10.0.0.1\n" },
      { namespace: undefined, args: ["destroy", "nope"] },
    ]);
  });

  it("keeps sets per namespace, and drops them with their namespace", async () => {
    const { netns, ipset } = make();
    ipset.addSet("ns1", "a", "inet", ["10.0.0.0/24", "10.0.0.1"]);
    ipset.addSet(undefined, "host-set", "inet6");
    expect(ipset.has("ns1", "a")).toBe(true);
    expect(ipset.has("ns2", "a")).toBe(false);
    expect(ipset.names(undefined)).toEqual(["host-set"]);
    netns.delete("ns1");
    expect(ipset.has("ns1", "a")).toBe(false);
    netns.add("ns1");
    expect(ipset.names("ns1")).toEqual([]);
    expect(() => ipset.addSet("gone", "a", "inet")).toThrow(/does not exist/);
    expect(() => ipset.addSet("ns2", "b", "inet", ["2001:db8::1"])).toThrow("FakeIpset.addSet: ipset v7.17: Syntax error: cannot parse 2001:db8::1: resolving to IPv4 address failed");
    expect(() => ipset.addSet(undefined, "host-set", "inet6")).toThrow("FakeIpset.addSet: ipset v7.17: Set cannot be created: set with the same name already exists");
  });

  it("shows sets for assertions: members sorted, and a save without the random initval (dump)", async () => {
    const { ipset } = make();
    await ipset.exec("ipset", ["restore"], {
      namespace: "ns1",
      input: "create b hash:net family inet6\nadd b 2001:db8::/64\nadd b 2001:db8::1/128\ncreate a hash:net family inet\nadd a 10.0.2.0/24\nadd a 10.0.1.5\n",
    });
    expect(ipset.members("ns1", "a")).toEqual(["10.0.1.5", "10.0.2.0/24"]);
    expect(ipset.members("ns1", "missing")).toBeUndefined();
    expect(ipset.dump("ns1")).toBe(
      [
        "create b hash:net family inet6 hashsize 1024 maxelem 65536 bucketsize 12",
        "add b 2001:db8::/64",
        "add b 2001:db8::1",
        "create a hash:net family inet hashsize 1024 maxelem 65536 bucketsize 12",
        "add a 10.0.1.5",
        "add a 10.0.2.0/24",
        "",
      ].join("\n"),
    );
    // The tool's own save prints a seed per set and the members in the order the fake holds them.
    const saved = (await ipset.exec("ipset", ["save", "a"], { namespace: "ns1" })).stdout;
    expect(saved).toMatch(/^create a hash:net family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x[0-9a-f]{8}\nadd a 10\.0\.2\.0\/24\nadd a 10\.0\.1\.5\n$/);
    expect(ipset.dump("ns2")).toBe("");
  });

  it("asks inUse before a destroy, with the namespace and the set's name", async () => {
    const asked: [string | undefined, string][] = [];
    const { ipset } = make((namespace, name) => {
      asked.push([namespace, name]);
      return name === "held";
    });
    ipset.addSet("ns1", "held", "inet");
    ipset.addSet("ns1", "free", "inet");
    expect((await ipset.exec("ipset", ["destroy", "held"], { namespace: "ns1", reject: false })).exitCode).toBe(1);
    expect((await ipset.exec("ipset", ["destroy", "free"], { namespace: "ns1", reject: false })).exitCode).toBe(0);
    expect(asked).toEqual([
      ["ns1", "held"],
      ["ns1", "free"],
    ]);
  });

  it("referencedBy: a set is held while a rule of either family in the namespace names it", async () => {
    const netns = new FakeNetns(["ns1"]);
    const iptables = new FakeIptablesRunner({ variant: "nft", netns });
    const inUse = FakeIpset.referencedBy(iptables);
    await iptables.restore({ namespace: "ns1", family: 6 }, "*filter\n:cw - [0:0]\n-A cw -m set ! --match-set v6set src -j RETURN\nCOMMIT\n");
    expect(inUse("ns1", "v6set")).toBe(true);
    expect(inUse("ns1", "v6")).toBe(false);
    expect(inUse(undefined, "v6set")).toBe(false);
    expect(inUse("missing", "v6set")).toBe(false);
  });

  it("missingSet: the first set an iptables-restore input names that does not exist, and its line", () => {
    const { ipset } = make();
    ipset.addSet("ns1", "there", "inet");
    expect(ipset.missingSet("ns1", "*filter\n-A x -m set --match-set there src -j ACCEPT\nCOMMIT\n")).toBeUndefined();
    const input = ["*filter", "# --match-set commented src", "-A x -m set --match-set there src -j ACCEPT", "-A x -m set ! --match-set gone dst -j DROP", "-A x -m set --set old src -j DROP", "COMMIT"].join("\n");
    expect(ipset.missingSet("ns1", input)).toEqual({ name: "gone", line: 4 });
    ipset.addSet("ns1", "gone", "inet");
    expect(ipset.missingSet("ns1", input)).toEqual({ name: "old", line: 5 });
    expect(ipset.missingSet("ns2", "-A x -m set --match-set there src\n")).toEqual({ name: "there", line: 1 });
  });

  it("throws NotModelledError for what it does not model", async () => {
    const { ipset } = make();
    ipset.addSet("ns1", "s", "inet");
    const run = (args: string[], input?: string) => ipset.exec("ipset", args, { namespace: "ns1", reject: false, ...(input !== undefined ? { input } : {}) });
    await expect(run(["list"])).rejects.toBeInstanceOf(NotModelledError);
    await expect(run(["destroy"])).rejects.toBeInstanceOf(NotModelledError);
    await expect(run(["create", "t", "hash:ip"])).rejects.toBeInstanceOf(NotModelledError);
    await expect(run(["create", "t", "hash:net", "family", "inet", "hashsize", "2048"])).rejects.toBeInstanceOf(NotModelledError);
    await expect(run(["add", "s", "10.0.0.1"])).rejects.toBeInstanceOf(NotModelledError);
    await expect(run(["restore"])).rejects.toBeInstanceOf(NotModelledError);
    await expect(run(["restore"], "swap s t\n")).rejects.toBeInstanceOf(NotModelledError);
    await expect(run(["restore"], "flush\n")).rejects.toBeInstanceOf(NotModelledError);
    await expect(run(["restore"], "add s 10.0.0.1 -exist\n")).rejects.toBeInstanceOf(NotModelledError);
    // A host name: the tool would resolve it.
    await expect(run(["restore"], "add s example.org\n")).rejects.toBeInstanceOf(NotModelledError);
  });

  it("answers for a namespace that does not exist as ip netns exec does", async () => {
    const { ipset } = make();
    expect(await ipset.exec("ipset", ["list", "-n"], { namespace: "nope", reject: false })).toEqual({
      stdout: "",
      stderr: 'Cannot open network namespace "nope": No such file or directory\n',
      exitCode: 255,
    });
  });
});
