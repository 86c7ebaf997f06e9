import { linkLocalFromMac, NamespaceGoneError, type ExecResult, type IpRunner } from "@chainwarden/core";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

/** What one test of the contract gets from `setup`. */
export interface IpRunnerContractSubject {
  runner: IpRunner;
  /** Two namespaces made for this test, fresh (only `lo`, down). */
  namespaces: readonly [string, string];
  /** A namespace that does not exist (one that existed and was deleted). */
  goneNamespace: string;
  /** A name the test may give a namespace it makes with `ip netns add`; `dispose` deletes it if it exists. */
  spareName(): string;
  /** Deletes what `setup` made and every spare name in use, also when the test failed. */
  dispose(): Promise<void>;
}

/** One device event: `+` added or changed, `-` deleted. */
type Event = { name: string; kind: "+" | "-" };

// The line as packages/l2-secgroup's device-watch parses it: `5: tap1@peer0: <…>`, `Deleted 5: …`.
const LINK_EVENT = /^(Deleted )?\d+:\s+([^:@\s]+)(?:@[^:\s]*)?:\s/;
const NO_LIFETIME = 4294967295;
const SETTLE = { timeout: 5_000, interval: 50 };

/**
 * The behaviour of `ip` (iproute2 on Linux) that Chainwarden relies on, checked against the real
 * tool through `ExecaRunner` and against `FakeIp`, so the fake cannot drift from the kernel:
 * namespaces, veth pairs (also across namespaces), bridges, taps, addresses, routes, `-batch`,
 * the sysctls a router namespace sets, `listLinks` and the link monitor. Outputs and error texts
 * are compared byte for byte where our code reads them, the JSON by the fields it has. Every
 * command runs inside the test's namespaces (`ip netns` commands only on the test's own names).
 * Where the kernel settles later (a bridge's carrier, a namespace's teardown) the check waits.
 */
export function describeIpRunnerContract(name: string, setup: () => Promise<IpRunnerContractSubject>): void {
  describe(`IpRunner contract: ${name}`, () => {
    let s: IpRunnerContractSubject;
    let A: string;
    let B: string;
    let stops: (() => void)[];

    beforeEach(async () => {
      s = await setup();
      [A, B] = s.namespaces;
      stops = [];
    });
    afterEach(async () => {
      for (const stop of stops ?? []) stop();
      await s?.dispose();
    });

    const ip = (namespace: string | undefined, ...args: string[]) => s.runner.exec("ip", args, { namespace, reject: false });
    const ipOk = async (namespace: string | undefined, ...args: string[]) => {
      const r = await ip(namespace, ...args);
      expect({ args, exitCode: r.exitCode, stderr: r.stderr }).toEqual({ args, exitCode: 0, stderr: "" });
      return r;
    };
    const failure = (r: ExecResult) => ({ exitCode: r.exitCode, stderr: r.stderr });
    const batch = (namespace: string | undefined, lines: string[], options: { force?: boolean; family?: 4 | 6 } = {}) =>
      s.runner.exec("ip", [...(options.family ? [`-${options.family}`] : []), ...(options.force ? ["-force"] : []), "-batch", "-"], {
        namespace,
        input: `${lines.join("\n")}\n`,
        reject: false,
      });
    const linkJson = async (namespace: string, dev: string) => (JSON.parse((await ipOk(namespace, "-j", "link", "show", "dev", dev)).stdout) as Record<string, unknown>[])[0]!;
    const mac = async (namespace: string, dev: string) => (await linkJson(namespace, dev))["address"] as string;
    const addrInfo = async (namespace: string, dev: string) =>
      (JSON.parse((await ipOk(namespace, "-j", "addr", "show", "dev", dev)).stdout) as { addr_info: Record<string, unknown>[] }[])[0]!.addr_info;
    /** IPv4 addresses by the fields ip prints for them (lifetimes aside). */
    const inet = async (namespace: string, dev: string) =>
      (await addrInfo(namespace, dev)).filter((a) => a["family"] === "inet").map(({ valid_life_time, preferred_life_time, ...rest }) => rest);
    /** IPv6 addresses by what our code reads (DAD's `tentative` comes and goes with time). */
    const inet6 = async (namespace: string, dev: string) =>
      (await addrInfo(namespace, dev)).filter((a) => a["family"] === "inet6").map((a) => ({ local: a["local"], prefixlen: a["prefixlen"], scope: a["scope"] }));
    const routes = async (namespace: string, family: 4 | 6) => (await ipOk(namespace, `-${family}`, "route", "show")).stdout;
    const names = async (namespace: string) =>
      (await ipOk(namespace, "-o", "link", "show")).stdout
        .split("\n")
        .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1])
        .filter((n): n is string => n !== undefined);
    const vethPair = async (namespace: string, a: string, b: string) => {
      await ipOk(namespace, "link", "add", a, "type", "veth", "peer", "name", b);
      await ipOk(namespace, "link", "set", a, "up");
      await ipOk(namespace, "link", "set", b, "up");
    };
    const linkLocal = async (namespace: string, dev: string) => ({ local: linkLocalFromMac(await mac(namespace, dev)), prefixlen: 64, scope: "link" });
    /** A locally administered unicast MAC, as the kernel makes them at random. */
    const RANDOM_MAC = /^[0-9a-f][26ae](:[0-9a-f]{2}){5}$/;

    describe("namespaces", () => {
      it("adds, lists, tells the processes of and deletes a namespace, with ip's errors", async () => {
        const n = s.spareName();
        await ipOk(undefined, "netns", "add", n);
        const listed = (await ipOk(undefined, "netns", "list")).stdout.split("\n").filter(Boolean);
        for (const line of listed) expect(line).toMatch(/^\S+( \(id: \d+\))?$/);
        expect(listed.map((l) => l.split(" ")[0])).toEqual(expect.arrayContaining([n, A, B]));
        expect(failure(await ip(undefined, "netns", "add", n))).toEqual({ exitCode: 1, stderr: `Cannot create namespace file "/run/netns/${n}": File exists\n` });
        expect((await ipOk(undefined, "netns", "pids", n)).stdout).toBe("");
        await ipOk(undefined, "netns", "delete", n);
        expect((await ipOk(undefined, "netns", "list")).stdout.split("\n").map((l) => l.split(" ")[0])).not.toContain(n);
        expect(failure(await ip(undefined, "netns", "delete", n))).toEqual({ exitCode: 1, stderr: `Cannot remove namespace file "/run/netns/${n}": No such file or directory\n` });
        expect(failure(await ip(undefined, "netns", "del", n))).toEqual({ exitCode: 1, stderr: `Cannot remove namespace file "/run/netns/${n}": No such file or directory\n` });
        expect(failure(await ip(undefined, "netns", "pids", n))).toEqual({ exitCode: 1, stderr: "Cannot open network namespace: No such file or directory\n" });
        expect(failure(await ip(undefined, "netns", "add", "a/b"))).toEqual({ exitCode: 255, stderr: 'Invalid netns name "a/b"\n' });
      });

      it("starts a namespace with lo down and no address; up, lo has its loopback addresses and no main route", async () => {
        expect((await ipOk(A, "-o", "link", "show")).stdout).toBe(
          "1: lo: <LOOPBACK> mtu 65536 qdisc noop state DOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n",
        );
        const lo = { ifindex: 1, ifname: "lo", mtu: 65536, group: "default", txqlen: 1000, link_type: "loopback", address: "00:00:00:00:00:00", broadcast: "00:00:00:00:00:00" };
        expect(JSON.parse((await ipOk(A, "-j", "addr", "show")).stdout)).toEqual([{ ...lo, flags: ["LOOPBACK"], qdisc: "noop", operstate: "DOWN", addr_info: [] }]);
        await ipOk(A, "link", "set", "lo", "up");
        expect((await ipOk(A, "link", "show")).stdout).toBe(
          "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\n    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n",
        );
        expect(JSON.parse((await ipOk(A, "-j", "addr", "show")).stdout)).toEqual([
          {
            ...lo,
            flags: ["LOOPBACK", "UP", "LOWER_UP"],
            qdisc: "noqueue",
            operstate: "UNKNOWN",
            addr_info: [
              { family: "inet", local: "127.0.0.1", prefixlen: 8, scope: "host", label: "lo", valid_life_time: NO_LIFETIME, preferred_life_time: NO_LIFETIME },
              { family: "inet6", local: "::1", prefixlen: 128, scope: "host", valid_life_time: NO_LIFETIME, preferred_life_time: NO_LIFETIME },
            ],
          },
        ]);
        expect(JSON.parse((await ipOk(A, "-j", "link", "show")).stdout)).toEqual([{ ...lo, flags: ["LOOPBACK", "UP", "LOWER_UP"], qdisc: "noqueue", operstate: "UNKNOWN", linkmode: "DEFAULT" }]);
        expect(await routes(A, 4)).toBe("");
        expect(await routes(A, 6)).toBe("");
        expect((await ipOk(A, "-j", "route", "show")).stdout).toBe("[]\n");
      });

      it("answers for a namespace that is gone with exit 255 and ip's words, which the runner throws as NamespaceGoneError", async () => {
        const gone = s.goneNamespace;
        const stderr = `Cannot open network namespace "${gone}": No such file or directory\n`;
        await expect(s.runner.exec("ip", ["link", "show"], { namespace: gone })).rejects.toBeInstanceOf(NamespaceGoneError);
        await expect(s.runner.exec("ip", ["-batch", "-"], { namespace: gone, input: "link set lo up\n" })).rejects.toBeInstanceOf(NamespaceGoneError);
        expect(failure(await ip(gone, "-j", "addr", "show"))).toEqual({ exitCode: 255, stderr });
        expect(failure(await ip(undefined, "netns", "exec", gone, "ip", "link", "show"))).toEqual({ exitCode: 255, stderr });
        if (s.runner.listLinks) await expect(s.runner.listLinks(gone)).rejects.toBeInstanceOf(NamespaceGoneError);
      });

      it("takes the veth peers in other namespaces with a namespace that is deleted", async () => {
        const n = s.spareName();
        await ipOk(undefined, "netns", "add", n);
        await ipOk(n, "link", "add", "x1", "type", "veth", "peer", "name", "x2", "netns", B);
        await ipOk(n, "link", "set", "x1", "up");
        await ipOk(B, "link", "set", "x2", "up");
        expect(await names(B)).toEqual(["lo", "x2"]);
        await ipOk(undefined, "netns", "delete", n);
        // The kernel tears a namespace down in the background.
        await vi.waitFor(async () => expect(await names(B)).toEqual(["lo"]), SETTLE);
      });
    });

    describe("devices", () => {
      it("makes a veth pair across namespaces, each end shown with its peer's ifindex and namespace", async () => {
        await ipOk(A, "link", "add", "tapx", "type", "veth", "peer", "name", "qrx", "netns", B);
        const [macA, macB] = [await mac(A, "tapx"), await mac(B, "qrx")];
        expect(macA).toMatch(RANDOM_MAC);
        expect(macB).toMatch(RANDOM_MAC);
        expect(macA).not.toBe(macB);
        const tail = (m: string, ns: string) => `link/ether ${m} brd ff:ff:ff:ff:ff:ff link-netns ${ns}`;
        expect((await ipOk(A, "-o", "link", "show", "tapx")).stdout).toBe(
          `2: tapx@if2: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN mode DEFAULT group default qlen 1000\\    ${tail(macA, B)}\n`,
        );
        expect((await ipOk(B, "-o", "link", "show", "qrx")).stdout).toBe(
          `2: qrx@if2: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN mode DEFAULT group default qlen 1000\\    ${tail(macB, A)}\n`,
        );
        const common = { mtu: 1500, qdisc: "noop", linkmode: "DEFAULT", group: "default", txqlen: 1000, link_type: "ether", broadcast: "ff:ff:ff:ff:ff:ff", link_netnsid: 0 };
        expect(await linkJson(A, "tapx")).toEqual({ ...common, ifindex: 2, link_index: 2, ifname: "tapx", flags: ["BROADCAST", "MULTICAST"], operstate: "DOWN", address: macA });

        // Up at one end only: no carrier. The peer has the same ifindex, so not "lower layer down".
        await ipOk(A, "link", "set", "tapx", "up");
        expect(await linkJson(A, "tapx")).toMatchObject({ flags: ["NO-CARRIER", "BROADCAST", "MULTICAST", "UP"], operstate: "DOWN", qdisc: "noqueue" });
        expect(await inet6(A, "tapx")).toEqual([]);
        await ipOk(B, "link", "set", "qrx", "up");
        for (const [ns, dev] of [[A, "tapx"], [B, "qrx"]] as const) {
          expect(await linkJson(ns, dev)).toMatchObject({ flags: ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"], operstate: "UP" });
          expect(await inet6(ns, dev)).toEqual([await linkLocal(ns, dev)]);
        }
        expect(await routes(A, 6)).toBe("fe80::/64 dev tapx proto kernel metric 256 pref medium\n");

        expect(failure(await ip(A, "link", "add", "tapx", "type", "veth", "peer", "name", "qry", "netns", B))).toEqual({ exitCode: 2, stderr: "RTNETLINK answers: File exists\n" });
        expect(failure(await ip(A, "link", "add", "tapz", "type", "veth", "peer", "name", "qrx", "netns", B))).toEqual({ exitCode: 2, stderr: "RTNETLINK answers: File exists\n" });
        expect(failure(await ip(A, "link", "add", "tapw", "type", "veth", "peer", "name", "qrw", "netns", s.goneNamespace))).toEqual({
          exitCode: 255,
          stderr: `Error: argument "${s.goneNamespace}" is wrong: Invalid "netns" value\n\n`,
        });
        expect(failure(await ip(A, "link", "add", "averyveryverylongname", "type", "veth", "peer", "name", "x1"))).toEqual({ exitCode: 2, stderr: "Error: Attribute failed policy validation.\n" });
        expect(failure(await ip(A, "link", "add", "x1", "type", "veth", "peer", "name", "averyveryverylongname"))).toEqual({
          exitCode: 255,
          stderr: 'Error: argument "averyveryverylongname" is wrong: "name" not a valid ifname\n',
        });

        // A namespace numbers the namespaces its veths reach in the order it meets them.
        const n = s.spareName();
        await ipOk(undefined, "netns", "add", n);
        await ipOk(A, "link", "add", "tapy", "type", "veth", "peer", "name", "qry", "netns", n);
        expect(await linkJson(A, "tapy")).toMatchObject({ ifindex: 3, link_index: 2, link_netnsid: 1 });
        expect(await linkJson(n, "qry")).toMatchObject({ ifindex: 2, link_index: 3, link_netnsid: 0 });

        // Deleting one end deletes the pair.
        await ipOk(B, "link", "del", "qrx");
        expect(await names(A)).toEqual(["lo", "tapy"]);
        expect(await names(B)).toEqual(["lo"]);
      });

      it("shows a veth pair in one namespace by peer name, M-DOWN while the peer is down, and their link-local routes", async () => {
        await ipOk(A, "link", "add", "va", "type", "veth", "peer", "name", "vb");
        const [ma, mb] = [await mac(A, "va"), await mac(A, "vb")];
        expect((await ipOk(A, "-o", "link", "show")).stdout).toBe(
          [
            "1: lo: <LOOPBACK> mtu 65536 qdisc noop state DOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00",
            `2: vb@va: <BROADCAST,MULTICAST,M-DOWN> mtu 1500 qdisc noop state DOWN mode DEFAULT group default qlen 1000\\    link/ether ${mb} brd ff:ff:ff:ff:ff:ff`,
            `3: va@vb: <BROADCAST,MULTICAST,M-DOWN> mtu 1500 qdisc noop state DOWN mode DEFAULT group default qlen 1000\\    link/ether ${ma} brd ff:ff:ff:ff:ff:ff`,
            "",
          ].join("\n"),
        );
        expect(await linkJson(A, "va")).toMatchObject({ ifindex: 3, link: "vb", ifname: "va" });
        await ipOk(A, "link", "set", "va", "up");
        expect(await linkJson(A, "va")).toMatchObject({ flags: ["NO-CARRIER", "BROADCAST", "MULTICAST", "UP", "M-DOWN"], operstate: "LOWERLAYERDOWN" });
        expect(await linkJson(A, "vb")).toMatchObject({ flags: ["BROADCAST", "MULTICAST"], operstate: "DOWN" });
        // The end brought up last gets its link-local address (and route) first.
        await ipOk(A, "link", "set", "vb", "up");
        expect(await routes(A, 6)).toBe("fe80::/64 dev vb proto kernel metric 256 pref medium\nfe80::/64 dev va proto kernel metric 256 pref medium\n");
        expect(await inet6(A, "va")).toEqual([await linkLocal(A, "va")]);

        // A new MAC keeps the link-local address made from the old one.
        const before = await linkLocal(A, "va");
        await ipOk(A, "link", "set", "va", "address", "02:11:22:33:44:55");
        expect(await linkJson(A, "va")).toMatchObject({ address: "02:11:22:33:44:55" });
        expect(await inet6(A, "va")).toEqual([before]);

        // Down: its IPv6 addresses and routes go; the peer's route stays, without carrier.
        await ipOk(A, "link", "set", "va", "down");
        expect(await inet6(A, "va")).toEqual([]);
        expect(await linkJson(A, "va")).toMatchObject({ flags: ["BROADCAST", "MULTICAST"], operstate: "DOWN", qdisc: "noqueue" });
        expect(await routes(A, 6)).toBe("fe80::/64 dev vb proto kernel metric 256 linkdown pref medium\n");
      });

      it("sets MTU and MAC, and refuses what ip and the kernel refuse", async () => {
        await ipOk(A, "link", "add", "va", "type", "veth", "peer", "name", "vb");
        await ipOk(A, "link", "set", "va", "mtu", "1450");
        await ipOk(A, "link", "set", "dev", "vb", "address", "02:11:22:33:44:55", "mtu", "9000", "up");
        expect(await linkJson(A, "va")).toMatchObject({ mtu: 1450 });
        expect(await linkJson(A, "vb")).toMatchObject({ mtu: 9000, address: "02:11:22:33:44:55", flags: ["NO-CARRIER", "BROADCAST", "MULTICAST", "UP", "M-DOWN"] });
        await ipOk(A, "link", "set", "va", "mtu", "65535");
        const refusals: [string[], number, string][] = [
          [["link", "set", "va", "mtu", "65536"], 2, "Error: mtu greater than device maximum.\n"],
          [["link", "set", "va", "mtu", "10"], 2, "Error: mtu less than device minimum.\n"],
          [["link", "set", "va", "mtu", "x"], 255, 'Error: argument "x" is wrong: Invalid "mtu" value\n\n'],
          [["link", "set", "va", "address", "zz"], 1, '"zz" is invalid lladdr.\n'],
          [["link", "set", "va", "address", "01:00:00:00:00:01"], 2, "RTNETLINK answers: Cannot assign requested address\n"],
          [["link", "set", "va", "address", "00:00:00:00:00:00"], 2, "RTNETLINK answers: Cannot assign requested address\n"],
          [["link", "set", "nodev", "up"], 1, 'Cannot find device "nodev"\n'],
          [["link", "del", "nodev"], 1, 'Cannot find device "nodev"\n'],
          [["link", "del", "lo"], 2, "RTNETLINK answers: Operation not supported\n"],
          [["link", "show", "nodev"], 1, 'Device "nodev" does not exist.\n'],
          [["-j", "addr", "show", "dev", "nodev"], 1, 'Device "nodev" does not exist.\n'],
        ];
        for (const [args, exitCode, stderr] of refusals) expect({ args, ...failure(await ip(A, ...args)) }).toEqual({ args, exitCode, stderr });
      });

      it("gives a bridge the lowest MTU and MAC of its ports until they are set by hand", async () => {
        await ipOk(A, "link", "add", "b1", "type", "bridge");
        expect(await linkJson(A, "b1")).toMatchObject({ ifindex: 2, mtu: 1500, flags: ["BROADCAST", "MULTICAST"], operstate: "DOWN" });
        expect(await mac(A, "b1")).toMatch(RANDOM_MAC);
        expect(failure(await ip(A, "link", "add", "b1", "type", "bridge"))).toEqual({ exitCode: 2, stderr: "RTNETLINK answers: File exists\n" });
        await ipOk(A, "link", "add", "va", "type", "veth", "peer", "name", "vb");
        await ipOk(A, "link", "add", "vc", "type", "veth", "peer", "name", "vd");
        const [ma, mc] = [await mac(A, "va"), await mac(A, "vc")];
        const bridge = async () => {
          const b = await linkJson(A, "b1");
          return { mtu: b["mtu"], address: b["address"] };
        };
        await ipOk(A, "link", "set", "va", "mtu", "1450");
        await ipOk(A, "link", "set", "va", "master", "b1");
        expect(await linkJson(A, "va")).toMatchObject({ master: "b1" });
        expect((await ipOk(A, "-o", "link", "show", "va")).stdout).toContain(" qdisc noop master b1 state DOWN ");
        expect(await bridge()).toEqual({ mtu: 1450, address: ma });
        await ipOk(A, "link", "set", "vc", "master", "b1");
        expect(await bridge()).toEqual({ mtu: 1450, address: ma < mc ? ma : mc });
        await ipOk(A, "link", "set", "va", "nomaster");
        expect(await linkJson(A, "va")).not.toHaveProperty("master");
        expect(await bridge()).toEqual({ mtu: 1500, address: mc });
        await ipOk(A, "link", "set", "vc", "nomaster");
        expect(await bridge()).toEqual({ mtu: 1500, address: "00:00:00:00:00:00" });
        await ipOk(A, "link", "set", "b1", "mtu", "9000");
        await ipOk(A, "link", "set", "va", "master", "b1");
        expect(await bridge()).toEqual({ mtu: 9000, address: ma });
        await ipOk(A, "link", "set", "b1", "address", "02:00:00:00:00:0b");
        await ipOk(A, "link", "set", "vc", "master", "b1");
        expect(await bridge()).toEqual({ mtu: 9000, address: "02:00:00:00:00:0b" });

        expect(failure(await ip(A, "link", "set", "vb", "master", "nobr"))).toEqual({ exitCode: 255, stderr: 'Error: argument "nobr" is wrong: Device does not exist\n\n' });
        expect(failure(await ip(A, "link", "set", "vb", "master", "vd"))).toEqual({ exitCode: 2, stderr: "RTNETLINK answers: Operation not supported\n" });
        // Deleting the bridge frees its ports.
        await ipOk(A, "link", "del", "b1");
        expect(await linkJson(A, "va")).not.toHaveProperty("master");
        expect(await names(A)).toEqual(["lo", "vb", "va", "vd", "vc"]);
      });

      it("gives a bridge carrier while a port has it, or while it never had a port", async () => {
        const state = async (dev: string) => {
          const b = await linkJson(A, dev);
          return { flags: b["flags"], operstate: b["operstate"] };
        };
        const live = { flags: ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"], operstate: "UP" };
        const dead = { flags: ["NO-CARRIER", "BROADCAST", "MULTICAST", "UP"], operstate: "DOWN" };
        // c0: never a port. c1: a port whose peer is up (the linuxbridge driver's way). c2: a port down. c3: a port that left.
        for (const b of ["c0", "c1", "c2", "c3"]) {
          await ipOk(A, "link", "add", b, "type", "bridge");
          await ipOk(A, "link", "set", b, "up");
        }
        await ipOk(A, "link", "add", "q1", "type", "veth", "peer", "name", "q1x");
        await ipOk(A, "link", "set", "q1x", "up");
        await ipOk(A, "link", "set", "q1", "master", "c1", "up");
        await ipOk(A, "link", "add", "q2", "type", "veth", "peer", "name", "q2x");
        await ipOk(A, "link", "set", "q2", "master", "c2");
        await ipOk(A, "link", "add", "q3", "type", "veth", "peer", "name", "q3x");
        await ipOk(A, "link", "set", "q3x", "up");
        await ipOk(A, "link", "set", "q3", "master", "c3", "up");
        await ipOk(A, "link", "set", "q3", "nomaster");
        await vi.waitFor(async () => {
          expect(await state("c0")).toEqual({ ...live, operstate: "UNKNOWN" });
          expect(await state("c1")).toEqual(live);
          expect(await state("c2")).toEqual(dead);
          expect(await state("c3")).toEqual(dead);
        }, SETTLE);
        expect(await mac(A, "c3")).toBe("00:00:00:00:00:00");
        expect(await inet6(A, "c0")).toEqual([await linkLocal(A, "c0")]);
      });

      it("makes taps as Nova does: no carrier until a process holds them", async () => {
        await ipOk(A, "tuntap", "add", "dev", "t1", "mode", "tap");
        const m = await mac(A, "t1");
        expect(m).toMatch(RANDOM_MAC);
        expect((await ipOk(A, "-o", "link", "show", "t1")).stdout).toBe(
          `2: t1: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN mode DEFAULT group default qlen 1000\\    link/ether ${m} brd ff:ff:ff:ff:ff:ff\n`,
        );
        expect(failure(await ip(A, "tuntap", "add", "dev", "t1", "mode", "tap"))).toEqual({ exitCode: 1, stderr: "ioctl(TUNSETIFF): Device or resource busy\n" });
        await ipOk(A, "link", "set", "t1", "up");
        expect(await linkJson(A, "t1")).toMatchObject({ flags: ["NO-CARRIER", "BROADCAST", "MULTICAST", "UP"], operstate: "DOWN", qdisc: "pfifo_fast" });
        expect(await inet6(A, "t1")).toEqual([]);
        // Without carrier, duplicate address detection never ends.
        await ipOk(A, "addr", "add", "2001:db8::1/64", "dev", "t1");
        expect((await addrInfo(A, "t1")).map((a) => a["tentative"])).toEqual([true]);
        expect(failure(await ip(A, "link", "set", "t1", "mtu", "65522"))).toEqual({ exitCode: 2, stderr: "Error: mtu greater than device maximum.\n" });
        await ipOk(A, "link", "set", "t1", "mtu", "65521");
        await ipOk(A, "tuntap", "del", "dev", "t1", "mode", "tap");
        expect(await names(A)).toEqual(["lo"]);
        // Deleting a tap that is not there is no error.
        await ipOk(A, "tuntap", "del", "dev", "t1", "mode", "tap");
        await ipOk(A, "link", "add", "b0", "type", "bridge");
        expect(failure(await ip(A, "tuntap", "add", "dev", "b0", "mode", "tap"))).toEqual({ exitCode: 1, stderr: "ioctl(TUNSETIFF): Device or resource busy\n" });
        expect(failure(await ip(A, "tuntap", "del", "dev", "b0", "mode", "tap"))).toEqual({ exitCode: 1, stderr: "ioctl(TUNSETIFF): Invalid argument\n" });
        await ipOk(A, "tuntap", "add", "dev", "t2", "mode", "tap");
        await ipOk(A, "link", "del", "t2");
        expect(await names(A)).toEqual(["lo", "b0"]);
      });

      it("lists the same device names through listLinks as ip -o link show", async (ctx) => {
        if (!s.runner.listLinks) ctx.skip();
        await ipOk(A, "link", "add", "zz", "type", "bridge");
        await ipOk(A, "link", "add", "tapx", "type", "veth", "peer", "name", "qrx", "netns", B);
        await ipOk(A, "tuntap", "add", "dev", "tap1", "mode", "tap");
        await ipOk(A, "link", "add", "aa", "type", "veth", "peer", "name", "ab");
        expect(await names(A)).toEqual(["lo", "zz", "tapx", "tap1", "ab", "aa"]);
        expect([...(await s.runner.listLinks!(A))].sort()).toEqual(["aa", "ab", "lo", "tap1", "tapx", "zz"]);
        expect(await s.runner.listLinks!(B)).toEqual(["lo", "qrx"]);
      });

      it("marks a device with an alias (ifalias, an alias line) and lists devices by type and by master", async () => {
        // What l3-nat's linuxbridge driver reads to tell its own bridges from others'.
        await batch(A, ["link add brqm type bridge", "link set dev brqm alias cw:mark up"]).then((r) => expect(failure(r)).toEqual({ exitCode: 0, stderr: "" }));
        await ipOk(A, "link", "add", "brqu", "type", "bridge");
        await ipOk(A, "link", "add", "tapm", "type", "veth", "peer", "name", "qrm", "netns", B);
        await ipOk(A, "link", "set", "tapm", "master", "brqm", "up");
        expect(await linkJson(A, "brqm")).toMatchObject({ ifname: "brqm", ifalias: "cw:mark" });
        expect(await linkJson(A, "brqu")).not.toHaveProperty("ifalias");
        // ip addr show leaves the alias out.
        expect((JSON.parse((await ipOk(A, "-j", "addr", "show", "dev", "brqm")).stdout) as Record<string, unknown>[])[0]).not.toHaveProperty("ifalias");
        const m = await mac(A, "brqu");
        await ipOk(A, "link", "set", "dev", "brqu", "alias", "other");
        expect((await ipOk(A, "-o", "link", "show", "dev", "brqu")).stdout).toBe(
          `3: brqu: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN mode DEFAULT group default qlen 1000\\    link/ether ${m} brd ff:ff:ff:ff:ff:ff\\    alias other\n`,
        );
        expect((await ipOk(A, "link", "show", "dev", "brqu")).stdout).toBe(
          `3: brqu: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN mode DEFAULT group default qlen 1000\n    link/ether ${m} brd ff:ff:ff:ff:ff:ff\n    alias other\n`,
        );
        // An empty alias removes it.
        await ipOk(A, "link", "set", "dev", "brqu", "alias", "");
        expect(await linkJson(A, "brqu")).not.toHaveProperty("ifalias");
        // A veth end whose peer is elsewhere: the alias after link_netnsid.
        await ipOk(A, "link", "set", "dev", "tapm", "alias", "cw:tap");
        expect(Object.keys(await linkJson(A, "tapm")).slice(-2)).toEqual(["link_netnsid", "ifalias"]);
        const list = async (...args: string[]) => (JSON.parse((await ipOk(A, "-j", "link", "show", ...args)).stdout) as { ifname: string; ifalias?: string; master?: string }[]).map((l) => [l.ifname, l.ifalias ?? null, l.master ?? null]);
        expect(await list("type", "bridge")).toEqual([
          ["brqm", "cw:mark", null],
          ["brqu", null, null],
        ]);
        expect(await list("master", "brqm")).toEqual([["tapm", "cw:tap", "brqm"]]);
        expect(await list("master", "brqu")).toEqual([]);
        expect(await list("type", "veth")).toEqual([["tapm", "cw:tap", "brqm"]]);
        expect(failure(await ip(A, "-j", "link", "show", "master", "nonex"))).toEqual({ exitCode: 255, stderr: 'Error: argument "nonex" is wrong: Device does not exist\n\n' });
        // The bridge goes; its port stays, without a master.
        await ipOk(A, "link", "del", "brqm");
        expect(await list("type", "bridge")).toEqual([["brqu", null, null]]);
        expect(await list("type", "veth")).toEqual([["tapm", "cw:tap", null]]);
      });
    });

    describe("addresses", () => {
      it("keeps IPv4 addresses as the kernel does: primaries, secondaries after them, a secondary gone with its primary", async () => {
        await vethPair(A, "va", "vb");
        await ipOk(A, "addr", "add", "10.0.0.5/24", "dev", "va");
        expect(failure(await ip(A, "addr", "add", "10.0.0.5/24", "brd", "+", "scope", "global", "dev", "va"))).toEqual({ exitCode: 2, stderr: "Error: ipv4: Address already assigned.\n" });
        await ipOk(A, "addr", "replace", "10.0.0.5/24", "dev", "va");
        // Replacing an address that is there changes nothing of it.
        await ipOk(A, "addr", "replace", "10.0.0.5/24", "brd", "+", "scope", "global", "dev", "va");
        await ipOk(A, "addr", "add", "10.0.0.6/24", "brd", "+", "scope", "global", "dev", "va");
        await ipOk(A, "addr", "add", "10.0.0.5/16", "dev", "va");
        await ipOk(A, "address", "add", "10.0.0.7/32", "scope", "global", "dev", "va");
        await ipOk(A, "addr", "add", "10.0.1.1/31", "brd", "+", "dev", "va");
        const a = (local: string, prefixlen: number, more: Record<string, unknown> = {}) => ({ family: "inet", local, prefixlen, ...more, scope: "global", label: "va" });
        expect(await inet(A, "va")).toEqual([
          a("10.0.0.5", 24),
          a("10.0.0.5", 16),
          a("10.0.0.7", 32),
          a("10.0.1.1", 31),
          { ...a("10.0.0.6", 24, { broadcast: "10.0.0.255" }), secondary: true },
        ]);
        expect(await routes(A, 4)).toBe(
          "10.0.0.0/24 dev va proto kernel scope link src 10.0.0.5 \n10.0.0.0/16 dev va proto kernel scope link src 10.0.0.5 \n10.0.1.0/31 dev va proto kernel scope link src 10.0.1.1 \n",
        );
        expect(failure(await ip(A, "addr", "del", "10.0.0.99/24", "dev", "va"))).toEqual({ exitCode: 2, stderr: "Error: ipv4: Address not found.\n" });
        expect(failure(await ip(A, "addr", "del", "10.0.0.7/24", "dev", "va"))).toEqual({ exitCode: 2, stderr: "Error: ipv4: Address not found.\n" });
        expect(failure(await ip(A, "addr", "add", "10.0.0.9/24", "dev", "nodev"))).toEqual({ exitCode: 1, stderr: 'Cannot find device "nodev"\n' });
        expect(failure(await ip(A, "addr", "del", "10.0.0.5/24", "dev", "nodev"))).toEqual({ exitCode: 1, stderr: 'Cannot find device "nodev"\n' });
        await ipOk(A, "addr", "del", "10.0.0.5/24", "dev", "va");
        expect(await inet(A, "va")).toEqual([a("10.0.0.5", 16), a("10.0.0.7", 32), a("10.0.1.1", 31)]);
        expect(await routes(A, 4)).toBe("10.0.0.0/16 dev va proto kernel scope link src 10.0.0.5 \n10.0.1.0/31 dev va proto kernel scope link src 10.0.1.1 \n");
      });

      it("promotes a secondary in place of its deleted primary where promote_secondaries is set (as Neutron sets it)", async () => {
        await vethPair(A, "va", "vb");
        for (const cidr of ["10.0.0.5/24", "10.0.0.7/32", "10.0.0.6/24", "10.0.0.8/24", "10.1.0.1/16"]) await ipOk(A, "addr", "add", cidr, "dev", "va");
        await ipOk(undefined, "netns", "exec", A, "sysctl", "-q", "-w", "net.ipv4.conf.all.promote_secondaries=1");
        expect((await ipOk(undefined, "netns", "exec", A, "sysctl", "-n", "net.ipv4.conf.all.promote_secondaries")).stdout).toBe("1\n");
        const a = (local: string, prefixlen: number, secondary = false) => ({ family: "inet", local, prefixlen, scope: "global", ...(secondary ? { secondary: true } : {}), label: "va" });
        await ipOk(A, "addr", "del", "10.0.0.5/24", "dev", "va");
        // Moved after the last primary that followed the deleted one; the other secondary stays one.
        expect(await inet(A, "va")).toEqual([a("10.0.0.7", 32), a("10.1.0.1", 16), a("10.0.0.6", 24), a("10.0.0.8", 24, true)]);
        expect(await routes(A, 4)).toBe("10.0.0.0/24 dev va proto kernel scope link src 10.0.0.6 \n10.1.0.0/16 dev va proto kernel scope link src 10.1.0.1 \n");
        // Down, the promoted address gets its route only when the device comes up.
        await ipOk(A, "link", "set", "va", "down");
        await ipOk(A, "addr", "del", "10.0.0.6/24", "dev", "va");
        expect(await inet(A, "va")).toEqual([a("10.0.0.7", 32), a("10.1.0.1", 16), a("10.0.0.8", 24)]);
        expect(await routes(A, 4)).toBe("");
        await ipOk(A, "link", "set", "va", "up");
        expect(await routes(A, 4)).toBe("10.0.0.0/24 dev va proto kernel scope link src 10.0.0.8 \n10.1.0.0/16 dev va proto kernel scope link src 10.1.0.1 \n");
      });

      it("keeps IPv6 addresses newest first, the link-local one last, one prefix route for a prefix", async () => {
        await vethPair(A, "va", "vb");
        await ipOk(A, "addr", "add", "2001:db8::5/64", "dev", "va");
        await ipOk(A, "addr", "add", "2001:db8::6/64", "dev", "va");
        await ipOk(A, "addr", "replace", "2001:db8::6/64", "dev", "va");
        expect(failure(await ip(A, "addr", "add", "2001:db8::5/64", "dev", "va"))).toEqual({ exitCode: 2, stderr: "Error: ipv6: address already assigned.\n" });
        expect(failure(await ip(A, "addr", "del", "2001:db8::99/64", "dev", "va"))).toEqual({ exitCode: 2, stderr: "Error: ipv6: address not found.\n" });
        const g = (local: string) => ({ local, prefixlen: 64, scope: "global" });
        expect(await inet6(A, "va")).toEqual([g("2001:db8::6"), g("2001:db8::5"), await linkLocal(A, "va")]);
        const kernel = "2001:db8::/64 dev va proto kernel metric 256 pref medium\n";
        const linkLocals = "fe80::/64 dev vb proto kernel metric 256 pref medium\nfe80::/64 dev va proto kernel metric 256 pref medium\n";
        expect(await routes(A, 6)).toBe(kernel + linkLocals);
        await ipOk(A, "addr", "del", "2001:db8::5/64", "dev", "va");
        expect(await routes(A, 6)).toBe(kernel + linkLocals);
        await ipOk(A, "addr", "del", "2001:db8::6/64", "dev", "va");
        expect(await routes(A, 6)).toBe(linkLocals);
      });

      it("keeps a device's IPv4 addresses when it goes down, not its routes nor its IPv6 addresses", async () => {
        await ipOk(A, "link", "add", "e1", "type", "veth", "peer", "name", "e2");
        await ipOk(A, "addr", "add", "10.2.0.1/24", "dev", "e1");
        await ipOk(A, "addr", "add", "2001:db8:2::1/64", "dev", "e1");
        expect(await inet6(A, "e1")).toEqual([{ local: "2001:db8:2::1", prefixlen: 64, scope: "global" }]);
        expect(await routes(A, 4)).toBe("");
        expect(await routes(A, 6)).toBe("");
        // Up without carrier: the routes come, marked linkdown.
        await ipOk(A, "link", "set", "e1", "up");
        expect(await routes(A, 4)).toBe("10.2.0.0/24 dev e1 proto kernel scope link src 10.2.0.1 linkdown \n");
        expect(await routes(A, 6)).toBe("2001:db8:2::/64 dev e1 proto kernel metric 256 linkdown pref medium\n");
        await ipOk(A, "route", "replace", "default", "via", "10.2.0.254", "dev", "e1");
        expect(JSON.parse((await ipOk(A, "-j", "route", "show")).stdout)).toEqual([
          { dst: "default", gateway: "10.2.0.254", dev: "e1", flags: ["linkdown"] },
          { dst: "10.2.0.0/24", dev: "e1", protocol: "kernel", scope: "link", prefsrc: "10.2.0.1", flags: ["linkdown"] },
        ]);
        await ipOk(A, "link", "set", "e2", "up");
        expect(await routes(A, 4)).toBe("default via 10.2.0.254 dev e1 \n10.2.0.0/24 dev e1 proto kernel scope link src 10.2.0.1 \n");
        await ipOk(A, "link", "set", "e1", "down");
        expect(await inet(A, "e1")).toEqual([{ family: "inet", local: "10.2.0.1", prefixlen: 24, scope: "global", label: "e1" }]);
        expect(await inet6(A, "e1")).toEqual([]);
        expect(await routes(A, 4)).toBe("");
        expect(await routes(A, 6)).toBe("fe80::/64 dev e2 proto kernel metric 256 linkdown pref medium\n");
        // Up again: the address's route is back, the route added by hand is not.
        await ipOk(A, "link", "set", "e1", "up");
        expect(await routes(A, 4)).toBe("10.2.0.0/24 dev e1 proto kernel scope link src 10.2.0.1 \n");
      });
    });

    describe("routes", () => {
      /** e1 (10.2.0.1/24, 2001:db8:2::1/64) and e2, a veth pair, both up. */
      const gatewayDevice = async () => {
        await ipOk(A, "link", "add", "e1", "type", "veth", "peer", "name", "e2");
        await ipOk(A, "link", "set", "e1", "up");
        await ipOk(A, "link", "set", "e2", "up");
        await ipOk(A, "addr", "add", "10.2.0.1/24", "dev", "e1");
        await ipOk(A, "addr", "add", "2001:db8:2::1/64", "dev", "e1");
      };

      it("takes a gateway only where a route reaches it on the device, the family from the addresses, replace replacing", async () => {
        await gatewayDevice();
        expect(failure(await ip(A, "route", "replace", "default", "via", "10.9.9.9", "dev", "e1"))).toEqual({ exitCode: 2, stderr: "Error: Nexthop has invalid gateway.\n" });
        expect(failure(await ip(A, "route", "replace", "default", "via", "2001:db8:9::9", "dev", "e1"))).toEqual({ exitCode: 2, stderr: "RTNETLINK answers: No route to host\n" });
        // Neutron's way to a gateway outside the subnet: an on-link route first.
        await ipOk(A, "route", "replace", "10.9.9.9", "dev", "e1", "scope", "link");
        await ipOk(A, "route", "replace", "default", "via", "10.9.9.9", "dev", "e1");
        await ipOk(A, "route", "replace", "2001:db8:9::9", "dev", "e1", "scope", "link");
        await ipOk(A, "route", "replace", "default", "via", "2001:db8:9::9", "dev", "e1");
        await ipOk(A, "route", "replace", "default", "via", "10.2.0.254", "dev", "e1");
        expect(failure(await ip(A, "route", "replace", "default", "via", "10.2.0.254", "dev", "e2"))).toEqual({ exitCode: 2, stderr: "Error: Nexthop has invalid gateway.\n" });
        // A gateway that is the device's own address is taken.
        await ipOk(A, "route", "replace", "10.8.0.0/16", "via", "10.2.0.1", "dev", "e1");
        expect(await routes(A, 4)).toBe(
          ["default via 10.2.0.254 dev e1 ", "10.2.0.0/24 dev e1 proto kernel scope link src 10.2.0.1 ", "10.8.0.0/16 via 10.2.0.1 dev e1 ", "10.9.9.9 dev e1 scope link ", ""].join("\n"),
        );
        expect((await ipOk(A, "route", "show")).stdout).toBe(await routes(A, 4));
        expect(await routes(A, 6)).toBe(
          [
            "2001:db8:2::/64 dev e1 proto kernel metric 256 pref medium",
            "2001:db8:9::9 dev e1 metric 1024 pref medium",
            "fe80::/64 dev e2 proto kernel metric 256 pref medium",
            "fe80::/64 dev e1 proto kernel metric 256 pref medium",
            "default via 2001:db8:9::9 dev e1 metric 1024 pref medium",
            "",
          ].join("\n"),
        );
        expect(JSON.parse((await ipOk(A, "-j", "-6", "route", "show")).stdout)).toEqual([
          { dst: "2001:db8:2::/64", dev: "e1", protocol: "kernel", metric: 256, flags: [], pref: "medium" },
          { dst: "2001:db8:9::9", dev: "e1", metric: 1024, flags: [], pref: "medium" },
          { dst: "fe80::/64", dev: "e2", protocol: "kernel", metric: 256, flags: [], pref: "medium" },
          { dst: "fe80::/64", dev: "e1", protocol: "kernel", metric: 256, flags: [], pref: "medium" },
          { dst: "default", gateway: "2001:db8:9::9", dev: "e1", metric: 1024, flags: [], pref: "medium" },
        ]);
        expect(JSON.parse((await ipOk(A, "-j", "route", "show")).stdout)).toEqual([
          { dst: "default", gateway: "10.2.0.254", dev: "e1", flags: [] },
          { dst: "10.2.0.0/24", dev: "e1", protocol: "kernel", scope: "link", prefsrc: "10.2.0.1", flags: [] },
          { dst: "10.8.0.0/16", gateway: "10.2.0.1", dev: "e1", flags: [] },
          { dst: "10.9.9.9", dev: "e1", scope: "link", flags: [] },
        ]);

        await ipOk(A, "-4", "route", "del", "default", "dev", "e1");
        expect(failure(await ip(A, "-4", "route", "del", "default", "dev", "e1"))).toEqual({ exitCode: 2, stderr: "RTNETLINK answers: No such process\n" });
        await ipOk(A, "-6", "route", "del", "default", "dev", "e1");
        expect(failure(await ip(A, "-6", "route", "del", "default", "dev", "e1"))).toEqual({ exitCode: 2, stderr: "RTNETLINK answers: No such process\n" });
        expect(failure(await ip(A, "-4", "route", "del", "10.9.9.9", "dev", "e2"))).toEqual({ exitCode: 2, stderr: "RTNETLINK answers: No such process\n" });
        expect(await routes(A, 4)).toBe("10.2.0.0/24 dev e1 proto kernel scope link src 10.2.0.1 \n10.8.0.0/16 via 10.2.0.1 dev e1 \n10.9.9.9 dev e1 scope link \n");
      });

      it("refuses a route the kernel refuses", async () => {
        await gatewayDevice();
        expect(failure(await ip(A, "route", "replace", "10.7.0.1/16", "dev", "e1"))).toEqual({ exitCode: 2, stderr: "Error: Invalid prefix for given prefix length.\n" });
        expect(failure(await ip(A, "route", "replace", "10.7.0.0/16", "dev", "nodev"))).toEqual({ exitCode: 1, stderr: 'Cannot find device "nodev"\n' });
        expect(failure(await ip(A, "-4", "route", "replace", "2001:db8::/64", "dev", "e1"))).toEqual({ exitCode: 1, stderr: 'Error: inet prefix is expected rather than "2001:db8::/64".\n' });
        expect(failure(await ip(A, "-6", "route", "replace", "10.0.0.0/8", "dev", "e1"))).toEqual({ exitCode: 1, stderr: 'Error: inet6 prefix is expected rather than "10.0.0.0/8".\n' });
        await ipOk(A, "route", "add", "10.7.0.0/16", "dev", "e1");
        expect(failure(await ip(A, "route", "add", "10.7.0.0/16", "dev", "e2"))).toEqual({ exitCode: 2, stderr: "RTNETLINK answers: File exists\n" });
        // IPv6 clears the host bits itself.
        await ipOk(A, "-6", "route", "replace", "2001:db8:7::1/64", "dev", "e1");
        await ipOk(A, "route", "replace", "default", "dev", "e1");
        expect(await routes(A, 4)).toBe("default dev e1 scope link \n10.2.0.0/24 dev e1 proto kernel scope link src 10.2.0.1 \n10.7.0.0/16 dev e1 scope link \n");
        expect((await routes(A, 6)).split("\n")).toContain("2001:db8:7::/64 dev e1 metric 1024 pref medium");
        await ipOk(A, "link", "set", "e1", "down");
        expect(failure(await ip(A, "route", "replace", "10.7.0.0/16", "dev", "e1"))).toEqual({ exitCode: 2, stderr: "Error: Device for nexthop is not up.\n" });
        expect(failure(await ip(A, "-6", "route", "replace", "2001:db8:7::/64", "dev", "e1"))).toEqual({ exitCode: 2, stderr: "Error: Nexthop device is not up.\n" });
        expect(failure(await ip(A, "route", "replace", "default", "via", "10.2.0.254", "dev", "e1"))).toEqual({ exitCode: 2, stderr: "Error: Nexthop has invalid gateway.\n" });
        expect(failure(await ip(A, "route", "replace", "default", "via", "2001:db8:2::fe", "dev", "e1"))).toEqual({ exitCode: 2, stderr: "RTNETLINK answers: No route to host\n" });
      });

      it("lists routes in the kernel's order: IPv4 by network address, longer prefix first; IPv6 more specific first, default last", async () => {
        await gatewayDevice();
        for (const dst of ["192.168.0.1", "10.1.2.0/24", "10.0.0.0/8", "10.1.0.0/16", "10.3.0.0/16", "default"]) await ipOk(A, "route", "replace", dst, "dev", "e1");
        await ipOk(A, "route", "replace", "10.1.0.0/16", "dev", "e2", "metric", "5");
        await ipOk(A, "route", "replace", "10.1.0.0/16", "dev", "e2", "metric", "3");
        for (const dst of ["2001:db8:1::/48", "fd00::1", "2001:db8::/32", "2001:db8:1:2::/64", "default", "2001:db8:3::/48"]) await ipOk(A, "-6", "route", "replace", dst, "dev", "e1");
        await ipOk(A, "-6", "route", "replace", "2001:db8:1::/48", "dev", "e2", "metric", "5");
        // `add` refuses a second route to a destination at the same metric, whatever its device.
        expect(failure(await ip(A, "-6", "route", "add", "fd00::1", "dev", "e2"))).toEqual({ exitCode: 2, stderr: "RTNETLINK answers: File exists\n" });
        await ipOk(A, "-6", "route", "add", "fd00::1", "dev", "e2", "metric", "2000");
        expect(failure(await ip(A, "route", "add", "10.3.0.0/16", "dev", "e2"))).toEqual({ exitCode: 2, stderr: "RTNETLINK answers: File exists\n" });
        expect(await routes(A, 4)).toBe(
          [
            "default dev e1 scope link ",
            "10.0.0.0/8 dev e1 scope link ",
            "10.1.0.0/16 dev e1 scope link ",
            "10.1.0.0/16 dev e2 scope link metric 3 ",
            "10.1.0.0/16 dev e2 scope link metric 5 ",
            "10.1.2.0/24 dev e1 scope link ",
            "10.2.0.0/24 dev e1 proto kernel scope link src 10.2.0.1 ",
            "10.3.0.0/16 dev e1 scope link ",
            "192.168.0.1 dev e1 scope link ",
            "",
          ].join("\n"),
        );
        expect(await routes(A, 6)).toBe(
          [
            "2001:db8:1:2::/64 dev e1 metric 1024 pref medium",
            "2001:db8:1::/48 dev e2 metric 5 pref medium",
            "2001:db8:1::/48 dev e1 metric 1024 pref medium",
            "2001:db8:2::/64 dev e1 proto kernel metric 256 pref medium",
            "2001:db8:3::/48 dev e1 metric 1024 pref medium",
            "2001:db8::/32 dev e1 metric 1024 pref medium",
            "fd00::1 dev e1 metric 1024 pref medium",
            "fd00::1 dev e2 metric 2000 pref medium",
            "fe80::/64 dev e2 proto kernel metric 256 pref medium",
            "fe80::/64 dev e1 proto kernel metric 256 pref medium",
            "default dev e1 metric 1024 pref medium",
            "",
          ].join("\n"),
        );
      });
    });

    describe("batch", () => {
      it("stops a batch at the first failing line, goes on with -force, and names each failed line", async () => {
        const lines = ["link set lo up", "link set nodev up", "address add 10.1.0.1/24 dev nodev", "", "# a comment", "link add b0 type bridge", "bogus", "link add b1 type bridge # trailing"];
        const plain = await batch(A, lines);
        expect(failure(plain)).toEqual({ exitCode: 1, stderr: 'Cannot find device "nodev"\nCommand failed -:2\n' });
        expect(await names(A)).toEqual(["lo"]);
        expect(await linkJson(A, "lo")).toMatchObject({ operstate: "UNKNOWN" });
        const forced = await batch(A, lines, { force: true });
        expect(failure(forced)).toEqual({
          exitCode: 1,
          stderr: 'Cannot find device "nodev"\nCommand failed -:2\nCannot find device "nodev"\nCommand failed -:3\nObject "bogus" is unknown, try "ip help".\nCommand failed -:7\n',
        });
        expect(await names(A)).toEqual(["lo", "b0", "b1"]);
        expect(failure(await batch(A, ["link set b0 up", "address add 10.1.0.1/24 dev b0", "route replace 10.9.0.0/16 via 10.1.0.254"]))).toEqual({ exitCode: 0, stderr: "" });
        expect(await routes(A, 4)).toBe("10.1.0.0/24 dev b0 proto kernel scope link src 10.1.0.1 \n10.9.0.0/16 via 10.1.0.254 dev b0 \n");
        expect(failure(await batch(A, ["address add 10.1.0.1/24 dev b0", "address add 10.1.0.2/32 dev b0"], { force: true }))).toEqual({
          exitCode: 1,
          stderr: "Error: ipv4: Address already assigned.\nCommand failed -:1\n",
        });
      });

      it("ends a batch without naming the line on an error after which ip exits", async () => {
        expect(failure(await batch(A, ["link set lo up", "link set lo master nobr", "link add b9 type bridge"], { force: true }))).toEqual({
          exitCode: 255,
          stderr: 'Error: argument "nobr" is wrong: Device does not exist\n\n',
        });
        expect(failure(await batch(A, ["route replace 2001:db8::/64 dev lo", "link add b9 type bridge"], { force: true, family: 4 }))).toEqual({
          exitCode: 1,
          stderr: 'Error: inet prefix is expected rather than "2001:db8::/64".\n',
        });
        expect(await names(A)).toEqual(["lo"]);
      });

      it("runs the router namespace's batch: netns add, then ip and sysctl inside it; an existing namespace fails line 1 only", async () => {
        const n = s.spareName();
        const settings = "net.ipv4.ip_forward=1 net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 net.ipv6.conf.all.forwarding=1";
        const lines = [`netns add ${n}`, `netns exec ${n} ip link set lo up`, `netns exec ${n} sysctl -q -w ${settings}`];
        expect(failure(await batch(undefined, lines, { force: true }))).toEqual({ exitCode: 0, stderr: "" });
        expect(await linkJson(n, "lo")).toMatchObject({ flags: ["LOOPBACK", "UP", "LOWER_UP"] });
        const read = await ipOk(undefined, "netns", "exec", n, "sysctl", "net.ipv4.ip_forward", "net.ipv4.conf.all.arp_ignore", "net.ipv4.conf.all.arp_announce", "net.ipv6.conf.all.forwarding");
        expect(read.stdout).toBe("net.ipv4.ip_forward = 1\nnet.ipv4.conf.all.arp_ignore = 1\nnet.ipv4.conf.all.arp_announce = 2\nnet.ipv6.conf.all.forwarding = 1\n");
        expect(failure(await batch(undefined, lines, { force: true }))).toEqual({ exitCode: 1, stderr: `Cannot create namespace file "/run/netns/${n}": File exists\nCommand failed -:1\n` });
        expect(failure(await batch(undefined, lines))).toEqual({ exitCode: 1, stderr: `Cannot create namespace file "/run/netns/${n}": File exists\nCommand failed -:1\n` });
      });

      it("reads and sets sysctls in a namespace as sysctl does, and reports a value the kernel refuses", async () => {
        const sysctl = (...args: string[]) => ip(undefined, "netns", "exec", A, "sysctl", ...args);
        expect((await sysctl("net.ipv4.ip_forward", "net.ipv4.conf.all.arp_ignore", "net.ipv4.conf.all.arp_announce", "net.ipv6.conf.all.forwarding")).stdout).toBe(
          "net.ipv4.ip_forward = 0\nnet.ipv4.conf.all.arp_ignore = 0\nnet.ipv4.conf.all.arp_announce = 0\nnet.ipv6.conf.all.forwarding = 0\n",
        );
        expect(await sysctl("-w", "net.ipv4.ip_forward=1")).toEqual({ exitCode: 0, stdout: "net.ipv4.ip_forward = 1\n", stderr: "" });
        expect(await sysctl("-n", "net.ipv4.ip_forward")).toEqual({ exitCode: 0, stdout: "1\n", stderr: "" });
        expect(await sysctl("-w", "net.ipv4.conf.all.arp_announce=x", "net.ipv4.conf.all.arp_ignore=1")).toEqual({
          exitCode: 1,
          stdout: "net.ipv4.conf.all.arp_ignore = 1\n",
          stderr: 'sysctl: setting key "net.ipv4.conf.all.arp_announce": Invalid argument\n',
        });
        expect((await ipOk(undefined, "netns", "exec", B, "sysctl", "-n", "net.ipv4.ip_forward")).stdout).toBe("0\n");
      });
    });

    describe("link monitor", () => {
      /** `ip -o monitor link` in a namespace, its lines and their events, once it reports. */
      const monitor = async (namespace: string) => {
        const lines: string[] = [];
        const exits: Error[] = [];
        const w = s.runner.watch!("ip", ["-o", "monitor", "link"], { namespace, onLine: (l) => void lines.push(l), onExit: (e) => void exits.push(e) });
        stops.push(() => w.stop());
        await w.started;
        // The process runs before it listens: a device made and deleted tells when it does.
        const seen = (name: string, deleted: boolean) => lines.some((l) => LINK_EVENT.exec(l)?.[2] === name && (LINK_EVENT.exec(l)![1] !== undefined) === deleted);
        await ipOk(namespace, "tuntap", "add", "dev", "cwsync", "mode", "tap");
        let mtu = 1500;
        await vi.waitFor(async () => {
          await ipOk(namespace, "link", "set", "cwsync", "mtu", String(--mtu));
          expect(seen("cwsync", false)).toBe(true);
        }, SETTLE);
        await ipOk(namespace, "tuntap", "del", "dev", "cwsync", "mode", "tap");
        await vi.waitFor(() => expect(seen("cwsync", true)).toBe(true), SETTLE);
        lines.length = 0;
        const events = (): Map<string, ("+" | "-")[]> => {
          const byName = new Map<string, ("+" | "-")[]>();
          for (const line of lines) {
            const m = LINK_EVENT.exec(line);
            if (!m) continue;
            const e: Event = { name: m[2]!, kind: m[1] ? "-" : "+" };
            const list = byName.get(e.name) ?? [];
            // Each change of a device prints it again: what matters is added, then deleted.
            if (list[list.length - 1] !== e.kind) list.push(e.kind);
            byName.set(e.name, list);
          }
          return byName;
        };
        return { lines, exits, events, stop: () => w.stop() };
      };

      it("prints a line for each device added and deleted, that device-watch's parse reads", async (ctx) => {
        if (!s.runner.watch) ctx.skip();
        const m = await monitor(A);
        await ipOk(A, "tuntap", "add", "dev", "t1", "mode", "tap");
        const tap = await mac(A, "t1");
        await vi.waitFor(() => expect(m.lines.length).toBeGreaterThan(0), SETTLE);
        // The tap is the third device of the namespace (the monitor's check made the second).
        expect(m.lines[0]).toBe(`3: t1: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN group default \\    link/ether ${tap} brd ff:ff:ff:ff:ff:ff`);
        await ipOk(A, "link", "add", "v1", "type", "veth", "peer", "name", "v1p");
        await ipOk(A, "link", "set", "v1", "up");
        await ipOk(A, "link", "add", "br0", "type", "bridge");
        await ipOk(A, "link", "set", "t1", "up", "master", "br0");
        await ipOk(A, "link", "del", "v1p");
        // A port leaving its bridge is printed as deleted too (the bridge's view of it), then as it is.
        await ipOk(A, "link", "set", "t1", "nomaster");
        await ipOk(A, "tuntap", "del", "dev", "t1", "mode", "tap");
        await vi.waitFor(
          () =>
            expect(Object.fromEntries(m.events())).toEqual({
              t1: ["+", "-", "+", "-"],
              v1: ["+", "-"],
              v1p: ["+", "-"],
              br0: ["+"],
            }),
          SETTLE,
        );
        for (const line of m.lines) expect(line).toMatch(LINK_EVENT);
        expect(m.lines.filter((l) => l.startsWith("Deleted ")).map((l) => LINK_EVENT.exec(l)![2])).toEqual(["v1p", "v1", "t1", "t1"]);
        m.stop();
        const before = m.lines.length;
        await ipOk(A, "link", "add", "late", "type", "bridge");
        await new Promise((resolve) => setTimeout(resolve, 200));
        expect(m.lines.length).toBe(before);
        expect(m.exits).toEqual([]);
      });

      it("sees a veth peer made from another namespace come, and go with that namespace", async (ctx) => {
        if (!s.runner.watch) ctx.skip();
        const m = await monitor(B);
        const n = s.spareName();
        await ipOk(undefined, "netns", "add", n);
        await ipOk(n, "link", "add", "x1", "type", "veth", "peer", "name", "x2", "netns", B);
        await vi.waitFor(() => expect(m.events().get("x2")).toEqual(["+"]), SETTLE);
        await ipOk(undefined, "netns", "delete", n);
        await vi.waitFor(() => expect(m.events().get("x2")).toEqual(["+", "-"]), SETTLE);
      });

      it("ends a monitor of a namespace that is gone with NamespaceGoneError", async (ctx) => {
        if (!s.runner.watch) ctx.skip();
        const exits: Error[] = [];
        const w = s.runner.watch!("ip", ["-o", "monitor", "link"], { namespace: s.goneNamespace, onLine: () => {}, onExit: (e) => void exits.push(e) });
        stops.push(() => w.stop());
        await w.started.catch(() => undefined);
        await vi.waitFor(() => expect(exits.length).toBe(1), SETTLE);
        expect(exits[0]).toBeInstanceOf(NamespaceGoneError);
      });
    });
  });
}
