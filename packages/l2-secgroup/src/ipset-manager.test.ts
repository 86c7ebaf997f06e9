import { FakeHost } from "@chainwarden/testing";
import { describe, expect, it } from "vitest";
import { IpsetManager, sanitize } from "./ipset-manager.js";

const NS = "ipsets";
const use = (name: string, members: string[], ethertype: "IPv4" | "IPv6" = "IPv4") => new Map([[name, { name, ethertype, members }]]);

describe("IpsetManager", () => {
  it("sanitizes members as hash:net needs them: /0 as two /1s, duplicates gone, sorted", () => {
    expect(sanitize(["10.0.0.2", "0.0.0.0/0", "10.0.0.2", "10.1.0.0/16"])).toEqual(["0.0.0.0/1", "10.0.0.2", "10.1.0.0/16", "128.0.0.0/1"]);
    expect(sanitize(["::/0"])).toEqual(["8000::/1", "::/1"]);
  });

  it("creates, refreshes by swap only when members change, and adopts sets an earlier run left", async () => {
    const host = new FakeHost({ namespaces: [NS] });
    const first = new IpsetManager({ runner: host, namespace: NS });
    await first.ensure(use("NIPv4g", ["10.0.0.1"]));
    expect(host.commandsIn(NS, "ipset").map((args) => args.join(" "))).toEqual(["list -n", "create -exist NIPv4g hash:net family inet", "restore -exist", "swap NIPv4g-n NIPv4g", "destroy NIPv4g-n"]);
    const calls = host.ipset.calls.length;
    expect(await first.ensure(use("NIPv4g", ["10.0.0.1"]))).toEqual([]);
    expect(host.ipset.calls.slice(calls)).toEqual([]);

    // A restarted agent: the set exists with unknown content; it is rebuilt, an unwanted one destroyed.
    await first.ensure(new Map([...use("NIPv4g", ["10.0.0.1"]), ...use("NIPv4old", ["10.9.9.9"])]));
    const second = new IpsetManager({ runner: host, namespace: NS });
    expect(await second.ensure(use("NIPv4g", ["10.0.0.1", "10.0.0.2"]))).toEqual(["NIPv4g"]);
    expect(await second.destroyUnused(use("NIPv4g", []))).toEqual(["NIPv4old"]);
    expect(host.ipset.dump(NS)).toBe("create NIPv4g hash:net family inet hashsize 1024 maxelem 65536 bucketsize 12\nadd NIPv4g 10.0.0.1\nadd NIPv4g 10.0.0.2\n");
  });

  it("a set still named by a rule is kept and destroyed after a later apply", async () => {
    const host = new FakeHost({ namespaces: [NS] });
    const m = new IpsetManager({ runner: host, namespace: NS });
    await m.ensure(use("NIPv6g", ["2001:db8::1"], "IPv6"));
    await host.restore({ namespace: NS, family: 6 }, "*filter\n:x - [0:0]\n-A x -m set --match-set NIPv6g src -j RETURN\nCOMMIT\n");
    expect(await m.destroyUnused(new Map())).toEqual([]);
    expect(m.sets.has("NIPv6g")).toBe(true);
    await host.restore({ namespace: NS, family: 6 }, "*filter\n-F x\n-X x\nCOMMIT\n");
    expect(await m.destroyUnused(new Map())).toEqual(["NIPv6g"]);
  });
});
