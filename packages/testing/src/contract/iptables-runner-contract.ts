import { randomBytes } from "node:crypto";
import {
  NamespaceGoneError,
  ResourceProblemError,
  RestoreError,
  SaveError,
  XtablesLockError,
  formatSave,
  parseSave,
  type Backend,
  type IptablesRunner,
  type Target,
} from "@chainwarden/core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

/** The rule that loopback pings are expected to hit, for runners that cannot see real traffic. */
export interface TrafficHit {
  table: string;
  chain: string;
  /** 1-based, as `-D chain N`. */
  ruleIndex: number;
}

/** What one test of the contract gets from `setup`; a fresh, empty namespace each time. */
export interface IptablesRunnerContractSubject {
  runner: IptablesRunner;
  /** An IPv4 target in a namespace that exists and has no tables yet; IPv6 tests use family 6. */
  target: Target;
  variant: Backend;
  /** Makes another process hold the xtables lock the runner uses for `ms`; resolves once held. */
  holdLock?: (ms: number) => Promise<void>;
  /**
   * Sends two pings to the loopback address of `target`'s namespace (`lo` is up). Each ping is one
   * packet out and one back through OUTPUT; `hit` names the rule they match, for fakes.
   */
  sendPings?: (target: Target, hit: TrafficHit) => Promise<void>;
  /** A target whose namespace existed and was deleted; default: a name that never existed. */
  goneTarget?: () => Promise<Target>;
  dispose(): Promise<void>;
}

/**
 * The behaviour every `IptablesRunner` must show, checked against the real tools (nft and legacy)
 * and against `FakeIptablesRunner`, so the fake cannot drift from the kernel. Each test gets a
 * fresh subject from `setup` and disposes it afterwards.
 */
export function describeIptablesRunnerContract(name: string, setup: () => Promise<IptablesRunnerContractSubject>): void {
  describe(`IptablesRunner contract: ${name}`, () => {
    let s: IptablesRunnerContractSubject;
    let t: Target;
    let t6: Target;

    beforeEach(async () => {
      s = await setup();
      t = { ...s.target, family: 4 };
      t6 = { ...s.target, family: 6 };
    });
    afterEach(async () => {
      await s?.dispose();
    });

    const restore = (target: Target, lines: readonly string[]) => s.runner.restore(target, `${lines.join("\n")}\n`);
    /** The ruleset without `#` lines (they carry a timestamp) and without counters. */
    const state = async (target: Target) => formatSave(parseSave(await s.runner.save(target)));
    const rulesOf = async (target: Target, table: string, chain: string) =>
      parseSave(await s.runner.save(target, { table })).get(table)?.chains.get(chain)?.rules.map((r) => r.text);
    const restoreError = async (target: Target, lines: readonly string[]): Promise<RestoreError> => {
      const err = await restore(target, lines).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(RestoreError);
      return err as RestoreError;
    };
    const restoreProgram = (family: 4 | 6) => `${family === 4 ? "iptables" : "ip6tables"}${s.variant === "nft" ? "-nft" : ""}-restore`;
    /** A refusal by libiptc (legacy) or by iptables-nft's own checks. */
    const lineFailed = (line: number, nftReason: string, family: 4 | 6 = 4) =>
      `${restoreProgram(family)}: line ${line} failed${s.variant === "nft" ? `: ${nftReason}` : ""}\n`;

    const base = [
      "*filter",
      ":cw-a - [0:0]",
      ":cw-b - [0:0]",
      "-A INPUT -j cw-a",
      "-A cw-a -s 10.0.0.1/32 -j ACCEPT",
      "-A cw-a -s 10.0.0.2/32 -j DROP",
      "-A cw-b -p tcp -m tcp --dport 22 -j ACCEPT",
      "COMMIT",
      "*nat",
      ":cw-n - [0:0]",
      "-A POSTROUTING -j cw-n",
      "-A cw-n -s 10.0.0.0/24 -j MASQUERADE",
      "COMMIT",
    ];

    it("starts with no tables in a fresh namespace", async () => {
      expect(parseSave(await s.runner.save(t)).size).toBe(0);
      expect(parseSave(await s.runner.save(t6)).size).toBe(0);
    });

    it("normalizes rule text the way iptables-save prints it, and that text round-trips", async () => {
      await restore(t, [
        "*filter",
        ":cw-norm - [0:0]",
        "-A cw-norm --source 10.0.0.5 --jump ACCEPT",
        "-A cw-norm -s 10.0.0.5/24 -j DROP",
        "-A cw-norm -p 6 --dport 22:22 -j ACCEPT",
        '-A cw-norm -j ACCEPT -m comment --comment "hello world"',
        "-A cw-norm -m state --state ESTABLISHED,RELATED -j ACCEPT",
        "-A cw-norm -p icmp --icmp-type echo-request -j ACCEPT",
        "-A cw-norm --in-interface qr-1234 --out-interface qg+ -j DROP",
        "-A cw-norm -m mark --mark 0x00004000/0x0000ffff -j RETURN",
        "COMMIT",
      ]);
      const printed = [
        "-s 10.0.0.5/32 -j ACCEPT",
        "-s 10.0.0.0/24 -j DROP",
        "-p tcp -m tcp --dport 22 -j ACCEPT",
        '-m comment --comment "hello world" -j ACCEPT',
        "-m state --state RELATED,ESTABLISHED -j ACCEPT",
        "-p icmp -m icmp --icmp-type 8 -j ACCEPT",
        "-i qr-1234 -o qg+ -j DROP",
        "-m mark --mark 0x4000/0xffff -j RETURN",
      ];
      expect(await rulesOf(t, "filter", "cw-norm")).toEqual(printed);
      // The printed form is a fixed point: sent back, it comes out unchanged, and -D by text finds it.
      await restore(t, ["*filter", ":cw-again - [0:0]", ...printed.map((r) => `-A cw-again ${r}`), "COMMIT"]);
      expect(await rulesOf(t, "filter", "cw-again")).toEqual(printed);
      await restore(t, ["*filter", ...printed.map((r) => `-D cw-again ${r}`), "COMMIT"]);
      expect(await rulesOf(t, "filter", "cw-again")).toEqual([]);
    });

    it("edits a chain in place with -A, -I n, -D n, -R n and -D <rule>", async () => {
      await restore(t, [
        "*filter",
        ":cw-edit - [0:0]",
        "-A cw-edit -s 10.0.0.1/32 -j ACCEPT",
        "-A cw-edit -s 10.0.0.2/32 -j ACCEPT",
        "-A cw-edit -s 10.0.0.3/32 -j ACCEPT",
        "COMMIT",
      ]);
      await restore(t, [
        "*filter",
        "-I cw-edit 2 -s 10.0.0.4/32 -j ACCEPT",
        "-D cw-edit 1",
        "-R cw-edit 3 -s 10.0.0.5/32 -j DROP",
        "-D cw-edit -s 10.0.0.4/32 -j ACCEPT",
        "-I cw-edit -s 10.0.0.6/32 -j ACCEPT",
        "-A cw-edit -s 10.0.0.7/32 -j ACCEPT",
        "-I cw-edit 5 -s 10.0.0.8/32 -j ACCEPT",
        "COMMIT",
      ]);
      expect(await rulesOf(t, "filter", "cw-edit")).toEqual([
        "-s 10.0.0.6/32 -j ACCEPT",
        "-s 10.0.0.2/32 -j ACCEPT",
        "-s 10.0.0.5/32 -j DROP",
        "-s 10.0.0.7/32 -j ACCEPT",
        "-s 10.0.0.8/32 -j ACCEPT",
      ]);
    });

    it("flushes an existing user chain on `:chain` under --noflush; a built-in chain only gets its policy", async () => {
      await restore(t, base);
      await restore(t, ["*filter", ":INPUT DROP [0:0]", ":cw-a - [0:0]", "-A cw-a -j RETURN", "COMMIT"]);
      const filter = parseSave(await s.runner.save(t, { table: "filter" })).get("filter")!;
      expect(filter.chains.get("INPUT")?.policy).toBe("DROP");
      expect(filter.chains.get("INPUT")?.rules.map((r) => r.text)).toEqual(["-j cw-a"]);
      expect(filter.chains.get("cw-a")?.rules.map((r) => r.text)).toEqual(["-j RETURN"]);
      expect(filter.chains.get("cw-b")?.rules.map((r) => r.text)).toEqual(["-p tcp -m tcp --dport 22 -j ACCEPT"]);
    });

    it("applies nothing of a table block with a bad line and names that line", async () => {
      await restore(t, base);
      const before = await state(t);
      const input = [
        "*filter",
        "# a comment counts as a line",
        ":cw-new - [0:0]",
        "-A cw-new -j ACCEPT",
        "-I cw-a 1 -j DROP",
        "-A cw-missing -j ACCEPT",
        "-A cw-a -j RETURN",
        "COMMIT",
      ];
      const err = await restoreError(t, input);
      expect(err).not.toBeInstanceOf(ResourceProblemError);
      expect(err.exitCode).toBe(1);
      expect(err.line).toBe(6);
      expect(err.lineText).toBe("-A cw-missing -j ACCEPT");
      expect(err.chain).toBe("cw-missing");
      expect(err.stderr).toBe(lineFailed(6, "No chain/target/match by that name."));
      expect(await state(t)).toBe(before);
    });

    it("takes a streamed input in pieces as one restore (restoreStream), declarations among the rules", async (ctx) => {
      if (!s.runner.restoreStream) return ctx.skip("the runner does not offer restoreStream (optional)");
      await restore(t, base);
      const stream = s.runner.restoreStream(t);
      stream.write("*filter\n:cw-s1 - [0:0]\n-A cw-s1 -j ACCEPT\n");
      await new Promise((resolve) => setImmediate(resolve));
      stream.write(":cw-s2 - [0:0]\n-A cw-s2 -j cw-s1\n");
      await new Promise((resolve) => setImmediate(resolve));
      stream.write("-A cw-a -j RETURN\nCOMMIT\n*nat\n-A cw-n -d 10.9.9.9/32 -j ACCEPT\nCOMMIT\n");
      await stream.end();
      expect(await rulesOf(t, "filter", "cw-s1")).toEqual(["-j ACCEPT"]);
      expect(await rulesOf(t, "filter", "cw-s2")).toEqual(["-j cw-s1"]);
      expect(await rulesOf(t, "filter", "cw-a")).toEqual(["-s 10.0.0.1/32 -j ACCEPT", "-s 10.0.0.2/32 -j DROP", "-j RETURN"]);
      expect(await rulesOf(t, "nat", "cw-n")).toEqual(["-s 10.0.0.0/24 -j MASQUERADE", "-d 10.9.9.9/32 -j ACCEPT"]);
    });

    it("fails a streamed input like restore: the bad line named, nothing of its block in; no COMMIT commits nothing", async (ctx) => {
      if (!s.runner.restoreStream) return ctx.skip("the runner does not offer restoreStream (optional)");
      await restore(t, base);
      const before = await state(t);
      const bad = s.runner.restoreStream(t);
      bad.write("*filter\n:cw-new - [0:0]\n-A cw-new -j ACCEPT\n");
      await new Promise((resolve) => setImmediate(resolve));
      bad.write("-A cw-missing -j ACCEPT\n-A cw-a -j RETURN\nCOMMIT\n");
      const err = await bad.end().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(RestoreError);
      expect((err as RestoreError).line).toBe(4);
      expect((err as RestoreError).lineText).toBe("-A cw-missing -j ACCEPT");
      expect(await state(t)).toBe(before);

      const unfinished = s.runner.restoreStream(t);
      unfinished.write("*filter\n:cw-x - [0:0]\n-A cw-x -j ACCEPT\n");
      await new Promise((resolve) => setImmediate(resolve));
      await expect(unfinished.end()).rejects.toBeInstanceOf(RestoreError);
      expect(await state(t)).toBe(before);
    });

    it("commits table blocks one by one: a failing block leaves earlier blocks applied", async () => {
      await restore(t, base);
      const err = await restoreError(t, ["*filter", ":cw-first - [0:0]", "COMMIT", "*nat", "-A cw-nope -j ACCEPT", "COMMIT"]);
      expect(err.line).toBe(5);
      expect(err.table).toBe("nat");
      expect(await rulesOf(t, "filter", "cw-first")).toEqual([]);
    });

    it("applies nothing when the last table block has no COMMIT", async () => {
      await restore(t, base);
      const before = await state(t);
      const err = await restoreError(t, ["*filter", ":cw-x - [0:0]", "-A cw-x -j ACCEPT"]);
      expect(err.exitCode).toBe(1);
      expect(err.stderr).toBe(`${restoreProgram(4)}: COMMIT expected at line 4\n`);
      expect(err.line).toBe(4);
      expect(await state(t)).toBe(before);
    });

    it("refuses a jump or goto to a missing chain, and the error points at the rule (nft itself names the COMMIT line)", async () => {
      await restore(t, base);
      const before = await state(t);
      for (const [flag, legacyMessage] of [
        ["-j", "Couldn't load target `cw-nowhere':No such file or directory\n"],
        ["-g", "goto 'cw-nowhere' is not a chain"],
      ] as const) {
        const err = await restoreError(t, ["*filter", ":cw-j - [0:0]", `-A cw-j ${flag} cw-nowhere`, "-A cw-j -j ACCEPT", "COMMIT"]);
        expect(err.exitCode).toBe(2);
        // core's classifier maps nft's COMMIT line back to the rule that jumps to the missing chain.
        expect(err.line).toBe(3);
        expect(err.lineText).toBe(`-A cw-j ${flag} cw-nowhere`);
        const message = s.variant === "nft" ? "Chain 'cw-nowhere' does not exist" : legacyMessage;
        expect(err.stderr).toContain(`${message}\nError occurred at line: ${s.variant === "nft" ? 5 : 3}\n`);
      }
      // Chains must exist before the rule that jumps to them, also within one block.
      const late = await restoreError(t, ["*filter", "-A cw-b -j cw-late", "-N cw-late", "COMMIT"]);
      expect(late.exitCode).toBe(2);
      expect(await state(t)).toBe(before);
    });

    it("refuses to delete a chain that a rule still jumps to", async () => {
      await restore(t, base);
      const before = await state(t);
      await restore(t, ["*filter", "-F cw-a", "COMMIT"]);
      const emptied = await state(t);
      expect(emptied).not.toBe(before);
      const err = await restoreError(t, ["*filter", "-X cw-a", "COMMIT"]);
      expectChainDeleteRefused(err, 2, "cw-a");
      expect(await state(t)).toBe(emptied);
      // Once nothing jumps to it, it goes.
      await restore(t, ["*filter", "-D INPUT -j cw-a", "-X cw-a", "COMMIT"]);
      expect(await rulesOf(t, "filter", "cw-a")).toBeUndefined();
    });

    it("refuses to delete a chain that is not empty (nft: ResourceProblemError, exit 4)", async () => {
      await restore(t, base);
      const before = await state(t);
      const err = await restoreError(t, ["*filter", "# first", "-X cw-b", "COMMIT"]);
      expectChainDeleteRefused(err, 3, "cw-b");
      expect(await state(t)).toBe(before);
      // -X without a chain deletes every user chain, or none: nft lists each refusal.
      const all = await restoreError(t, ["*filter", "-X", "COMMIT"]);
      if (s.variant === "nft") {
        expect(all.stderr).toContain("line 2: CHAIN_DEL failed (Device or resource busy): chain cw-a\nline 2: CHAIN_DEL failed (Device or resource busy): chain cw-b\n");
      } else {
        expect(all.stderr).toBe(lineFailed(2, ""));
      }
      expect(await state(t)).toBe(before);
      await restore(t, ["*filter", "-F cw-b", "-X cw-b", "COMMIT"]);
      expect(await rulesOf(t, "filter", "cw-b")).toBeUndefined();
    });

    function expectChainDeleteRefused(err: RestoreError, line: number, chain: string): void {
      expect(err.line).toBe(line);
      if (s.variant === "nft") {
        expect(err).toBeInstanceOf(ResourceProblemError);
        expect(err.exitCode).toBe(4);
        expect(err.stderr).toContain(`line ${line}: CHAIN_DEL failed (Device or resource busy): chain ${chain}\n`);
      } else {
        expect(err).not.toBeInstanceOf(ResourceProblemError);
        expect(err.exitCode).toBe(1);
        expect(err.stderr).toBe(lineFailed(line, ""));
      }
    }

    it("refuses rule numbers out of range and chains that already exist", async () => {
      await restore(t, base);
      const before = await state(t);
      const cases = [
        ["-D cw-a 3", "Index of deletion too big."],
        ["-I cw-a 4 -j ACCEPT", "Index of insertion too big."],
        ["-R cw-a 3 -j ACCEPT", "Index of replacement too big."],
        ["-D cw-a -s 10.0.0.9/32 -j ACCEPT", "Bad rule (does a matching rule exist in that chain?)."],
        ["-N cw-b", "Chain already exists."],
        ["-P cw-b DROP", "Bad built-in chain name."],
      ] as const;
      for (const [line, reason] of cases) {
        const err = await restoreError(t, ["*filter", line, "COMMIT"]);
        expect(err.exitCode).toBe(1);
        expect(err.line).toBe(2);
        expect(err.stderr).toBe(lineFailed(2, reason));
      }
      const zero = await restoreError(t, ["*filter", "-D cw-a 0", "COMMIT"]);
      expect(zero.exitCode).toBe(2);
      expect(zero.stderr).toContain("Invalid rule number `0'\nError occurred at line: 2\n");
      expect(await state(t)).toBe(before);
    });

    it("leaves other chains and tables alone", async () => {
      await restore(t, base);
      const natState = async () => formatSave(parseSave(await s.runner.save(t, { table: "nat" })));
      const nat = await natState();
      await restore(t, ["*filter", "-A cw-a -j RETURN", "COMMIT"]);
      expect(await rulesOf(t, "filter", "cw-a")).toEqual(["-s 10.0.0.1/32 -j ACCEPT", "-s 10.0.0.2/32 -j DROP", "-j RETURN"]);
      expect(await rulesOf(t, "filter", "cw-b")).toEqual(["-p tcp -m tcp --dport 22 -j ACCEPT"]);
      expect(await rulesOf(t, "filter", "INPUT")).toEqual(["-j cw-a"]);
      expect(await natState()).toBe(nat);
    });

    it("keeps the packet counters of rules a later restore does not touch", async (ctx) => {
      if (!s.sendPings) ctx.skip();
      await restore(t, ["*filter", ":cw-c - [0:0]", "-A OUTPUT -p icmp -j ACCEPT", "-A OUTPUT -j cw-c", "-A cw-c -j RETURN", "COMMIT"]);
      await s.sendPings!(t, { table: "filter", chain: "OUTPUT", ruleIndex: 1 });
      const counted = parseSave(await s.runner.save(t, { counters: true })).get("filter")!.chains.get("OUTPUT")!.rules[0]!;
      expect(counted.text).toBe("-p icmp -j ACCEPT");
      expect(counted.counters!.packets).toBeGreaterThanOrEqual(4n);
      expect(counted.counters!.bytes).toBeGreaterThan(0n);

      await restore(t, ["*filter", "-I OUTPUT 1 -p udp -j ACCEPT", ":cw-c - [0:0]", "-A cw-c -j RETURN", "COMMIT"]);
      const after = parseSave(await s.runner.save(t, { counters: true })).get("filter")!.chains.get("OUTPUT")!.rules;
      expect(after.map((r) => r.text)).toEqual(["-p udp -j ACCEPT", "-p icmp -j ACCEPT", "-j cw-c"]);
      expect(after[0]!.counters).toEqual({ packets: 0n, bytes: 0n });
      expect(after[1]!.counters).toEqual(counted.counters);
    });

    it("keeps IPv6 apart from IPv4 and normalizes IPv6 rules", async () => {
      await restore(t6, [
        "*filter",
        ":cw-6 - [0:0]",
        "-A cw-6 -s 2001:db8::1 -j ACCEPT",
        "-A cw-6 -p 58 --icmpv6-type 135 -j ACCEPT",
        "COMMIT",
      ]);
      expect(await rulesOf(t6, "filter", "cw-6")).toEqual(["-s 2001:db8::1/128 -j ACCEPT", "-p ipv6-icmp -m icmp6 --icmpv6-type 135 -j ACCEPT"]);
      expect(parseSave(await s.runner.save(t)).size).toBe(0);
      const err = await restoreError(t6, ["*filter", "-A cw-nope -j ACCEPT", "COMMIT"]);
      expect(err.stderr).toBe(lineFailed(2, "No chain/target/match by that name.", 6));
    });

    it("lists tables in the order the backend prints them", async () => {
      await restore(t, ["*raw", ":cw-r - [0:0]", "COMMIT"]);
      await restore(t, ["*filter", ":cw-f - [0:0]", "COMMIT"]);
      // legacy: newest table first; nft: a fixed order (mangle, security, raw, filter, nat).
      expect([...parseSave(await s.runner.save(t)).keys()]).toEqual(s.variant === "nft" ? ["raw", "filter"] : ["filter", "raw"]);
      const raw = parseSave(await s.runner.save(t, { table: "raw" })).get("raw")!;
      expect([...raw.chains.keys()]).toEqual(["PREROUTING", "OUTPUT", "cw-r"]);
      // An empty block: legacy registers the table by opening it, nft creates nothing.
      await restore(t, ["*mangle", "COMMIT"]);
      expect([...parseSave(await s.runner.save(t)).keys()]).toEqual(s.variant === "nft" ? ["raw", "filter"] : ["mangle", "filter", "raw"]);
    });

    it("fails iptables-save of a table the family does not have with SaveError", async () => {
      await expect(s.runner.save(t, { table: "cw-no-such-table" })).rejects.toBeInstanceOf(SaveError);
    });

    it("raises NamespaceGoneError when the namespace does not exist (any more)", async () => {
      const gone = s.goneTarget ? await s.goneTarget() : { namespace: `cw-gone-${randomBytes(3).toString("hex")}`, family: 4 as const };
      const restoreErr = await s.runner.restore(gone, "*filter\nCOMMIT\n").then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(restoreErr).toBeInstanceOf(NamespaceGoneError);
      expect((restoreErr as NamespaceGoneError).stderr).toBe(`Cannot open network namespace "${gone.namespace}": No such file or directory\n`);
      await expect(s.runner.save(gone)).rejects.toBeInstanceOf(NamespaceGoneError);
    });

    it("waits for the xtables lock and fails with XtablesLockError after -w seconds (legacy; nft does not lock)", async (ctx) => {
      if (!s.holdLock) ctx.skip();
      await restore(t, base);
      const before = await state(t);
      await s.holdLock!(2500);
      const started = Date.now();
      const attempt = s.runner.restore(t, "*filter\n-A cw-b -j RETURN\nCOMMIT\n", { lockWaitSeconds: 1 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      const err = await attempt;
      if (s.variant === "nft") {
        expect(err).toBeUndefined();
        return;
      }
      expect(err).toBeInstanceOf(XtablesLockError);
      expect((err as XtablesLockError).stderr).toMatch(/^Can't lock .+: Resource temporarily unavailable\nAnother app is currently holding the xtables lock\. Stopped waiting after 1s\.\n$/);
      expect(Date.now() - started).toBeGreaterThanOrEqual(900);
      expect(await state(t)).toBe(before);
      // With a longer wait the same input goes through once the holder lets go.
      await s.runner.restore(t, "*filter\n-A cw-b -j RETURN\nCOMMIT\n", { lockWaitSeconds: 5 });
      expect(await rulesOf(t, "filter", "cw-b")).toEqual(["-p tcp -m tcp --dport 22 -j ACCEPT", "-j RETURN"]);
    });

    it("holds the xtables lock for restores given underHold, both families at once; others wait for its release (legacy; nft has none)", async (ctx) => {
      if (!s.runner.holdXtablesLock) ctx.skip();
      const hold = await s.runner.holdXtablesLock!({ waitSeconds: 1 });
      if (s.variant === "nft") {
        expect(hold).toBeUndefined();
        return;
      }
      const declare = (name: string) => `*filter\n:${name} - [0:0]\nCOMMIT\n`;
      try {
        expect(hold).toBeDefined();
        await Promise.all([s.runner.restore(t, declare("cw-held"), { underHold: hold! }), s.runner.restore(t6, declare("cw-held"), { underHold: hold! })]);
        const outside = await s.runner.restore(t, declare("cw-outside"), { lockWaitSeconds: 1 }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(outside).toBeInstanceOf(XtablesLockError);
      } finally {
        hold!.release();
      }
      for (const target of [t, t6]) expect(await s.runner.save(target)).toContain(":cw-held - [0:0]");
      expect(await s.runner.save(t)).not.toContain("cw-outside");
      await s.runner.restore(t, declare("cw-after"), { lockWaitSeconds: 1 });
      expect(await s.runner.save(t)).toContain(":cw-after - [0:0]");
    });
  });
}
