import { listNamespaces, NamespaceGoneError, PREPARED_INPUT, RestoreError } from "@chainwarden/core";
import { describe, expect, it } from "vitest";
import { FakeHost } from "./fake-host.js";
import { NotModelledError } from "./not-modelled-error.js";

describe("FakeHost", () => {
  it("runs each tool on its fake, over one set of namespaces", async () => {
    const host = new FakeHost({ namespaces: ["ns-a"] });
    await host.exec("ip", ["netns", "add", "ns-b"]);
    expect(await listNamespaces(host)).toEqual(["ns-a", "ns-b"]);
    await host.restore({ namespace: "ns-b", family: 4 }, "*filter\n:x - [0:0]\nCOMMIT\n");
    await host.exec("ipset", ["create", "s1", "hash:net", "family", "inet"], { namespace: "ns-b" });
    host.conntrack.addConnection("ns-b", { protocol: "tcp", src: "10.0.0.1", dst: "10.0.0.2", sport: 1000, dport: 22 });
    await host.exec("ip", ["netns", "delete", "ns-b"]);
    // Gone for every tool.
    await expect(host.save({ namespace: "ns-b", family: 4 })).rejects.toBeInstanceOf(NamespaceGoneError);
    await expect(host.exec("ipset", ["list", "-n"], { namespace: "ns-b" })).rejects.toBeInstanceOf(NamespaceGoneError);
    await expect(host.exec("conntrack", ["-L"], { namespace: "ns-b" })).rejects.toBeInstanceOf(NamespaceGoneError);
    expect(host.events.map((e) => [e.what, e.namespace, e.family ?? e.args?.[0]])).toEqual([
      ["ip", undefined, "netns"],
      ["ip", undefined, "netns"],
      ["restore", "ns-b", 4],
      ["ipset", "ns-b", "create"],
      ["ip", undefined, "netns"],
      ["ipset", "ns-b", "list"],
      ["conntrack", "ns-b", "-L"],
    ]);
  });

  it("ties iptables and ipset as the kernel does: a rule naming a missing set is refused, a named set cannot be destroyed", async () => {
    const host = new FakeHost({ namespaces: ["ns-a"] });
    const t = { namespace: "ns-a", family: 4 as const };
    const rule = "*filter\n:x - [0:0]\n-A x -m set --match-set s1 src -j DROP\nCOMMIT\n";
    const refused = await host.restore(t, rule).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(RestoreError);
    expect((refused as RestoreError).stderr).toBe(
      "iptables-nft-restore v1.8.9 (nf_tables): Set s1 doesn't exist.\n\nError occurred at line: 3\nTry `iptables-nft-restore -h' or 'iptables-nft-restore --help' for more information.\n",
    );
    expect(host.iptables.dump(t)).toBe("");
    await host.exec("ipset", ["create", "s1", "hash:net", "family", "inet"], { namespace: "ns-a" });
    await host.restore(t, rule);
    const busy = await host.exec("ipset", ["destroy", "s1"], { namespace: "ns-a", reject: false });
    expect(busy).toEqual({ stdout: "", stderr: "ipset v7.17: Set cannot be destroyed: it is in use by a kernel component\n", exitCode: 1 });
  });

  it("logs what a command read, and a prepared command's run and cancel where they happen", async () => {
    const host = new FakeHost({ namespaces: ["ns-a"] });
    const ns = { namespace: "ns-a" };
    host.conntrack.addConnection("ns-a", { protocol: "tcp", src: "10.0.0.1", dst: "10.0.0.2", sport: 1000, dport: 22 });
    const dropped = host.prepare!("conntrack", ["-R", PREPARED_INPUT], ns);
    const used = host.prepare!("conntrack", ["-R", PREPARED_INPUT], ns);
    await host.exec("ip", ["-batch", "-"], { ...ns, input: "link add br0 type bridge\n" });
    dropped.cancel();
    dropped.cancel();
    const r = await used.run("-D -d 10.0.0.2\n");
    expect(r.stdout).toContain("src=10.0.0.1 dst=10.0.0.2");
    await expect(used.run("-D -d 10.0.0.2\n")).rejects.toThrow(/run twice/);
    expect(host.events.map(({ what, args, input, step }) => [what, args?.join(" "), input, step])).toEqual([
      ["conntrack", `-R ${PREPARED_INPUT}`, undefined, undefined],
      ["conntrack", `-R ${PREPARED_INPUT}`, undefined, undefined],
      ["ip", "-batch -", "link add br0 type bridge\n", undefined],
      ["conntrack", `-R ${PREPARED_INPUT}`, undefined, "cancel"],
      ["conntrack", `-R ${PREPARED_INPUT}`, "-D -d 10.0.0.2\n", "run"],
    ]);
    // A prepared command is one command.
    expect(host.commandsIn("ns-a", "conntrack")).toEqual([["-R", PREPARED_INPUT], ["-R", PREPARED_INPUT]]);
    expect(host.conntrack.preparedWaiting).toEqual([]);
  });

  it("leaves out what a runner may lack, and does not model processes", () => {
    const host = new FakeHost({ iptables: { restoreStream: false }, ip: { watch: false, listLinks: false }, conntrack: { prepare: false } });
    expect([host.restoreStream, host.watch, host.listLinks, host.prepare]).toEqual([undefined, undefined, undefined, undefined]);
    expect(() => host.spawn("node", ["x.js"])).toThrow(NotModelledError);
    const full = new FakeHost();
    expect([full.restoreStream, full.watch, full.listLinks, full.prepare].every((f) => typeof f === "function")).toBe(true);
  });
});
