import { CommandError, NamespaceGoneError, PREPARED_INPUT, type ConntrackRunner, type ExecResult } from "@chainwarden/core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { FakeConnection } from "../fake-conntrack.js";

/** What one test of the contract gets from `setup`: a fresh namespace whose table is empty. */
export interface ConntrackRunnerContractSubject {
  runner: ConntrackRunner;
  /** A namespace that exists and tracks no connections yet. */
  namespace: string;
  /** Puts a connection in a namespace's table (`conntrack -I` on a real kernel); rejects as that does. */
  addConnection(namespace: string, connection: FakeConnection): Promise<void>;
  /** A namespace that exists for this test only, and its deletion (`ip netns del`). */
  otherNamespace(): Promise<{ name: string; delete(): Promise<void> }>;
  /**
   * Resolves once the command a `prepare` in `namespace` started has entered it (a real process
   * needs a moment to start; a fake's is there at once).
   */
  preparedStarted?(namespace: string): Promise<void>;
  /**
   * While the returned function has not been called, commands prepared from now on cannot be
   * started (no FIFO can be made). Optional.
   */
  failStarts?(): () => void;
  dispose(): Promise<void>;
}

const TOOL = "conntrack v1.4.7 (conntrack-tools)";

/** Connections of every kind the listing prints differently. */
const TCP_ZONE5: FakeConnection = { protocol: "tcp", src: "10.0.0.1", dst: "10.0.0.2", sport: 40000, dport: 22, zone: 5 };
const UDP_UNREPLIED: FakeConnection = { protocol: "udp", src: "10.0.0.1", dst: "10.0.0.3", sport: 5353, dport: 53, replied: false, assured: false };
const ICMP_ZONE5: FakeConnection = { protocol: "icmp", src: "10.0.0.1", dst: "10.0.0.4", icmpType: 8, icmpCode: 0, icmpId: 77, replied: false, assured: false, zone: 5 };
const ESP: FakeConnection = { protocol: 50, src: "10.0.0.1", dst: "10.0.0.7", replied: false, assured: false };
const NATED: FakeConnection = { protocol: "tcp", src: "10.0.0.1", dst: "203.0.113.5", sport: 40001, dport: 80, replySrc: "192.168.0.5", replyDst: "10.0.0.1", replySport: 8080, replyDport: 40001 };
const TCP6_ZONE7: FakeConnection = { protocol: "tcp", src: "2001:db8::1", dst: "2001:db8::2", sport: 40000, dport: 80, zone: 7 };
const ICMP6_ZONE7: FakeConnection = { protocol: "icmpv6", src: "2001:db8::1", dst: "2001:db8::2", icmpType: 128, icmpCode: 0, icmpId: 9, replied: false, assured: false, zone: 7 };
const TIME_WAIT: FakeConnection = { protocol: "tcp", src: "10.0.0.1", dst: "10.0.0.2", sport: 40002, dport: 22, state: "TIME_WAIT", replied: false, assured: false };

/** Their lines, as conntrack 1.4.7 prints them (the timeout, which the kernel counts down, as `T`). */
const LINES = new Map<FakeConnection, string>([
  [TCP_ZONE5, "tcp      6 T ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=40000 dport=22 src=10.0.0.2 dst=10.0.0.1 sport=22 dport=40000 [ASSURED] mark=0 zone=5 use=1"],
  [UDP_UNREPLIED, "udp      17 T src=10.0.0.1 dst=10.0.0.3 sport=5353 dport=53 [UNREPLIED] src=10.0.0.3 dst=10.0.0.1 sport=53 dport=5353 mark=0 use=1"],
  [ICMP_ZONE5, "icmp     1 T src=10.0.0.1 dst=10.0.0.4 type=8 code=0 id=77 [UNREPLIED] src=10.0.0.4 dst=10.0.0.1 type=0 code=0 id=77 mark=0 zone=5 use=1"],
  [ESP, "unknown  50 T src=10.0.0.1 dst=10.0.0.7 [UNREPLIED] src=10.0.0.7 dst=10.0.0.1 mark=0 use=1"],
  [NATED, "tcp      6 T ESTABLISHED src=10.0.0.1 dst=203.0.113.5 sport=40001 dport=80 src=192.168.0.5 dst=10.0.0.1 sport=8080 dport=40001 [ASSURED] mark=0 use=1"],
  [TCP6_ZONE7, "tcp      6 T ESTABLISHED src=2001:db8::1 dst=2001:db8::2 sport=40000 dport=80 src=2001:db8::2 dst=2001:db8::1 sport=80 dport=40000 [ASSURED] mark=0 zone=7 use=1"],
  [ICMP6_ZONE7, "icmpv6   58 T src=2001:db8::1 dst=2001:db8::2 type=128 code=0 id=9 [UNREPLIED] src=2001:db8::2 dst=2001:db8::1 type=129 code=0 id=9 mark=0 zone=7 use=1"],
  [TIME_WAIT, "tcp      6 T TIME_WAIT src=10.0.0.1 dst=10.0.0.2 sport=40002 dport=22 [UNREPLIED] src=10.0.0.2 dst=10.0.0.1 sport=22 dport=40002 mark=0 use=1"],
]);
const ALL = [...LINES.keys()];
const line = (c: FakeConnection) => LINES.get(c)!;

/**
 * The behaviour of `conntrack` (1.4.7) that Chainwarden relies on, checked against the real tool
 * in throwaway namespaces and against `FakeConntrack`, so the fake cannot drift from it: the
 * listing's lines, `-L` and `-D` with the filters the l2 firewall, the FWaaS cleaner and the l3
 * router use, the tool's summaries, exit codes and refusals, and `-R` run through `prepare`.
 */
export function describeConntrackRunnerContract(name: string, setup: () => Promise<ConntrackRunnerContractSubject>): void {
  describe(`ConntrackRunner contract: ${name}`, () => {
    let s: ConntrackRunnerContractSubject;

    beforeEach(async () => {
      s = await setup();
    });
    afterEach(async () => {
      await s?.dispose();
    });

    const conntrack = (args: readonly string[], namespace = s.namespace) => s.runner.exec("conntrack", args, { namespace, reject: false });
    const add = async (...connections: FakeConnection[]) => {
      for (const c of connections) await s.addConnection(s.namespace, c);
    };
    /** Output lines with the timeout as `T`, sorted (the kernel prints in its hash order). */
    const lines = (stdout: string) =>
      stdout
        .split("\n")
        .filter(Boolean)
        .map((l) => l.replace(/^(\S+ +\d+) \d+ /, "$1 T "))
        .sort();
    const expected = (...connections: FakeConnection[]) => connections.map(line).sort();
    const summary = (n: number, verb: "shown" | "deleted") => `${TOOL}: ${n} flow entries have been ${verb}.\n`;
    const list = async (args: readonly string[] = []) => {
      const r = await conntrack(["-L", ...args]);
      expect(r.exitCode).toBe(0);
      return { lines: lines(r.stdout), stderr: r.stderr };
    };
    const remaining = async () => (await list()).lines;
    /** `-D`: the deleted entries (their lines), its summary and exit code. */
    const del = async (args: readonly string[]) => {
      const r = await conntrack(["-D", ...args]);
      return { lines: lines(r.stdout), stderr: r.stderr, exitCode: r.exitCode };
    };
    const deleted = (...connections: FakeConnection[]) => ({ lines: expected(...connections), stderr: summary(connections.length, "deleted"), exitCode: connections.length === 0 ? 1 : 0 });
    const usage = (message: string): ExecResult => ({ stdout: "", stderr: `${TOOL}: ${message}\nTry \`conntrack -h' or 'conntrack --help' for more information.\n`, exitCode: 2 });

    it("lists nothing in a fresh namespace", async () => {
      expect(await conntrack(["-L"])).toEqual({ stdout: "", stderr: summary(0, "shown"), exitCode: 0 });
    });

    it("prints each kind of connection as conntrack 1.4.7 does, both families unless -f narrows it", async () => {
      await add(...ALL);
      expect(await list()).toEqual({ lines: expected(...ALL), stderr: summary(ALL.length, "shown") });
      expect(await list(["-f", "ipv4"])).toEqual({ lines: expected(TCP_ZONE5, UDP_UNREPLIED, ICMP_ZONE5, ESP, NATED, TIME_WAIT), stderr: summary(6, "shown") });
      expect(await list(["-f", "ipv6"])).toEqual({ lines: expected(TCP6_ZONE7, ICMP6_ZONE7), stderr: summary(2, "shown") });
    });

    it("lists a zone with -w (the l2 firewall's listing), zone 0 being the entries without one", async () => {
      await add(...ALL);
      expect(await list(["-w", "5"])).toEqual({ lines: expected(TCP_ZONE5, ICMP_ZONE5), stderr: summary(2, "shown") });
      expect(await list(["-w", "0"])).toEqual({ lines: expected(UDP_UNREPLIED, ESP, NATED, TIME_WAIT), stderr: summary(4, "shown") });
      expect(await list(["-w", "9"])).toEqual({ lines: [], stderr: summary(0, "shown") });
      expect(await list(["-f", "ipv6", "-w", "7"])).toEqual({ lines: expected(TCP6_ZONE7, ICMP6_ZONE7), stderr: summary(2, "shown") });
    });

    it("tracks one tuple once per zone: a second insert fails", async () => {
      await add(TCP_ZONE5);
      await add({ ...TCP_ZONE5, zone: 6 });
      await expect(s.addConnection(s.namespace, TCP_ZONE5)).rejects.toThrow(/Such conntrack exists, try -U to update/);
      // The connection seen from its other end is the same one: its original tuple is the reply tuple.
      await expect(s.addConnection(s.namespace, { ...TCP_ZONE5, src: "10.0.0.2", dst: "10.0.0.1", sport: 22, dport: 40000 })).rejects.toThrow(/Such conntrack exists/);
      expect(await remaining()).toEqual([line(TCP_ZONE5), line(TCP_ZONE5).replace("zone=5", "zone=6")].sort());
    });

    it("deletes as the l2 firewall does: -D [-p P] -f F -d|-s IP -w ZONE [-s|-d IP], printing what it deleted; exit 1 for nothing", async () => {
      await add(...ALL);
      expect(await del(["-p", "tcp", "-f", "ipv4", "-d", "10.0.0.2", "-w", "5", "-s", "10.0.0.1"])).toEqual(deleted(TCP_ZONE5));
      expect(await del(["-p", "tcp", "-f", "ipv4", "-d", "10.0.0.2", "-w", "5", "-s", "10.0.0.1"])).toEqual(deleted());
      expect(await del(["-f", "ipv4", "-s", "10.0.0.1", "-w", "5"])).toEqual(deleted(ICMP_ZONE5));
      // Neutron's names and numbers for a protocol: ipv6-icmp is 58 through /etc/protocols.
      expect(await del(["-p", "ipv6-icmp", "-f", "ipv6", "-d", "2001:db8::2", "-w", "7"])).toEqual(deleted(ICMP6_ZONE7));
      expect(await del(["-p", "6", "-f", "ipv6", "-s", "2001:db8::1", "-w", "7", "-d", "2001:db8::2"])).toEqual(deleted(TCP6_ZONE7));
      expect(await del(["-p", "udp", "-f", "ipv4", "-d", "10.0.0.3", "-w", "0"])).toEqual(deleted(UDP_UNREPLIED));
      expect(await remaining()).toEqual(expected(ESP, NATED, TIME_WAIT));
    });

    it("reads -p through /etc/protocols: Neutron's ipip (4) is protocol 94 there", async () => {
      const IPENCAP: FakeConnection = { protocol: 4, src: "10.0.0.1", dst: "10.0.0.2" };
      const IPIP: FakeConnection = { protocol: 94, src: "10.0.0.1", dst: "10.0.0.2" };
      await add(IPENCAP, IPIP);
      expect(await del(["-p", "ipip", "-f", "ipv4", "-d", "10.0.0.2"])).toEqual({
        lines: ["unknown  94 T src=10.0.0.1 dst=10.0.0.2 src=10.0.0.2 dst=10.0.0.1 [ASSURED] mark=0 use=1"],
        stderr: summary(1, "deleted"),
        exitCode: 0,
      });
      expect(await remaining()).toEqual(["unknown  4 T src=10.0.0.1 dst=10.0.0.2 src=10.0.0.2 dst=10.0.0.1 [ASSURED] mark=0 use=1"]);
    });

    it("deletes as the FWaaS cleaner does: a family at once, or one entry by its original tuple", async () => {
      await add(...ALL);
      expect(await del(["-f", "ipv6"])).toEqual(deleted(TCP6_ZONE7, ICMP6_ZONE7));
      expect(await del(["-f", "ipv4", "-p", "tcp", "-s", "10.0.0.1", "-d", "10.0.0.2", "--sport", "40000", "--dport", "23", "--zone", "5"])).toEqual(deleted());
      expect(await del(["-f", "ipv4", "-p", "tcp", "-s", "10.0.0.1", "-d", "10.0.0.2", "--sport", "40000", "--dport", "22", "--zone", "5"])).toEqual(deleted(TCP_ZONE5));
      expect(await del(["-f", "ipv4", "-p", "udp", "-s", "10.0.0.1", "-d", "10.0.0.3", "--sport", "5353", "--dport", "53"])).toEqual(deleted(UDP_UNREPLIED));
      expect(await del(["-f", "ipv4", "-p", "icmp", "-s", "10.0.0.1", "-d", "10.0.0.4", "--icmp-type", "8", "--icmp-code", "0", "--icmp-id", "77", "--zone", "5"])).toEqual(deleted(ICMP_ZONE5));
      expect(await del(["-f", "ipv4", "-p", "50", "-s", "10.0.0.1", "-d", "10.0.0.7"])).toEqual(deleted(ESP));
      // The original tuple of a NATed connection names its address before NAT.
      expect(await del(["-f", "ipv4", "-p", "tcp", "-s", "10.0.0.1", "-d", "192.168.0.5", "--sport", "40001", "--dport", "8080"])).toEqual(deleted());
      expect(await del(["-f", "ipv4", "-p", "tcp", "-s", "10.0.0.1", "-d", "203.0.113.5", "--sport", "40001", "--dport", "80"])).toEqual(deleted(NATED));
      expect(await del(["-f", "ipv4"])).toEqual(deleted(TIME_WAIT));
      expect(await conntrack(["-D", "-f", "ipv4"])).toEqual({ stdout: "", stderr: summary(0, "deleted"), exitCode: 1 });
    });

    it("deletes as the l3 router does: -D -d IP (to it) and -D -q IP (replies to it), the family read from the address", async () => {
      await add(...ALL);
      expect(await del(["-d", "203.0.113.5"])).toEqual(deleted(NATED));
      expect(await del(["-q", "10.0.0.1"])).toEqual(deleted(TCP_ZONE5, UDP_UNREPLIED, ICMP_ZONE5, ESP, TIME_WAIT));
      expect(await del(["-d", "2001:db8::2"])).toEqual(deleted(TCP6_ZONE7, ICMP6_ZONE7));
      expect(await del(["-d", "2001:db8::2"])).toEqual(deleted());
    });

    it("refuses what it cannot read with its usage message and exit 2", async () => {
      await add(TCP_ZONE5);
      expect(await conntrack(["-D", "-p", "ipv6-encap", "-f", "ipv6", "-d", "2001:db8::5", "-w", "1"])).toEqual(usage("`ipv6-encap' unsupported protocol"));
      expect(await conntrack(["-D", "-p", "pgm", "-f", "ipv4", "-d", "10.0.0.5", "-w", "1"])).toEqual(usage("`pgm' unsupported protocol"));
      expect(await conntrack(["-D", "-p", "256"])).toEqual(usage("`256' unsupported protocol"));
      expect(await conntrack(["-D", "-f", "inet"])).toEqual(usage("`inet' unsupported protocol"));
      expect(await conntrack(["-D", "-f", "ipv6", "-d", "10.0.0.2"])).toEqual(usage("mismatched address family"));
      expect(await conntrack(["-D", "-d", "10.0.0.2", "-f", "ipv6"])).toEqual(usage("mismatched address family"));
      expect(await conntrack(["-L", "-s", "10.0.0.1", "-d", "2001:db8::1"])).toEqual(usage("mismatched address family"));
      expect(await conntrack(["-D", "-d", "bogus"])).toEqual(usage("Invalid IP address `bogus'"));
      expect(await conntrack(["-D", "-d"])).toEqual(usage("option `-d' requires an argument"));
      expect(await conntrack(["-D", "-p", "tcp", "--dport"])).toEqual(usage("option `--dport' requires an argument"));
      // Extension options count only after their -p: the FWaaS cleaner's --icmp-type for an ICMPv6 entry fails.
      expect(await conntrack(["-D", "--sport", "40000", "-p", "tcp"])).toEqual(usage("unknown option `--sport'"));
      expect(await conntrack(["-D", "-f", "ipv6", "-p", "icmpv6", "-s", "2001:db8::1", "-d", "2001:db8::2", "--icmp-type", "128"])).toEqual(usage("unknown option `--icmp-type'"));
      expect(await conntrack(["-D", "-p", "ipv6-icmp", "--icmpv6-type", "128"])).toEqual(usage("unknown option `--icmpv6-type'"));
      expect(await conntrack(["-D", "-p", "TCP", "--sport", "40000", "-w", "5"])).toMatchObject({ stderr: summary(1, "deleted"), exitCode: 0 });
    });

    it("settles as exec does: CommandError unless reject is false, NamespaceGoneError for a deleted namespace", async () => {
      const err = await s.runner.exec("conntrack", ["-D", "-d", "10.0.0.9"], { namespace: s.namespace }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CommandError);
      expect(err).toMatchObject({ exitCode: 1, stderr: summary(0, "deleted") });
      const other = await s.otherNamespace();
      await s.addConnection(other.name, TCP_ZONE5);
      expect(await conntrack(["-L"])).toMatchObject({ stdout: "" });
      await other.delete();
      await expect(s.runner.exec("conntrack", ["-L"], { namespace: other.name })).rejects.toBeInstanceOf(NamespaceGoneError);
      expect(await conntrack(["-L"], other.name)).toEqual({ stdout: "", stderr: `Cannot open network namespace "${other.name}": No such file or directory\n`, exitCode: 255 });
    });

    describe("-R through prepare", () => {
      const prepare = (options: { namespace?: string; reject?: boolean; expireMs?: number } = {}) => {
        if (!s.runner.prepare) throw new Error("the runner does not offer prepare");
        return s.runner.prepare("conntrack", ["-R", PREPARED_INPUT], { namespace: s.namespace, reject: false, ...options });
      };
      const skipWithout = (ctx: { skip(note: string): never }) => {
        if (!s.runner.prepare) ctx.skip("the runner does not offer prepare (optional)");
      };

      it("runs every line given later, prints what it deleted, no summary, exit 0 even for nothing", async (ctx) => {
        skipWithout(ctx);
        await add(...ALL);
        const prepared = prepare();
        expect(prepared.waiting).toBe(true);
        const r = await prepared.run("-D -d 203.0.113.5\n-D -q 203.0.113.5\n-D -d 10.0.0.2\n-D -q 10.0.0.2\n-D -d 10.9.9.9\n\n");
        expect(prepared.waiting).toBe(false);
        expect({ ...r, stdout: lines(r.stdout) }).toEqual({ stdout: expected(NATED, TCP_ZONE5, TIME_WAIT), stderr: "", exitCode: 0 });
        expect(await prepare().run("-D -d 10.9.9.9\n")).toEqual({ stdout: "", stderr: "", exitCode: 0 });
        expect(await prepare().run("")).toEqual({ stdout: "", stderr: "", exitCode: 0 });
        await expect(prepared.run("-D -d 10.0.0.3\n")).rejects.toThrow(/prepared command run twice/);
      });

      it("reads every line before running any: one it cannot read fails the input, exit 2", async (ctx) => {
        skipWithout(ctx);
        await add(TCP_ZONE5);
        expect(await prepare().run("-D -d 10.0.0.2\n-D -d bogus\n")).toEqual(usage("Invalid IP address `bogus'"));
        expect(await prepare().run("-D -d 10.0.0.2\n-L\n")).toEqual(usage("Cannot use command `-L' with --load-file"));
        expect(await prepare().run("-D -d 10.0.0.2 -f ipv6\n")).toEqual(usage("mismatched address family"));
        expect(await remaining()).toEqual(expected(TCP_ZONE5));
        const err = await prepare({ reject: true })
          .run("-D -d bogus\n")
          .catch((e: unknown) => e);
        expect(err).toBeInstanceOf(CommandError);
        expect(err).toMatchObject({ exitCode: 2 });
      });

      it("does nothing once cancelled or expired, and cannot be run then", async (ctx) => {
        skipWithout(ctx);
        await add(TCP_ZONE5);
        const cancelled = prepare();
        cancelled.cancel();
        expect(cancelled.waiting).toBe(false);
        cancelled.cancel();
        const err = await cancelled.run("-D -d 10.0.0.2\n").catch((e: unknown) => e);
        expect(err).toBeInstanceOf(CommandError);
        expect(err).toMatchObject({ exitCode: undefined, message: expect.stringMatching(/cancelled \(or expired\) before it was run/) });
        const expiring = prepare({ expireMs: 100 });
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect(expiring.waiting).toBe(false);
        await expect(expiring.run("-D -d 10.0.0.2\n")).rejects.toThrow(/cancelled \(or expired\) before it was run/);
        expect(await remaining()).toEqual(expected(TCP_ZONE5));
      });

      it("answers for a namespace missing when it was prepared as exec does; one deleted after it started is still its own", async (ctx) => {
        skipWithout(ctx);
        const missing = await s.otherNamespace();
        await missing.delete();
        expect(await prepare({ namespace: missing.name }).run("-D -d 10.0.0.2\n")).toEqual({
          stdout: "",
          stderr: `Cannot open network namespace "${missing.name}": No such file or directory\n`,
          exitCode: 255,
        });
        await expect(prepare({ namespace: missing.name, reject: true }).run("-D -d 10.0.0.2\n")).rejects.toBeInstanceOf(NamespaceGoneError);

        const other = await s.otherNamespace();
        await s.addConnection(other.name, TCP_ZONE5);
        const prepared = prepare({ namespace: other.name });
        await s.preparedStarted?.(other.name);
        await other.delete();
        const r = await prepared.run("-D -d 10.0.0.2\n");
        expect({ ...r, stdout: lines(r.stdout) }).toEqual({ stdout: expected(TCP_ZONE5), stderr: "", exitCode: 0 });
      });

      it("fails to start without an exit status, so callers can fall back to exec", async (ctx) => {
        skipWithout(ctx);
        if (!s.failStarts) return ctx.skip("the subject cannot make starts fail");
        const restore = s.failStarts();
        try {
          const prepared = prepare();
          expect(prepared.waiting).toBe(true);
          const err = await prepared.run("-D -d 10.0.0.2\n").catch((e: unknown) => e);
          expect(err).toBeInstanceOf(CommandError);
          expect(err).toMatchObject({ exitCode: undefined, message: expect.stringMatching(/^conntrack -R <prepared input> failed \(exit \?\): could not be started: /) });
          expect(prepared.waiting).toBe(false);
        } finally {
          restore();
        }
      });

      it("needs PREPARED_INPUT among its arguments", (ctx) => {
        skipWithout(ctx);
        expect(() => s.runner.prepare!("conntrack", ["-R", "/dev/null"], { namespace: s.namespace })).toThrow(CommandError);
      });
    });
  });
}
