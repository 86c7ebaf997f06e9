import { CommandError, NamespaceGoneError, type AuxCommand } from "@chainwarden/core";
import { describe, expect, it } from "vitest";
import { FakeIp } from "./fake-ip.js";
import { FakeIptablesRunner } from "./fake-iptables-runner.js";
import { FakeNetns } from "./fake-netns.js";
import { NotModelledError } from "./not-modelled-error.js";

const NS = "cw-unit";
const OTHER = "cw-other";
const fake = (options: ConstructorParameters<typeof FakeIp>[0] = {}) => new FakeIp({ namespaces: [NS, OTHER], ...options });
const ip = (f: FakeIp, namespace: string | undefined, ...args: string[]) => f.exec("ip", args, { namespace });
const caught = async (p: Promise<unknown>): Promise<unknown> =>
  p.then(
    () => undefined,
    (e: unknown) => e,
  );
/** A monitor's lines, and the errors it ended with. */
const watch = (f: FakeIp, namespace: string | undefined) => {
  const lines: string[] = [];
  const exits: Error[] = [];
  const w = f.watch!("ip", ["-o", "monitor", "link"], { namespace, onLine: (l) => void lines.push(l), onExit: (e) => void exits.push(e) });
  return { lines, exits, stop: () => w.stop() };
};

describe("FakeIp", () => {
  describe("test setup", () => {
    it("adds taps as Nova does (up, no carrier), which monitors see and listings list", async () => {
      const f = fake();
      const m = watch(f, NS);
      f.addDevice(NS, "tapa", "tapb");
      expect(f.links(NS)).toEqual(["lo", "tapa", "tapb"]);
      expect(await f.listLinks!(NS)).toEqual(["lo", "tapa", "tapb"]);
      expect(f.device(NS, "tapa")).toMatchObject({ kind: "tap", up: true, carrier: false, mtu: 1500, ifindex: 2, addresses: [] });
      expect(m.lines.filter((l) => l.startsWith("2: tapa: ")).at(-1)).toMatch(/^2: tapa: <NO-CARRIER,BROADCAST,MULTICAST,UP> mtu 1500 qdisc pfifo_fast state DOWN group default \\ {4}link\/ether /);
      f.removeDevice(NS, "tapa");
      expect(m.lines.at(-1)).toMatch(/^Deleted 2: tapa: /);
      expect(f.links(NS)).toEqual(["lo", "tapb"]);
    });

    it("refuses a device twice, one that is not there, and a namespace that is not there, in ip's words", () => {
      const f = fake();
      f.addDevice(NS, "tapa");
      expect(() => f.addDevice(NS, "tapa")).toThrow("FakeIp.addDevice tapa: ioctl(TUNSETIFF): Device or resource busy");
      expect(() => f.removeDevice(NS, "tapz")).toThrow('FakeIp.removeDevice tapz: Cannot find device "tapz"');
      expect(() => f.addDevice("cw-nowhere", "tapa")).toThrow('FakeIp: namespace "cw-nowhere" does not exist');
      expect(f.device("cw-nowhere", "tapa")).toBeUndefined();
      expect(f.device(NS, "tapz")).toBeUndefined();
    });

    it("describes a device: its kind, state, bridge, peer and addresses", async () => {
      const f = fake();
      await ip(f, NS, "link", "add", "tapx", "type", "veth", "peer", "name", "qrx", "netns", OTHER);
      await ip(f, NS, "link", "add", "br0", "type", "bridge");
      await ip(f, NS, "link", "set", "tapx", "master", "br0", "mtu", "1450", "up");
      await f.exec("ip", ["-batch", "-"], { namespace: OTHER, input: "link set qrx address fa:16:3e:00:00:01 up\naddress add 10.0.0.1/24 dev qrx\n" });
      expect(f.device(NS, "tapx")).toEqual({
        name: "tapx",
        ifindex: 2,
        kind: "veth",
        up: true,
        carrier: true,
        mtu: 1450,
        mac: expect.stringMatching(/^02:/),
        master: "br0",
        peer: { namespace: OTHER, name: "qrx" },
        addresses: [expect.stringMatching(/^fe80::.*\/64$/)],
      });
      expect(f.device(OTHER, "qrx")).toMatchObject({ mac: "fa:16:3e:00:00:01", addresses: ["10.0.0.1/24", "fe80::f816:3eff:fe00:1/64"] });
      expect(f.device(NS, "br0")).toMatchObject({ kind: "bridge", mtu: 1450, mac: f.device(NS, "tapx")!.mac, up: false, carrier: false });
    });

    it("gives the routing table as ip route show prints it, without the trailing space", async () => {
      const f = fake();
      await f.exec("ip", ["-force", "-batch", "-"], {
        namespace: NS,
        input: "link add qg type veth peer name tap\nlink set tap up\nlink set qg up\naddress replace 200.200.128.2/24 brd + scope global dev qg\nroute replace default via 200.200.128.1 dev qg\n",
      });
      expect(f.routes(NS, 4)).toEqual(["default via 200.200.128.1 dev qg", "200.200.128.0/24 dev qg proto kernel scope link src 200.200.128.2"]);
      expect(f.routes(NS, 6)).toEqual(["fe80::/64 dev qg proto kernel metric 256 pref medium", "fe80::/64 dev tap proto kernel metric 256 pref medium"]);
    });

    it("reads a namespace's sysctls, the default until set", async () => {
      const f = fake();
      expect(f.sysctl(NS, "net.ipv4.ip_forward")).toBe("0");
      await ip(f, undefined, "netns", "exec", NS, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1");
      expect(f.sysctl(NS, "net.ipv4.ip_forward")).toBe("1");
      expect(f.sysctl(OTHER, "net.ipv4.ip_forward")).toBe("0");
      expect(() => f.sysctl(NS, "net.core.somaxconn")).toThrow(NotModelledError);
    });

    it("promotes a secondary address where promote_secondaries is set, and deletes it with its primary where not", async () => {
      const f = fake();
      const addrs = (ns: string) => f.device(ns, "va")!.addresses.filter((c) => !c.includes(":"));
      for (const ns of [NS, OTHER]) {
        await ip(f, ns, "link", "add", "va", "type", "veth", "peer", "name", "vb");
        await ip(f, ns, "link", "set", "va", "up");
        await ip(f, ns, "link", "set", "vb", "up");
        for (const cidr of ["200.200.128.2/24", "200.200.128.3/32", "200.200.128.9/24"]) await ip(f, ns, "addr", "add", cidr, "dev", "va");
      }
      await ip(f, undefined, "netns", "exec", NS, "sysctl", "-q", "-w", "net.ipv4.conf.all.promote_secondaries=1");
      for (const ns of [NS, OTHER]) await ip(f, ns, "addr", "del", "200.200.128.2/24", "dev", "va");
      expect(addrs(NS)).toEqual(["200.200.128.3/32", "200.200.128.9/24"]);
      expect(f.routes(NS, 4)).toEqual(["200.200.128.0/24 dev va proto kernel scope link src 200.200.128.9"]);
      expect(addrs(OTHER)).toEqual(["200.200.128.3/32"]);
      expect(f.routes(OTHER, 4)).toEqual([]);
    });

    it("starts with the namespaces it is given, and the host's own with lo up", async () => {
      const f = new FakeIp({ namespaces: [NS] });
      expect(f.hasNamespace(NS)).toBe(true);
      expect(f.netns.list()).toEqual([NS]);
      expect(f.links(undefined)).toEqual(["lo"]);
      expect(f.device(undefined, "lo")).toMatchObject({ up: true, addresses: ["127.0.0.1/8", "::1/128"] });
      expect(f.device(NS, "lo")).toMatchObject({ up: false, addresses: [] });
      expect(await f.listLinks!()).toEqual(["lo"]);
      f.addNamespace(OTHER);
      f.deleteNamespace(NS);
      expect(f.netns.list()).toEqual([OTHER]);
      expect(() => f.deleteNamespace(NS)).toThrow(`Cannot remove namespace file "/run/netns/${NS}": No such file or directory`);
    });
  });

  describe("the command log", () => {
    it("records each command, batch line and what netns exec ran, where it ran", async () => {
      const f = fake();
      await ip(f, NS, "link", "set", "lo", "up");
      await f.exec("ip", ["-force", "-batch", "-"], { input: `netns exec ${NS} ip link set lo up\nnetns exec ${NS} sysctl -q -w net.ipv4.ip_forward=1\nlink set nodev up\n`, reject: false });
      await ip(f, undefined, "-n", OTHER, "-j", "addr", "show");
      expect(f.commandsIn(NS)).toEqual(["ip link set lo up", "ip link set lo up", "sysctl -q -w net.ipv4.ip_forward=1"]);
      expect(f.commandsIn(undefined)).toEqual([
        "ip -force -batch -",
        `  | netns exec ${NS} ip link set lo up`,
        `  | netns exec ${NS} sysctl -q -w net.ipv4.ip_forward=1`,
        "  | link set nodev up",
      ]);
      expect(f.commandsIn(OTHER)).toEqual([`ip -n ${OTHER} -j addr show`]);
      const batch = f.commands.find((c) => c.argv[1] === "-force")!;
      expect(batch).toMatchObject({ namespace: undefined, exitCode: 1, input: expect.stringContaining("nodev") });
      expect(f.commands.filter((c) => c.batchLine !== undefined).map((c) => [c.batchLine, c.exitCode])).toEqual([
        [1, 0],
        [2, 0],
        [3, 1],
      ]);
    });
  });

  describe("settling as ExecaRunner does", () => {
    it("throws CommandError for a failure unless reject is false, NamespaceGoneError for a namespace that is gone", async () => {
      const f = fake();
      const err = await caught(ip(f, NS, "link", "set", "nodev", "up"));
      expect(err).toBeInstanceOf(CommandError);
      expect(err).toMatchObject({ command: ["ip", "link", "set", "nodev", "up"], exitCode: 1, stderr: 'Cannot find device "nodev"\n' });
      expect(await f.exec("ip", ["link", "set", "nodev", "up"], { namespace: NS, reject: false })).toEqual({ stdout: "", stderr: 'Cannot find device "nodev"\n', exitCode: 1 });
      expect(await caught(ip(f, "cw-nowhere", "link", "show"))).toBeInstanceOf(NamespaceGoneError);
      expect(await caught(f.listLinks!("cw-nowhere"))).toBeInstanceOf(NamespaceGoneError);
    });
  });

  describe("monitors", () => {
    it("counts the watches and listings, and kills a namespace's monitors as a kill would", async () => {
      const f = fake();
      const a = watch(f, NS);
      const b = watch(f, NS);
      watch(f, OTHER);
      expect(f.monitorStarts).toBe(3);
      expect(f.monitorCount(NS)).toBe(2);
      f.killMonitors(NS);
      expect(f.monitorCount(NS)).toBe(0);
      expect(f.monitorCount(OTHER)).toBe(1);
      for (const m of [a, b]) {
        expect(m.exits).toHaveLength(1);
        expect(m.exits[0]).toBeInstanceOf(CommandError);
        expect(m.exits[0]!.message).toBe(`ip -n ${NS} -o monitor link failed (exit ?): killed by SIGKILL`);
      }
      f.addDevice(NS, "tapa");
      expect(a.lines).toEqual([]);
      await f.listLinks!(NS);
      await ip(f, NS, "-o", "link", "show");
      await ip(f, NS, "-j", "addr", "show");
      expect(f.deviceLists).toBe(2);
    });

    it("stops reporting once stopped", () => {
      const f = fake();
      const m = watch(f, NS);
      f.addDevice(NS, "tapa");
      const seen = m.lines.length;
      expect(seen).toBeGreaterThan(0);
      m.stop();
      m.stop();
      f.addDevice(NS, "tapb");
      expect(m.lines).toHaveLength(seen);
      expect(f.monitorCount(NS)).toBe(0);
    });

    it("can be left out, with listLinks, as a runner without them", () => {
      const f = fake({ watch: false, listLinks: false });
      expect(f.watch).toBeUndefined();
      expect(f.listLinks).toBeUndefined();
    });
  });

  describe("namespaces shared with the other fakes", () => {
    it("drops a veth's peer when its namespace goes through another fake", async () => {
      const netns = new FakeNetns([NS, OTHER]);
      const f = new FakeIp({ netns });
      const iptables = new FakeIptablesRunner({ variant: "nft", netns });
      await ip(f, NS, "link", "add", "tapx", "type", "veth", "peer", "name", "qrx", "netns", OTHER);
      const m = watch(f, OTHER);
      iptables.deleteNamespace(NS);
      expect(f.device(OTHER, "qrx")).toBeUndefined();
      expect(m.lines).toEqual([expect.stringMatching(/^Deleted 2: qrx@NONE: /)]);
      // A namespace made again under the old name is a new one.
      iptables.addNamespace(NS);
      expect(f.links(NS)).toEqual(["lo"]);
    });

    it("lists the host's id for a namespace its veths reach", async () => {
      const f = fake();
      await ip(f, undefined, "link", "add", "hv", "type", "veth", "peer", "name", "nv", "netns", OTHER);
      expect((await ip(f, undefined, "netns", "list")).stdout).toBe(`${NS}\n${OTHER} (id: 0)\n`);
      expect((await ip(f, OTHER, "-o", "link", "show", "nv")).stdout).toMatch(/link-netnsid 0\n$/);
      await ip(f, undefined, "link", "del", "hv");
      expect(f.links(OTHER)).toEqual(["lo"]);
    });
  });

  describe("what it does not model", () => {
    it("throws NotModelledError, naming itself, rather than guessing", async () => {
      const f = fake();
      await ip(f, NS, "link", "add", "va", "type", "veth", "peer", "name", "vb");
      const refused = [
        ["neigh", "show"],
        ["addr", "show"],
        ["-j", "-4", "addr", "show"],
        ["link", "add", "d0", "type", "dummy"],
        ["link", "set", "lo", "mtu", "1400"],
        // IPv6 leaves a device below 1280.
        ["link", "set", "va", "mtu", "1000"],
        ["route", "show", "table", "local"],
        ["route", "replace", "10.0.0.0/8", "via", "10.0.0.1", "onlink"],
        ["-d", "link", "show"],
        ["netns", "exec", NS, "ping", "-c1", "10.0.0.1"],
        ["netns", "exec", NS, "sysctl", "-w", "net.core.somaxconn=1"],
      ];
      for (const args of refused) expect(await caught(ip(f, NS, ...args)), args.join(" ")).toBeInstanceOf(NotModelledError);
      expect(((await caught(ip(f, NS, "neigh", "show"))) as Error).message).toBe("ip neigh show is not modelled by FakeIp");
      expect(await caught(f.exec("ipset" as AuxCommand as "ip", ["list"]))).toBeInstanceOf(NotModelledError);
      expect(() => f.watch!("ip", ["monitor", "address"], { onLine: () => {} })).toThrow(NotModelledError);
      // In a batch, ip forks for netns exec and the child reads on: not modelled for a missing namespace.
      expect(await caught(f.exec("ip", ["-batch", "-"], { input: "netns exec cw-nowhere ip link show\n" }))).toBeInstanceOf(NotModelledError);
    });

    it("answers a word that is no ip object as ip does", async () => {
      const f = fake();
      expect(await f.exec("ip", ["bogus"], { namespace: NS, reject: false })).toEqual({ stdout: "", stderr: 'Object "bogus" is unknown, try "ip help".\n', exitCode: 1 });
    });

    it("keeps FakeIptablesRunner's name in the errors of its callers", () => {
      expect(new NotModelledError("exec(x)").message).toBe("exec(x) is not modelled by FakeIptablesRunner");
    });
  });
});
