/**
 * Core's IptablesManager and applier against the fake iptables: the mechanics that are awkward to
 * provoke on a real kernel (injected failures, a concurrent writer, counting every save and restore).
 * The same behaviours on the real tools are in core's `iptables-manager.kernel.test.ts`; the fake is
 * kept honest by the runner contract suite.
 */
import {
  ChainNameCollisionError,
  InvalidChainNameError,
  InvalidRuleError,
  IptablesApplier,
  IptablesManager,
  RestoreError,
  UnknownChainError,
  NamespaceGoneError,
  type IptablesManagerOptions,
} from "@chainwarden/core";
import { describe, expect, it } from "vitest";
import { FakeIptablesRunner, type RestoreCall } from "./fake-iptables-runner.js";

const NS = "qrouter-1";

/**
 * Whether two restores ran at the same time. The fake applies a restore at once, so a hook that
 * takes a few milliseconds stands for the tool's run time (the fake runs hooks for one call at a
 * time: one that starts meanwhile goes straight through, still inside the other's run).
 */
function slowRestores(fake: FakeIptablesRunner): () => void {
  return fake.onBeforeRestore(() => new Promise((r) => setTimeout(r, 5)));
}

function overlapped(calls: readonly RestoreCall[]): boolean {
  const [a, b] = calls;
  return a !== undefined && b !== undefined && a.startedAt < b.endedAt! && b.startedAt < a.endedAt!;
}

function setup(options: Partial<IptablesManagerOptions> & { variant?: "nft" | "legacy" } = {}) {
  const { variant = "nft", ...rest } = options;
  const fake = new FakeIptablesRunner({ variant, namespaces: [NS] });
  const manager = new IptablesManager({ runner: fake, namespace: NS, strict: true, ...rest });
  return { fake, manager, t4: { namespace: NS, family: 4 as const } };
}

describe("IptablesManager with the fake iptables", () => {
  it("kernelChains gives the kernel's copy of a table (read once, a copy), and adding it back changes nothing", async () => {
    const { fake, manager, t4 } = setup({ wrapName: "neutron-l3-agent" });
    await manager.apply();
    fake.externalRestore(t4, "*filter\n:neutron-l3-agent-kept - [0:0]\n-A neutron-l3-agent-kept -s 10.1.0.0/16 -j DROP\n-A neutron-l3-agent-INPUT -j neutron-l3-agent-kept\nCOMMIT\n");
    manager.invalidate();
    const saves = fake.saveCalls.length;
    const kernel = await manager.kernelChains(4, "filter");
    expect(kernel.get("neutron-l3-agent-kept")).toEqual(["-s 10.1.0.0/16 -j DROP"]);
    (kernel.get("neutron-l3-agent-kept") as string[]).push("-j ACCEPT");
    expect((await manager.kernelChains(4, "filter")).get("neutron-l3-agent-kept")).toEqual(["-s 10.1.0.0/16 -j DROP"]);
    expect(fake.saveCalls.length).toBe(saves + 1);

    // Taken as the model, the kernel's copy stays as it is.
    const filter = manager.table(4, "filter");
    filter.addChain("kept");
    for (const rule of kernel.get("neutron-l3-agent-kept")!.slice(0, 1)) filter.addRule("kept", rule);
    filter.addRule("INPUT", "-j $kept");
    const restores = fake.restoreCalls.length;
    const result = await manager.apply();
    expect(result.sent).toBe(false);
    expect(fake.restoreCalls.length).toBe(restores);
    expect(fake.rules(t4, "filter", "neutron-l3-agent-kept")).toEqual(["-s 10.1.0.0/16 -j DROP"]);
  });

  it("keepKernelState takes the kernel's chains the model lacks, and the missing rules of the chains it picks; a second apply sends nothing", async () => {
    const { fake, manager, t4 } = setup({ wrapName: "neutron-l3-agent" });
    await manager.apply();
    fake.externalRestore(
      t4,
      "*filter\n:neutron-l3-agent-held - [0:0]\n-A neutron-l3-agent-held -s 10.1.0.0/16 -j DROP\n-A neutron-l3-agent-INPUT -j neutron-l3-agent-held\n-A neutron-l3-agent-local -j DROP\nCOMMIT\n",
    );
    manager.invalidate();
    const kept = await manager.keepKernelState({ tag: "kept", chain: (chain, declared) => !declared || chain === "neutron-l3-agent-INPUT" });
    expect(kept).toEqual({ chains: [{ family: 4, table: "filter", chain: "neutron-l3-agent-held" }], rules: ["-j neutron-l3-agent-held", "-s 10.1.0.0/16 -j DROP"] });
    const restores = fake.restoreCalls.length;
    await manager.apply();
    // Only the rule in `local` (a chain not picked) goes.
    expect(fake.restoreCalls.slice(restores).map((c) => c.input)).toEqual(["*filter\n-D neutron-l3-agent-local 1\nCOMMIT\n"]);
    expect(fake.rules(t4, "filter", "neutron-l3-agent-held")).toEqual(["-s 10.1.0.0/16 -j DROP"]);
    manager.table(4, "filter").clearRulesByTag("kept");
    await manager.apply();
    expect(fake.rules(t4, "filter", "neutron-l3-agent-INPUT")).toEqual([]);
  });

  it("kernelChains of a namespace that is not there is empty", async () => {
    const fake = new FakeIptablesRunner({ variant: "nft", namespaces: [] });
    const manager = new IptablesManager({ runner: fake, namespace: "qrouter-missing" });
    expect((await manager.kernelChains(4, "filter")).size).toBe(0);
  });

  it("rejects bad input before anything runs", () => {
    const { fake, manager } = setup();
    const filter = manager.table(4, "filter");
    filter.addChain("ok");
    const bad: [() => unknown, new (...a: never[]) => Error][] = [
      [() => filter.addRule("ok", "-s 10.0.0.1/32 -j ACCEPT\n-A INPUT -j DROP"), InvalidRuleError],
      [() => filter.addRule("ok", "-j ACCEPT COMMIT"), InvalidRuleError],
      [() => filter.addRule("ok", "COMMIT"), InvalidRuleError],
      [() => filter.addRule("ok", '-m comment --comment "a"b" -j ACCEPT'), InvalidRuleError],
      [() => filter.addRule("ok", "-m comment --comment 'x' -j ACCEPT"), InvalidRuleError],
      [() => filter.addRule("ok", "-j ACCEPT", { comment: 'say "hi"' }), InvalidRuleError],
      [() => filter.addRule("ok", "-j ACCEPT", { comment: "two\nlines" }), InvalidRuleError],
      [() => filter.addRule("ok", "-j ACCEPT", { comment: "COMMIT" }), InvalidRuleError],
      [() => filter.addRule("ok", `-j ${"x".repeat(29)}`), InvalidRuleError],
      [() => filter.addRule("ok", "-j $a-chain-name-that-is-long", { wrap: false }), InvalidRuleError],
      [() => filter.addChain("x".repeat(29), { wrap: false }), InvalidChainNameError],
      [() => filter.addChain("bad name"), InvalidChainNameError],
      [() => filter.addRule("INPUT\n*nat", "-j ACCEPT", { wrap: false }), InvalidChainNameError],
      [() => filter.addRule("missing", "-j ACCEPT"), UnknownChainError],
    ];
    for (const [fn, type] of bad) expect(fn).toThrow(type);
    expect(fake.restoreCalls).toEqual([]);
    expect(fake.saveCalls).toEqual([]);
  });

  it("names the resource in a rejected rule", () => {
    const { manager } = setup();
    manager.table(4, "filter").addChain("r1", { resource: "router r1" });
    expect(() => manager.table(4, "filter").addRule("r1", "-s 10.0.0.300/32 -j ACCEPT", { resource: "router r1" })).toThrow(/router r1/);
  });

  it("managers share canonical text but each names its own resource when a rule is rejected", () => {
    const a = setup().manager.table(4, "filter");
    const b = setup().manager.table(4, "filter");
    const c = setup({ strict: false }).manager.table(6, "filter");
    for (const [t, name] of [[a, "router a"], [b, "router b"]] as const) {
      t.addChain("fw", { resource: name });
      expect(t.addRule("fw", "-s 10.1.2.3/32 -p tcp -m tcp --dport 22 -j $fw", { resource: name }).text).toBe(
        "-s 10.1.2.3/32 -p tcp -m tcp --dport 22 -j neutron-l3-agent-fw",
      );
      expect(() => t.addRule("fw", "-s 10.1.2.300/32 -j ACCEPT", { resource: name })).toThrow(new RegExp(name));
    }
    // Not canonical as given: refused by the strict managers above, rewritten by a lenient one.
    expect(() => a.addRule("fw", "-p 6 -j ACCEPT")).toThrow(InvalidRuleError);
    c.addChain("fw");
    expect(c.addRule("fw", "-p 6 -j ACCEPT").text).toBe("-p tcp -j ACCEPT");
    expect(() => b.addRule("fw", "-p 6 -j ACCEPT")).toThrow(InvalidRuleError);
  });

  it("fails loudly when two different chain names would be cut to one kernel name", () => {
    const { manager } = setup();
    const filter = manager.table(4, "filter");
    expect(filter.addChain("iv480daec7b-1111")).toBe("neutron-l3-agent-iv480daec7b");
    expect(() => filter.addChain("iv480daec7b-2222")).toThrow(ChainNameCollisionError);
    // The same name again, or the already-cut name, is the same chain.
    expect(filter.addChain("iv480daec7b-1111")).toBe("neutron-l3-agent-iv480daec7b");
    expect(() => filter.addRule("iv480daec7b", "-j DROP")).not.toThrow();
    expect(() => filter.addRule("iv480daec7b-2222", "-j DROP")).toThrow(ChainNameCollisionError);
  });

  it("reads iptables-save once per family, then never on the hot path", async () => {
    const { fake, manager } = setup();
    await manager.apply();
    expect(fake.saveCalls.length).toBe(2);
    const nat = manager.table(4, "nat");
    for (let i = 0; i < 20; i++) {
      nat.clearRulesByTag("floating_ip");
      nat.addRule("float-snat", `-s 10.0.0.${i + 2}/32 -j SNAT --to-source 172.24.4.${i + 2}`, { tag: "floating_ip" });
      await manager.apply();
    }
    expect(fake.saveCalls.length).toBe(2);
  });

  it("assumeEmptyKernel(): a namespace created just now is not read, and gets the same input as a cold apply", async () => {
    const cold = setup();
    const fresh = setup();
    fresh.manager.assumeEmptyKernel();
    for (const m of [cold.manager, fresh.manager]) m.table(4, "filter").addRule("INPUT", "-s 10.0.0.0/24 -j ACCEPT");
    const a = await cold.manager.apply();
    const b = await fresh.manager.apply();
    expect(cold.fake.saveCalls.length).toBe(2);
    expect(fresh.fake.saveCalls.length).toBe(0);
    expect(b.families.map((f) => f.input)).toEqual(a.families.map((f) => f.input));
    // After a failure the view is dropped and the kernel is read again.
    fresh.manager.table(4, "filter").addRule("INPUT", "-s 10.0.1.0/24 -j ACCEPT");
    fresh.fake.failNextRestore({ exitCode: 1, stderr: "iptables-restore: line 2 failed\n" });
    await expect(fresh.manager.apply()).rejects.toThrow();
    await fresh.manager.apply();
    expect(fresh.fake.saveCalls.length).toBeGreaterThan(0);
    expect(fresh.fake.dump({ namespace: NS, family: 4 })).toContain("-A neutron-l3-agent-INPUT -s 10.0.1.0/24 -j ACCEPT");
  });

  it("sends only the changed tables and chains, and nothing when nothing changed", async () => {
    const { fake, manager } = setup();
    const filter = manager.table(4, "filter");
    for (let i = 0; i < 50; i++) {
      filter.addChain(`c${i}`);
      filter.addRule(`c${i}`, `-s 10.0.${i}.0/24 -j ACCEPT`);
    }
    await manager.apply();
    const calls = fake.restoreCalls.length;
    expect((await manager.apply()).sent).toBe(false);
    expect(fake.restoreCalls.length).toBe(calls);

    filter.addRule("c7", "-s 10.9.9.9/32 -j DROP", { top: true });
    const r = await manager.apply();
    expect(r.families[0]!.input).toBe("*filter\n-I neutron-l3-agent-c7 1 -s 10.9.9.9/32 -j DROP\nCOMMIT\n");
    expect(r.families[1]!.sent).toBe(false);
    expect(fake.restoreCalls.length).toBe(calls + 1);
  });

  it("removing a few tagged rules from a long chain, or a whole chain, keeps every other rule in order", async () => {
    const { fake, manager, t4 } = setup();
    const filter = manager.table(4, "filter");
    filter.addChain("sg");
    for (let i = 0; i < 40; i++) {
      filter.addChain(`p${i}`);
      filter.addRule(`p${i}`, `-s 10.0.${i}.0/24 -j RETURN`);
      filter.addRule("sg", `-s 10.1.${i}.0/24 -j $p${i}`, { top: true, tag: `port:${i}` });
      filter.addRule("sg", `-d 10.1.${i}.0/24 -j $p${i}`, { top: true, tag: `port:${i}` });
    }
    filter.addRule("sg", "-j ACCEPT");
    await manager.apply();
    // Few victims per chain (the splice path) for some, a whole chain and its jumps for another,
    // and more than a handful at once (the one-pass path) for the rest.
    for (const i of [0, 17, 39]) filter.clearRulesByTag(`port:${i}`);
    filter.removeChain("p5");
    filter.emptyChain("p6");
    await manager.deferApply(() => {
      for (let i = 20; i < 30; i++) filter.removeChain(`p${i}`);
    });
    await manager.apply();
    const kept = [...Array(40).keys()].filter((i) => ![0, 17, 39, 5].includes(i) && !(i >= 20 && i < 30));
    const sg = fake.dump(t4).split("\n").filter((l) => l.startsWith("-A neutron-l3-agent-sg "));
    expect(sg).toEqual([
      ...kept.flatMap((i) => [`-A neutron-l3-agent-sg -s 10.1.${i}.0/24 -j neutron-l3-agent-p${i}`, `-A neutron-l3-agent-sg -d 10.1.${i}.0/24 -j neutron-l3-agent-p${i}`]),
      "-A neutron-l3-agent-sg -j ACCEPT",
    ]);
    expect(filter.getChain("p6")).toEqual([]);
    expect(filter.hasChain("p5")).toBe(false);
    // Tags cleared once stay cleared; a chain re-added starts empty.
    filter.clearRulesByTag("port:1");
    filter.addChain("p5");
    expect(filter.getChain("p5")).toEqual([]);
    expect(filter.getChain("sg").filter((r) => r.tag === "port:1")).toEqual([]);
  });

  it("on nf_tables a large change goes to both families at once; a family that fails stays pending, the other is in", async () => {
    const { fake, manager, t4 } = setup({ variant: "nft" });
    const t6 = { namespace: NS, family: 6 as const };
    manager.table(6, "filter").addChain("x");
    await manager.apply();
    const fill = (from: number, to: number) => {
      for (const family of [4, 6] as const) {
        const filter = manager.table(family, "filter");
        for (let i = from; i < to; i++) {
          filter.addChain(`c${i}`);
          filter.addRule(`c${i}`, "-j RETURN");
          filter.addRule("INPUT", `-j $c${i}`);
        }
      }
    };
    fill(0, 300);
    const slow = slowRestores(fake);
    const r = await manager.apply();
    slow();
    expect(r.families.map((f) => [f.family, f.sent])).toEqual([[4, true], [6, true]]);
    expect(fake.dump(t4)).toContain("-A neutron-l3-agent-INPUT -j neutron-l3-agent-c299");
    expect(fake.dump(t6)).toContain("-A neutron-l3-agent-INPUT -j neutron-l3-agent-c299");
    expect(overlapped(fake.restoreCalls.slice(-2))).toBe(true);

    // Another writer deletes a chain our next IPv6 rules jump to: that restore fails, IPv4's change
    // is in, and the next apply re-reads IPv6 and sends its change again.
    fake.externalRestore(t6, "*filter\n-X neutron-l3-agent-x\nCOMMIT\n");
    fill(300, 600);
    manager.table(6, "filter").addRule("c599", "-j $x");
    await expect(manager.apply()).rejects.toThrow(RestoreError);
    expect(fake.dump(t4)).toContain("-j neutron-l3-agent-c599");
    expect(fake.dump(t6)).not.toContain("-j neutron-l3-agent-c599");
    const again = await manager.apply();
    expect(again.families.map((f) => [f.family, f.sent])).toEqual([[4, false], [6, true]]);
    expect(fake.dump(t6)).toContain("-A neutron-l3-agent-c599 -j neutron-l3-agent-x");
    expect((await manager.apply()).sent).toBe(false);
  });

  it("a large first apply of a new manager (families side by side) still adopts: stale chains of ours go", async () => {
    const { fake, manager, t4 } = setup({ variant: "nft" });
    const fill = (m: IptablesManager, from: number, to: number) => {
      for (const family of [4, 6] as const) {
        for (let i = from; i < to; i++) {
          m.table(family, "filter").addChain(`c${i}`);
          m.table(family, "filter").addRule(`c${i}`, "-j RETURN");
        }
      }
    };
    fill(manager, 0, 300);
    await manager.apply();
    // The agent restarts: a new manager wants c1..c300 (c0's port is gone).
    const restarted = new IptablesManager({ runner: fake, namespace: NS, strict: true });
    fill(restarted, 1, 301);
    const slow = slowRestores(fake);
    await restarted.apply();
    slow();
    expect(overlapped(fake.restoreCalls.slice(-2))).toBe(true);
    for (const family of [4, 6] as const) {
      const dump = fake.dump({ namespace: NS, family });
      expect(dump).not.toContain(":neutron-l3-agent-c0 ");
      expect(dump).toContain("-A neutron-l3-agent-c300 -j RETURN");
    }
    expect(fake.dump(t4)).toContain(":neutron-l3-agent-c1 ");
    expect((await restarted.apply()).sent).toBe(false);
  });

  it("a plan() before a restarted manager's first apply does not spare that apply its full comparison", async () => {
    const { fake, manager, t4 } = setup({ variant: "legacy" });
    for (const c of ["old", "kept"]) {
      manager.table(4, "filter").addChain(c);
      manager.table(4, "filter").addRule(c, "-j RETURN");
    }
    await manager.apply();
    // Restarted: only `kept` is wanted now. A plan reads the kernel first (a dry run, a status page).
    const restarted = new IptablesManager({ runner: fake, namespace: NS, strict: true });
    restarted.table(4, "filter").addChain("kept");
    restarted.table(4, "filter").addRule("kept", "-j RETURN");
    expect((await restarted.plan()).families[0]!.input).toContain("-X neutron-l3-agent-old");
    await restarted.apply();
    expect(fake.dump(t4)).not.toContain(":neutron-l3-agent-old ");
    expect(fake.dump(t4)).toContain("-A neutron-l3-agent-kept -j RETURN");
  });

  it("on legacy, for small changes, and for changes small next to the tables, the families go one after the other", async () => {
    for (const [variant, chains] of [["legacy", 300], ["nft", 10]] as const) {
      const { fake, manager } = setup({ variant });
      await manager.apply();
      slowRestores(fake);
      for (const family of [4, 6] as const) {
        for (let i = 0; i < chains; i++) manager.table(family, "filter").addChain(`c${i}`);
      }
      expect((await manager.apply()).families.every((f) => f.sent)).toBe(true);
      expect(overlapped(fake.restoreCalls.slice(-2))).toBe(false);
    }
    // 300 of 400 ten-rule chains go: a large change, but into 4,000-rule tables that the restore
    // committing second would have to re-read.
    const { fake, manager } = setup({ variant: "nft" });
    for (const family of [4, 6] as const) {
      for (let i = 0; i < 400; i++) {
        manager.table(family, "filter").addChain(`c${i}`);
        for (let k = 0; k < 10; k++) manager.table(family, "filter").addRule(`c${i}`, `-m mark --mark 0x${k + 1} -j RETURN`);
      }
    }
    await manager.apply();
    slowRestores(fake);
    for (const family of [4, 6] as const) for (let i = 0; i < 300; i++) manager.table(family, "filter").removeChain(`c${i}`);
    expect((await manager.apply()).families.every((f) => f.sent)).toBe(true);
    expect(overlapped(fake.restoreCalls.slice(-2))).toBe(false);
  });

  it("batches a deferApply block into one restore per family", async () => {
    const { fake, manager } = setup();
    await manager.apply();
    const before = fake.restoreCalls.length;
    await manager.deferApply(async (m) => {
      m.table(4, "filter").addRule("INPUT", "-s 10.1.0.0/16 -j ACCEPT");
      await m.apply(); // inside the block: deferred
      m.table(4, "nat").addRule("PREROUTING", "-d 172.24.4.9/32 -j DNAT --to-destination 10.1.0.9");
      m.table(6, "filter").addRule("INPUT", "-s 2001:db8::/64 -j ACCEPT");
    });
    expect(fake.restoreCalls.length - before).toBe(2);
    expect(fake.restoreCalls.at(-2)!.input).toMatch(/^\*filter\n[^*]*COMMIT\n\*nat\n/);
  });

  it("a failed restore raises RestoreError naming the resource; the next apply re-reads and converges", async () => {
    const { fake, manager, t4 } = setup({ variant: "legacy" });
    await manager.apply();
    const before = fake.dump(t4);
    manager.table(4, "filter").addChain("fw-1", { resource: "firewall fw-1" });
    manager.table(4, "filter").addRule("fw-1", "-p icmp -j DROP", { resource: "firewall fw-1" });
    fake.failNextRestore({ exitCode: 1, stderr: "iptables-restore: line 3 failed\n" });
    const err = (await manager.apply().catch((e: unknown) => e)) as RestoreError;
    expect(err).toBeInstanceOf(RestoreError);
    expect(err.line).toBe(3);
    expect(err.lineText).toBe("-A neutron-l3-agent-fw-1 -p icmp -j DROP");
    expect(err.chain).toBe("neutron-l3-agent-fw-1");
    expect(err.resource).toBe("firewall fw-1");
    expect(err.namespace).toBe(NS);
    expect(err.context.find((c) => c.failing)!.number).toBe(3);
    expect(err.message).toContain("firewall fw-1");
    expect(fake.dump(t4)).toBe(before);
    const saves = fake.saveCalls.length;
    await manager.apply();
    expect(fake.saveCalls.length).toBe(saves + 1); // the failed family re-reads; IPv6 had nothing to send
    expect(fake.rules(t4, "filter", "neutron-l3-agent-fw-1")).toEqual(["-p icmp -j DROP"]);
    expect((await manager.apply()).sent).toBe(false);
  });

  it("refuses a jump to a chain that will not exist, naming the resource, before sending", async () => {
    const { fake, manager } = setup();
    await manager.apply();
    const calls = fake.restoreCalls.length;
    manager.table(4, "filter").addRule("INPUT", "-j neutron-l3-agent-nowhere", { resource: "router r9" });
    const err = (await manager.apply().catch((e: unknown) => e)) as UnknownChainError;
    expect(err).toBeInstanceOf(UnknownChainError);
    expect(err.chain).toBe("neutron-l3-agent-nowhere");
    expect(err.resource).toBe("router r9");
    expect(fake.restoreCalls.length).toBe(calls);
  });

  it("waits out a held xtables lock with backoff (legacy)", async () => {
    const { fake, manager } = setup({ variant: "legacy", lockWaitSeconds: 0.05, lockRetry: { initialDelayMs: 20, maxDelayMs: 80, attempts: 20 } });
    fake.holdLock(300);
    const r = await manager.apply();
    expect(r.sent).toBe(true);
    expect(r.families[0]!.lockRetries).toBeGreaterThan(0);
  });

  it("gives up on a lock held longer than the retry budget with XtablesLockError", async () => {
    const { fake, manager } = setup({ variant: "legacy", lockWaitSeconds: 0.01, lockRetry: { initialDelayMs: 5, maxDelayMs: 5, attempts: 3 } });
    fake.holdLock(10_000);
    await expect(manager.apply()).rejects.toMatchObject({ code: "XTABLES_LOCK" });
    fake.releaseLock();
    expect((await manager.apply()).sent).toBe(true);
  });

  describe("legacy: both families under one hold of the xtables lock", () => {
    /** 4,100 rules in each family (enough for a hold), applied; the calls so far forgotten. */
    const big = async (manager: IptablesManager, fake: FakeIptablesRunner) => {
      for (const family of [4, 6] as const) {
        const filter = manager.table(family, "filter");
        filter.addChain("big");
        for (let i = 0; i < 4100; i++) filter.addRule("big", family === 4 ? `-s 10.9.${i >> 8}.${i & 255}/32 -j RETURN` : `-s 2001:db8::${(i + 1).toString(16)}/128 -j RETURN`);
      }
      await manager.apply();
      fake.restoreCalls.length = 0;
    };
    const drop = (family: 4 | 6, n: number) => (family === 4 ? `-s 10.200.0.${n}/32 -j DROP` : `-s 2001:db8:200::${n}/128 -j DROP`);
    /** A restore that must not wait: fails at once (XtablesLockError) if the lock is still held. */
    const lockFree = async (fake: FakeIptablesRunner) =>
      fake.restore({ namespace: NS, family: 4 }, "*filter\nCOMMIT\n", { lockWaitSeconds: 0.01 }).then(
        () => true,
        () => false,
      );

    it("a change of both families into large tables: the restores run at once, the lock is let go after", async () => {
      const { fake, manager } = setup({ variant: "legacy" });
      await big(manager, fake);
      const slow = slowRestores(fake);
      for (const family of [4, 6] as const) manager.table(family, "filter").addRule("FORWARD", drop(family, 1));
      await manager.apply();
      slow();
      expect(fake.restoreCalls.map((c) => [c.target.family, c.options.underHold !== undefined])).toEqual([[4, true], [6, true]]);
      expect(overlapped(fake.restoreCalls)).toBe(true);
      expect(await lockFree(fake)).toBe(true);
    });

    it("small tables, or one family changed: no hold, one after the other", async () => {
      const { fake, manager } = setup({ variant: "legacy" });
      await big(manager, fake);
      manager.table(4, "filter").addRule("FORWARD", drop(4, 2));
      await manager.apply();
      const small = setup({ variant: "legacy" });
      await small.manager.apply();
      small.fake.restoreCalls.length = 0;
      for (const family of [4, 6] as const) small.manager.table(family, "filter").addRule("FORWARD", drop(family, 1));
      await small.manager.apply();
      expect([...fake.restoreCalls, ...small.fake.restoreCalls].every((c) => c.options.underHold === undefined)).toBe(true);
      expect(small.fake.restoreCalls).toHaveLength(2);
    });

    it("a manager sharing the applier restores under the hold another's applyEarly took, without waiting for it", async () => {
      const fake = new FakeIptablesRunner({ variant: "legacy", namespaces: [NS] });
      // A restore that waited for the lock would fail at once: no wait, one attempt.
      const applier = new IptablesApplier({ runner: fake, namespace: NS, lockWaitSeconds: 0.01, lockRetry: { attempts: 1 } });
      const a = new IptablesManager({ runner: fake, namespace: NS, strict: true, applier, wrapName: "agent-a" });
      const b = new IptablesManager({ runner: fake, namespace: NS, strict: true, applier, wrapName: "agent-b" });
      await big(a, fake);
      await b.apply();
      fake.restoreCalls.length = 0;
      a.deferApplyOn();
      for (let i = 0; i < 300; i++) {
        a.table(6, "filter").addChain(`p${i}`);
        a.table(6, "filter").addRule(`p${i}`, drop(6, (i % 200) + 1));
      }
      expect(await a.applyEarly(6)).toBe(true);
      b.table(4, "filter").addRule("INPUT", drop(4, 3));
      expect((await b.apply()).sent).toBe(true);
      a.table(4, "filter").addRule("FORWARD", drop(4, 4));
      await a.deferApplyOff();
      expect(fake.restoreCalls.map((c) => [c.target.family, c.options.underHold !== undefined])).toEqual([[6, true], [4, true], [4, true]]);
      expect(await lockFree(fake)).toBe(true);
    });

    it("a hold applyEarly took for an apply that never comes is let go after the stream time-out", async () => {
      // Long enough that a loaded machine still checks the hold before it runs out.
      const { fake, manager } = setup({ variant: "legacy", streamMaxOpenMs: 1_000 });
      await big(manager, fake);
      manager.deferApplyOn();
      for (let i = 0; i < 300; i++) {
        manager.table(6, "filter").addChain(`p${i}`);
        manager.table(6, "filter").addRule(`p${i}`, drop(6, (i % 200) + 1));
      }
      expect(await manager.applyEarly(6)).toBe(true);
      expect(fake.restoreCalls.at(-1)?.options.underHold).toBeDefined();
      expect(await lockFree(fake)).toBe(false);
      const deadline = Date.now() + 10_000;
      while (!(await lockFree(fake)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(await lockFree(fake)).toBe(true);
    });
  });

  it("raises NamespaceGoneError for a namespace that vanished", async () => {
    const { fake, manager } = setup();
    await manager.apply();
    fake.deleteNamespace(NS);
    manager.table(4, "filter").addRule("INPUT", "-j ACCEPT");
    await expect(manager.apply()).rejects.toBeInstanceOf(NamespaceGoneError);
  });

  it("stays correct when another writer changes a shared chain behind its back", async () => {
    const { fake, manager, t4 } = setup();
    const filter = manager.table(4, "filter");
    filter.addRule("INPUT", "-s 10.1.0.0/16 -j ACCEPT", { wrap: false });
    filter.addRule("INPUT", "-s 10.2.0.0/16 -j ACCEPT", { wrap: false });
    await manager.apply();
    // Someone inserts rules at the top of INPUT between our applies; our view does not know.
    fake.onBeforeRestore((_call, f) => f.externalRestore(t4, "*filter\n-I INPUT 1 -s 192.0.2.1/32 -j DROP\n-I INPUT 1 -s 192.0.2.2/32 -j DROP\nCOMMIT\n"));
    filter.removeRule("INPUT", "-s 10.1.0.0/16 -j ACCEPT", { wrap: false });
    await manager.apply();
    const input = fake.rules(t4, "filter", "INPUT")!;
    expect(input).toContain("-s 192.0.2.1/32 -j DROP");
    expect(input).toContain("-s 192.0.2.2/32 -j DROP");
    expect(input).toContain("-s 10.2.0.0/16 -j ACCEPT");
    expect(input).not.toContain("-s 10.1.0.0/16 -j ACCEPT");
    expect(input).toContain("-j neutron-l3-agent-INPUT");
  });

  it("keeps the counters of unchanged rules", async () => {
    const { fake, manager, t4 } = setup();
    const filter = manager.table(4, "filter");
    filter.addRule("INPUT", "-s 10.1.0.0/16 -j ACCEPT");
    filter.addRule("INPUT", "-s 10.2.0.0/16 -j ACCEPT");
    await manager.apply();
    fake.countPackets(t4, "filter", "neutron-l3-agent-INPUT", 2, 7, 700);
    filter.addRule("INPUT", "-s 10.0.0.0/16 -j ACCEPT", { top: true });
    filter.removeRule("INPUT", "-s 10.1.0.0/16 -j ACCEPT");
    await manager.apply();
    expect(fake.dump(t4, { table: "filter", counters: true })).toContain("[7:700] -A neutron-l3-agent-INPUT -s 10.2.0.0/16 -j ACCEPT");
    const c = await manager.getTrafficCounters("INPUT");
    expect(c).toEqual({ packets: 7n, bytes: 700n });
  });

  it("at 100k rules, a one-rule change sends under 1 KB", async () => {
    const { manager } = setup({ useIpv6: false });
    const filter = manager.table(4, "filter");
    for (let c = 0; c < 10_000; c++) {
      filter.addChain(`c${c}`);
      filter.addRule("FORWARD", `-s 10.${c >> 8}.${c & 255}.0/24 -j $c${c}`);
      for (let r = 0; r < 10; r++) filter.addRule(`c${c}`, `-s 10.${c >> 8}.${c & 255}.${r + 1}/32 -j RETURN`);
    }
    await manager.apply();
    filter.removeRule("c5000", "-s 10.19.136.1/32 -j RETURN");
    filter.addRule("c5000", "-s 10.19.136.99/32 -p udp -m udp --dport 53 -j RETURN");
    const r = await manager.apply();
    expect(r.lines).toBe(2);
    expect(Buffer.byteLength(r.families[0]!.input)).toBeLessThan(1024);
  });

  it("nat: false manages filter, raw and mangle; stateless only filter and raw", async () => {
    const noNat = setup({ nat: false });
    await noNat.manager.apply();
    expect(Object.keys(noNat.manager.ipv4).sort()).toEqual(["filter", "mangle", "raw"]);
    expect(noNat.fake.rules(noNat.t4, "nat", "PREROUTING")).toBeUndefined();
    expect(noNat.fake.rules(noNat.t4, "mangle", "PREROUTING")).toEqual(["-j neutron-l3-agent-PREROUTING"]);
    const stateless = setup({ stateless: true, wrapName: "neutron-linuxbri" });
    await stateless.manager.apply();
    expect(Object.keys(stateless.manager.ipv6).sort()).toEqual(["filter", "raw"]);
    expect(stateless.fake.rules(stateless.t4, "mangle", "PREROUTING")).toBeUndefined();
  });

  it("plan() with a namespace that does not exist yet plans against an empty kernel", async () => {
    const fake = new FakeIptablesRunner({ variant: "nft" });
    const manager = new IptablesManager({ runner: fake, namespace: "qrouter-new" });
    const plan = await manager.plan();
    expect(plan.families[0]!.namespaceMissing).toBe(true);
    expect(plan.families[0]!.input).toContain(":neutron-l3-agent-INPUT - [0:0]");
    expect(fake.restoreCalls).toEqual([]);
  });
});
