/**
 * The manager's two ways of sending a large change while the caller still computes it, against the
 * fake iptables: `applyEarly` (one family's restore starts before the other family is written) and
 * `openStream` (chains go to the restore as they are finished). Both must end exactly where a plain
 * apply ends; the kernel tests (core's `iptables-manager.kernel.test.ts`) run the same on the tools.
 */
import { IptablesManager, RestoreError, type IpFamily } from "@chainwarden/core";
import { describe, expect, it } from "vitest";
import { FakeIptablesRunner } from "./fake-iptables-runner.js";

const NS = "qrouter-1";

function setup(variant: "nft" | "legacy", restoreStream = true) {
  const fake = new FakeIptablesRunner({ variant, namespaces: [NS], restoreStream });
  const manager = new IptablesManager({ runner: fake, namespace: NS, strict: true });
  return { fake, manager };
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * A cold add of `n` port-like chains in one family, streaming each when `stream` is set; then, as
 * an agent may, changes to chains that already went: one grows, one goes, a shared chain fills.
 */
async function write(manager: IptablesManager, family: IpFamily, n: number, stream: boolean): Promise<void> {
  const filter = manager.table(family, "filter");
  filter.addChain("fallback");
  filter.addChain("spoof-0");
  filter.addRule("spoof-0", "-j RETURN");
  for (let i = 0; i < n; i++) {
    filter.addChain(`p${i}`);
    filter.addRule(`p${i}`, family === 4 ? `-s 10.1.${i >> 8}.${i & 255}/32 -j RETURN` : `-s 2001:db8::${(i + 1).toString(16)}/128 -j RETURN`);
    if (i === 0) filter.addRule("p0", "-j $spoof-0");
    filter.addRule(`p${i}`, "-j $fallback");
    filter.addRule("FORWARD", `-j $p${i}`, { top: true });
    if (stream) manager.streamChains(family, "filter", i === 0 ? ["spoof-0", "p0"] : [`p${i}`]);
    if (i % 40 === 39) await turn();
  }
  filter.addRule("p5", "-j DROP");
  filter.removeChain("p7");
  filter.addRule("fallback", "-j DROP");
  manager.table(family, "raw").addRule("PREROUTING", "-j CT --notrack");
}

describe("IptablesManager: sending a large change early (fake iptables)", () => {
  it.each(["nft", "legacy"] as const)("a streamed apply ends exactly where a plain one does (%s)", async (variant) => {
    const plain = setup(variant, false);
    const streamed = setup(variant);
    for (const { manager } of [plain, streamed]) await manager.apply();
    plain.manager.deferApplyOn();
    for (const family of [6, 4] as const) await write(plain.manager, family, 700, false);
    await plain.manager.deferApplyOff();

    const { fake, manager } = streamed;
    manager.deferApplyOn();
    for (const family of [6, 4] as const) {
      expect(await manager.openStream(family, "filter")).toBe(true);
      await write(manager, family, 700, true);
      if (family === 6) expect(await manager.applyEarly(6)).toBe(true);
    }
    const result = await manager.deferApplyOff();
    expect(result.families.map((f) => [f.family, f.sent])).toEqual([[4, true], [6, true]]);
    // One streamed restore per family; on legacy IPv6's (sent early) ends before IPv4's.
    const families = fake.restoreCalls.filter((c) => c.streamed).map((c) => c.target.family);
    expect(variant === "legacy" ? families : [...families].sort()).toEqual(variant === "legacy" ? [6, 4] : [4, 6]);
    for (const family of [4, 6] as const) {
      expect(fake.dump({ namespace: NS, family })).toBe(plain.fake.dump({ namespace: NS, family }));
      const input = result.families.find((f) => f.family === family)!.input;
      // Chains went in groups, declarations first (nf_tables parses interleaved ones twice as slowly).
      expect(input.indexOf(":neutron-l3-agent-p200 ")).toBeLessThan(input.indexOf("-A neutron-l3-agent-p0 "));
      expect(input).toContain("-A neutron-l3-agent-p5 -j DROP");
    }
    expect((await manager.apply()).sent).toBe(false);
    expect((await manager.verify()).repaired).toBe(false);
  });

  it.each([
    ["holds the xtables lock for both and the second family's tool starts at once", true],
    ["without a hold (a runner that cannot), the second family's tool starts once the first's restore is done", false],
  ])("on legacy a cold change streamed in both families %s", async (_name, canHold) => {
    const { fake, manager } = setup("legacy");
    if (!canHold) (fake as { holdXtablesLock?: unknown }).holdXtablesLock = undefined;
    await manager.apply();
    const opened: { family: IpFamily; at: number }[] = [];
    const open = fake.restoreStream!;
    fake.restoreStream = (target, options) => {
      opened.push({ family: target.family, at: performance.now() });
      return open(target, options);
    };
    const slow = fake.onBeforeRestore(() => new Promise((r) => setTimeout(r, 20)));
    manager.deferApplyOn();
    expect(await manager.openStream(6, "filter")).toBe(true);
    await write(manager, 6, 300, true);
    await manager.applyEarly(6);
    expect(await manager.openStream(4, "filter")).toBe(true);
    await write(manager, 4, 300, true);
    await manager.deferApplyOff();
    slow();
    const streamed = fake.restoreCalls.filter((c) => c.streamed);
    const v6 = streamed.find((c) => c.target.family === 6)!;
    expect(opened.map((o) => o.family)).toEqual([6, 4]);
    expect(streamed.map((c) => c.options.underHold !== undefined)).toEqual([canHold, canHold]);
    if (canHold) expect(opened[1]!.at).toBeLessThan(v6.endedAt!);
    else expect(opened[1]!.at).toBeGreaterThanOrEqual(v6.endedAt!);
    // Let go with the apply: a restore that must not wait goes through.
    await fake.restore({ namespace: NS, family: 4 }, "*filter\nCOMMIT\n", { lockWaitSeconds: 0.01 });
  });

  it("a streamed restore that fails: the error names the line and chain, nothing of it is in, the next apply completes", async () => {
    const { fake, manager } = setup("nft");
    manager.table(4, "filter").addChain("x");
    await manager.apply();
    manager.deferApplyOn();
    expect(await manager.openStream(4, "filter")).toBe(true);
    const filter = manager.table(4, "filter");
    for (let i = 0; i < 400; i++) {
      filter.addChain(`p${i}`);
      filter.addRule(`p${i}`, "-j $x");
      manager.streamChains(4, "filter", [`p${i}`]);
    }
    // Another writer deletes the chain the streamed rules jump to before the restore commits.
    fake.externalRestore({ namespace: NS, family: 4 }, "*filter\n-X neutron-l3-agent-x\nCOMMIT\n");
    const err = await manager.deferApplyOff().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RestoreError);
    expect((err as RestoreError).chain).toMatch(/^neutron-l3-agent-p\d+$/);
    expect(fake.dump({ namespace: NS, family: 4 })).not.toContain("neutron-l3-agent-p0");
    // The view was dropped: the next apply reads the kernel, re-creates x and sends every chain.
    const again = await manager.apply();
    expect(again.families.find((f) => f.family === 4)!.sent).toBe(true);
    expect(fake.dump({ namespace: NS, family: 4 })).toContain("-A neutron-l3-agent-p399 -j neutron-l3-agent-x");
    expect((await manager.verify()).repaired).toBe(false);
  });

  it("reading the family meanwhile (plan) abandons the stream: nothing of it committed, the apply sends it all", async () => {
    const { fake, manager } = setup("legacy");
    await manager.apply();
    manager.deferApplyOn();
    expect(await manager.openStream(4, "filter")).toBe(true);
    expect(await manager.openStream(4, "filter")).toBe(false);
    const filter = manager.table(4, "filter");
    for (let i = 0; i < 400; i++) {
      filter.addChain(`p${i}`);
      filter.addRule(`p${i}`, "-j RETURN");
      manager.streamChains(4, "filter", [`p${i}`]);
    }
    const plan = await manager.plan();
    expect(plan.families[0]!.input).toContain(":neutron-l3-agent-p399 - [0:0]");
    await turn();
    // The abandoned input ended without COMMIT: the tool refused it and nothing changed.
    const abandoned = fake.restoreCalls.filter((c) => c.streamed);
    expect(abandoned).toHaveLength(1);
    expect(abandoned[0]!.input).not.toContain("COMMIT");
    expect(fake.dump({ namespace: NS, family: 4 })).not.toContain("neutron-l3-agent-p0");
    const result = await manager.deferApplyOff();
    expect(result.families[0]!.lines).toBeGreaterThanOrEqual(800);
    expect(fake.dump({ namespace: NS, family: 4 })).toContain("-A neutron-l3-agent-p399 -j RETURN");
  });

  it("openStream refuses outside a deferred apply and with a runner that cannot stream; streamChains is then a no-op", async () => {
    const { manager } = setup("nft");
    expect(await manager.openStream(4, "filter")).toBe(false);
    const without = setup("nft", false);
    without.manager.deferApplyOn();
    expect(await without.manager.openStream(4, "filter")).toBe(false);
    without.manager.table(4, "filter").addChain("p");
    without.manager.streamChains(4, "filter", ["p"]);
    expect(without.fake.restoreCalls).toHaveLength(0);
    expect((await without.manager.deferApplyOff()).families[0]!.input).toContain(":neutron-l3-agent-p - [0:0]");
  });

  it("applyEarly: a large family's restore starts before the deferred apply ends, which reports it; small ones wait", async () => {
    const { fake, manager } = setup("legacy", false);
    await manager.apply();
    manager.deferApplyOn();
    manager.table(6, "filter").addChain("one");
    expect(await manager.applyEarly(6)).toBe(false);
    await write(manager, 4, 300, false);
    const before = fake.restoreCalls.length;
    expect(await manager.applyEarly(4)).toBe(true);
    expect(fake.restoreCalls.length).toBe(before + 1);
    expect(fake.restoreCalls.at(-1)!.target.family).toBe(4);
    // Changed again after it went: the deferred apply's end sends that too.
    manager.table(4, "filter").addRule("p1", "-j DROP");
    const result = await manager.deferApplyOff();
    expect(result.families.map((f) => [f.family, f.sent])).toEqual([[4, true], [4, true], [6, true]]);
    expect(fake.dump({ namespace: NS, family: 4 })).toContain("-A neutron-l3-agent-p1 -j DROP");
    expect((await manager.apply()).sent).toBe(false);
  });

  it("applyEarly: a failing early family is thrown at the end, after the other family went; its changes stay pending", async () => {
    const { fake, manager } = setup("nft", false);
    await manager.apply();
    manager.deferApplyOn();
    await write(manager, 4, 300, false);
    fake.failNextRestore({ exitCode: 1, stderr: "iptables-restore: line 2 failed\n" });
    expect(await manager.applyEarly(4)).toBe(true);
    manager.table(6, "filter").addChain("six");
    await expect(manager.deferApplyOff()).rejects.toBeInstanceOf(RestoreError);
    expect(fake.dump({ namespace: NS, family: 6 })).toContain(":neutron-l3-agent-six ");
    expect(fake.dump({ namespace: NS, family: 4 })).not.toContain("neutron-l3-agent-p0");
    const again = await manager.apply();
    expect(again.families.map((f) => [f.family, f.sent])).toEqual([[4, true], [6, false]]);
    expect(fake.dump({ namespace: NS, family: 4 })).toContain("-A neutron-l3-agent-p299 -j neutron-l3-agent-fallback");
  });

  it("a deferred section that throws, or a stream left unfinished, ends the stream uncommitted; the next apply sends it all", async () => {
    const fake = new FakeIptablesRunner({ variant: "legacy", namespaces: [NS] });
    const manager = new IptablesManager({ runner: fake, namespace: NS, strict: true, streamMaxOpenMs: 30 });
    await manager.apply();
    const chains = (from: number, to: number) => {
      for (let i = from; i < to; i++) {
        manager.table(4, "filter").addChain(`p${i}`);
        manager.table(4, "filter").addRule(`p${i}`, "-j RETURN");
        manager.streamChains(4, "filter", [`p${i}`]);
      }
    };
    await expect(
      manager.deferApply(async (m) => {
        expect(await m.openStream(4, "filter")).toBe(true);
        chains(0, 400);
        throw new Error("a handler failed");
      }),
    ).rejects.toThrow("a handler failed");
    await turn();
    const uncommitted = () => fake.restoreCalls.filter((c) => c.streamed && !c.input.includes("COMMIT"));
    expect(uncommitted()).toHaveLength(1);
    expect(fake.dump({ namespace: NS, family: 4 })).not.toContain("neutron-l3-agent-p0");

    // Opened and never finished: abandoned after streamMaxOpenMs (30 s by default).
    manager.deferApplyOn();
    expect(await manager.openStream(4, "filter")).toBe(true);
    chains(400, 800);
    await new Promise((r) => setTimeout(r, 80));
    expect(uncommitted()).toHaveLength(2);
    const result = await manager.deferApplyOff();
    expect(result.families[0]!.sent).toBe(true);
    expect(fake.dump({ namespace: NS, family: 4 })).toContain("-A neutron-l3-agent-p0 -j RETURN");
    expect(fake.dump({ namespace: NS, family: 4 })).toContain("-A neutron-l3-agent-p799 -j RETURN");
  });

  /**
   * A cold add with a shared chain that gets a `top` jump per port and ends with a fixed ACCEPT, as
   * the l2 driver's `sg-chain`: `streamGrowth` at every pause. `twist` changes things mid-way.
   */
  async function grow(manager: IptablesManager, stream: boolean, twist: "none" | "remove-early-jump" | "late-target" | "duplicate-jump" | "chain-removed"): Promise<void> {
    const filter = manager.table(4, "filter");
    filter.addChain("sg");
    filter.addRule("sg", "-j ACCEPT");
    filter.addRule("FORWARD", "-j $sg");
    for (let i = 0; i < 700; i++) {
      filter.addChain(`p${i}`);
      filter.addRule(`p${i}`, `-s 10.1.${i >> 8}.${i & 255}/32 -j RETURN`);
      filter.addRule("sg", `-i tap${i} -j $p${i}`, { top: true });
      // A chain not streamed before the end (its jump cannot go before it is declared).
      if (twist === "late-target" && i === 100) {
        filter.addChain("late");
        filter.addRule("sg", "-i tap-late -j $late", { top: true });
      }
      if (stream) manager.streamChains(4, "filter", [`p${i}`]);
      if (twist === "remove-early-jump" && i === 400) filter.removeRule("sg", "-i tap3 -j $p3", { top: true });
      // renderChain keeps the last of two equal rules: the copy sent early moves.
      if (twist === "duplicate-jump" && i === 400) filter.addRule("sg", "-i tap3 -j $p3", { top: true });
      if (i % 40 === 39) {
        if (stream) manager.streamGrowth(4, "filter", ["sg"]);
        await turn();
      }
    }
    // The shared chain goes after it was sent (with the jumps to it): the apply takes it out again.
    if (twist === "chain-removed") filter.removeChain("sg");
  }

  it.each([
    ["nft", "none"],
    ["legacy", "none"],
    ["nft", "remove-early-jump"],
    ["legacy", "late-target"],
    ["nft", "duplicate-jump"],
    ["legacy", "chain-removed"],
  ] as const)("streamGrowth sends a shared chain's jumps as ports come, and the apply ends where a plain one does (%s, %s)", async (variant, twist) => {
    const plain = setup(variant, false);
    const streamed = setup(variant);
    plain.manager.deferApplyOn();
    await grow(plain.manager, false, twist);
    const want = await plain.manager.deferApplyOff();
    const { fake, manager } = streamed;
    manager.deferApplyOn();
    expect(await manager.openStream(4, "filter")).toBe(true);
    await grow(manager, true, twist);
    const result = await manager.deferApplyOff();
    expect(fake.dump({ namespace: NS, family: 4 })).toBe(plain.fake.dump({ namespace: NS, family: 4 }));
    const input = result.families.find((f) => f.family === 4)!.input;
    // The jump to the first ports went with an early group of chains, long before the last port's chain.
    expect(input.indexOf("-A neutron-l3-agent-sg -i tap0 -j neutron-l3-agent-p0")).toBeGreaterThan(-1);
    expect(input.indexOf("-A neutron-l3-agent-sg -i tap0 -j neutron-l3-agent-p0")).toBeLessThan(input.indexOf(":neutron-l3-agent-p699 "));
    if (twist === "chain-removed") {
      expect(fake.dump({ namespace: NS, family: 4 })).not.toContain("neutron-l3-agent-sg");
      expect(input).toContain("-X neutron-l3-agent-sg");
      return;
    }
    // The chain is reported once, as created, with all its rules.
    const sg = result.families[0]!.changes.filter((c) => c.chain === "neutron-l3-agent-sg");
    const moved = twist === "remove-early-jump" || twist === "duplicate-jump" ? 1 : 0;
    expect(sg).toEqual([{ table: "filter", chain: "neutron-l3-agent-sg", added: (twist === "late-target" ? 702 : 701) + (twist === "duplicate-jump" ? 1 : 0), removed: moved, created: true }]);
    expect(want.families[0]!.changes.filter((c) => c.chain === "neutron-l3-agent-sg")[0]!.added).toBe(sg[0]!.added - sg[0]!.removed);
    if (twist === "none") {
      // Nothing of the chain was sent twice: the streamed jumps, then the rest and the ACCEPT at the end.
      expect(input.split("\n").filter((l) => l.startsWith("-A neutron-l3-agent-sg ") || l.startsWith("-I neutron-l3-agent-sg "))).toHaveLength(701);
    }
    if (twist === "late-target") {
      // Stopped at the jump to the chain not yet declared; everything after it waited for the end.
      const jumpLate = input.indexOf("-j neutron-l3-agent-late");
      expect(jumpLate).toBeGreaterThan(input.indexOf(":neutron-l3-agent-late "));
      expect(input.indexOf("-A neutron-l3-agent-sg -i tap101 ")).toBeGreaterThan(jumpLate);
    }
    expect((await manager.apply()).sent).toBe(false);
    expect((await manager.verify()).repaired).toBe(false);
  });

  it("streamGrowth leaves alone chains the kernel has, and an abandoned stream's grown chains go whole with the next apply", async () => {
    const { fake, manager } = setup("legacy");
    await manager.apply();
    manager.deferApplyOn();
    expect(await manager.openStream(4, "filter")).toBe(true);
    const filter = manager.table(4, "filter");
    filter.addChain("sg");
    for (let i = 0; i < 10; i++) {
      filter.addChain(`p${i}`);
      filter.addRule(`p${i}`, "-j RETURN");
      filter.addRule("sg", `-i tap${i} -j $p${i}`, { top: true });
      // FORWARD (wrapped) exists since the first apply: its jumps are left to the apply's diff.
      filter.addRule("FORWARD", `-i tap${i} -j $sg`, { top: true });
      manager.streamChains(4, "filter", [`p${i}`]);
    }
    manager.streamGrowth(4, "filter", ["sg", "FORWARD"]);
    // plan() reads the family: the stream is abandoned, nothing of it committed.
    await manager.plan();
    await turn();
    expect(fake.dump({ namespace: NS, family: 4 })).not.toContain("neutron-l3-agent-sg");
    const result = await manager.deferApplyOff();
    const dump = fake.dump({ namespace: NS, family: 4 });
    expect(dump).toContain("-A neutron-l3-agent-sg -i tap9 -j neutron-l3-agent-p9");
    expect(dump.split("\n").filter((l) => l.startsWith("-A neutron-l3-agent-FORWARD -i tap"))).toHaveLength(10);
    expect(result.families[0]!.input).toContain(":neutron-l3-agent-sg - [0:0]");
  });

  it("a table's topRules follow a growing chain (resuming where the last call ended) and count removals", () => {
    const { manager } = setup("nft");
    const filter = manager.table(4, "filter");
    filter.addChain("sg");
    filter.addRule("sg", "-j ACCEPT");
    const texts = (from: number) => filter.topRules("neutron-l3-agent-sg", from).map((r) => r.text);
    for (let i = 0; i < 3; i++) filter.addRule("sg", `-i tap${i} -j DROP`, { top: true });
    expect(texts(0)).toEqual(["-i tap0 -j DROP", "-i tap1 -j DROP", "-i tap2 -j DROP"]);
    filter.addRule("sg", "-i tap3 -j DROP", { top: true });
    filter.addRule("sg", "-j LOG");
    expect(texts(3)).toEqual(["-i tap3 -j DROP"]);
    expect(texts(4)).toEqual([]);
    expect(texts(1)).toEqual(["-i tap1 -j DROP", "-i tap2 -j DROP", "-i tap3 -j DROP"]);
    expect(filter.removals("neutron-l3-agent-sg")).toBe(0);
    filter.removeRule("sg", "-i tap1 -j DROP", { top: true });
    expect(filter.removals("neutron-l3-agent-sg")).toBe(1);
    expect(texts(0)).toEqual(["-i tap0 -j DROP", "-i tap2 -j DROP", "-i tap3 -j DROP"]);
    expect(filter.renderChain("neutron-l3-agent-sg")).toEqual(["-i tap0 -j DROP", "-i tap2 -j DROP", "-i tap3 -j DROP", "-j ACCEPT", "-j LOG"]);
  });
});
