/**
 * IptablesManager against real iptables (nf_tables and legacy), each test in a network namespace it
 * creates and always deletes. Nothing here touches the host namespace's rules; the legacy backend
 * uses a private xtables lock file so the tests never wait on (or block) the host.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ExecaRunner } from "./execa-runner.js";
import { ForwardingRunner } from "./forwarding-runner.js";
import { IptablesManager, type IptablesManagerOptions } from "./iptables-manager.js";
import { addNamespace, deleteNamespace, namespaceExists } from "./netns.js";
import { NamespaceGoneError, RestoreError } from "./errors.js";
import { normalizeSave, parseSave } from "./save-format.js";
import type { Backend, IpFamily, RestoreOptions, Target } from "./iptables-runner.js";

// The repository's copy of the Neutron reference (packages/testing/test-fixtures/README.md); read as files,
// since core cannot depend on the test kit.
const REFERENCE = join(import.meta.dirname, "../../testing/test-fixtures/reference");

/** The `--- iptables-save ---` / `--- ip6tables-save ---` sections of a reference step. */
function referenceSections(file: string, step = 1): Record<string, string> {
  const text = readFileSync(join(REFERENCE, file), "utf8");
  const blocks = text.split(/^=== after step (\d+): .* ===$/m);
  const idx = blocks.findIndex((b, i) => i % 2 === 1 && Number(b) === step);
  const body = blocks[idx + 1] ?? "";
  const out: Record<string, string> = {};
  for (const part of body.split(/^--- (.+) ---$/m).slice(1).reduce<string[][]>((acc, v, i) => {
    if (i % 2 === 0) acc.push([v]);
    else acc[acc.length - 1]!.push(v);
    return acc;
  }, [])) {
    out[part[0]!] = part[1]!.trim() + "\n";
  }
  return out;
}

describe.each(["nft", "legacy"] as Backend[])("IptablesManager on the real kernel (%s)", (backend) => {
  let lockDir: string;
  let lockFile: string;
  let runner: ExecaRunner;
  let ns: string;

  beforeAll(() => {
    if (process.getuid?.() !== 0) throw new Error("these tests program iptables in network namespaces: run them as root");
    lockDir = mkdtempSync(join(tmpdir(), "cw-xtables-"));
    lockFile = join(lockDir, "xtables.lock");
    writeFileSync(lockFile, "");
    runner = new ExecaRunner({ backend, env: { XTABLES_LOCKFILE: lockFile } });
  });
  afterAll(() => rmSync(lockDir, { recursive: true, force: true }));
  beforeEach(async () => {
    ns = `cw-core-${randomBytes(4).toString("hex")}`;
    await addNamespace(runner, ns);
  });
  afterEach(async () => {
    await deleteNamespace(runner, ns);
  });

  const manager = (options: Partial<IptablesManagerOptions> = {}) =>
    new IptablesManager({ runner, namespace: ns, strict: true, ...options });
  // Without the `#` header lines, which carry a timestamp.
  const save = async (family: IpFamily = 4, counters = false) =>
    (await runner.save({ namespace: ns, family }, counters ? { counters: true } : {}))
      .split("\n")
      .filter((l) => !l.startsWith("#"))
      .join("\n");
  const iptables = (args: string[], family: IpFamily = 4) =>
    runner.exec(family === 4 ? "iptables" : "ip6tables", ["-w", ...args], { namespace: ns });
  const ping = (count = 3) => runner.exec("ip", ["netns", "exec", ns, "ping", "-c", String(count), "-i", "0.2", "-q", "127.0.0.1"]).catch(() => undefined);

  describe("the initial layout equals real Neutron's", () => {
    it.each([
      ["manager_init_l3.expected.txt", {}],
      ["manager_init_l3_nocomments.expected.txt", { comments: false }],
      ["manager_init_stateless.expected.txt", { wrapName: "neutron-linuxbri", stateless: true }],
    ] as const)("%s, table by table", async (file, options) => {
      const m = manager(options);
      await m.apply();
      const expected = referenceSections(file);
      expect(normalizeSave(await save(4))).toBe(expected["iptables-save"]);
      expect(normalizeSave(await save(6))).toBe(expected["ip6tables-save"]);
    });

    it("in a namespace just created, assumeEmptyKernel() skips the adoption read and writes the same layout", async () => {
      const m = manager();
      m.assumeEmptyKernel();
      const first = await m.apply();
      expect(first.families.every((f) => f.full && f.sent)).toBe(true);
      const expected = referenceSections("manager_init_l3.expected.txt");
      expect(normalizeSave(await save(4))).toBe(expected["iptables-save"]);
      expect(normalizeSave(await save(6))).toBe(expected["ip6tables-save"]);
      expect((await m.apply()).sent).toBe(false);
      // The resync's verify() reads the kernel and finds nothing to repair.
      expect((await m.verify()).repaired).toBe(false);
    });

    it("with comments off, the seed's filter and nat jumps appear exactly as the seed lists them", async () => {
      await manager({ comments: false }).apply();
      const text = await save(4);
      for (const line of [
        "-A FORWARD -j neutron-filter-top",
        "-A OUTPUT -j neutron-filter-top",
        "-A neutron-filter-top -j neutron-l3-agent-local",
        "-A INPUT -j neutron-l3-agent-INPUT",
        "-A OUTPUT -j neutron-l3-agent-OUTPUT",
        "-A FORWARD -j neutron-l3-agent-FORWARD",
        "-A PREROUTING -j neutron-l3-agent-PREROUTING",
        "-A POSTROUTING -j neutron-l3-agent-POSTROUTING",
        "-A POSTROUTING -j neutron-postrouting-bottom",
        "-A neutron-postrouting-bottom -j neutron-l3-agent-snat",
        "-A neutron-l3-agent-snat -j neutron-l3-agent-float-snat",
      ]) {
        expect(text.split("\n")).toContain(line);
      }
    });
  });

  it("converges: the same state applied twice sends nothing the second time", async () => {
    const m = manager();
    m.table(4, "filter").addChain("test");
    m.table(4, "filter").addRule("INPUT", "-j $test");
    m.table(4, "filter").addRule("test", "-s 10.0.0.0/24 -p tcp -m tcp --dport 22 -j ACCEPT");
    m.table(6, "filter").addRule("INPUT", "-s 2001:db8::/64 -p tcp -m tcp --dport 22 -j ACCEPT");
    const first = await m.apply();
    expect(first.sent).toBe(true);
    const second = await m.apply();
    expect(second.sent).toBe(false);
    expect(second.lines).toBe(0);
    // Re-adding identical rules is still nothing to send.
    m.table(4, "filter").emptyChain("test");
    m.table(4, "filter").addRule("test", "-s 10.0.0.0/24 -p tcp -m tcp --dport 22 -j ACCEPT");
    expect((await m.apply()).lines).toBe(0);
  });

  it("a large change in both families (run side by side on nf_tables) lands whole in both, then converges", async () => {
    const m = manager();
    for (const family of [4, 6] as const) {
      const filter = m.table(family, "filter");
      for (let i = 0; i < 300; i++) {
        filter.addChain(`p${i}`);
        filter.addRule(`p${i}`, family === 4 ? `-s 10.1.${i >> 8}.${i & 255}/32 -j RETURN` : `-s 2001:db8::${(i + 1).toString(16)}/128 -j RETURN`);
        filter.addRule("FORWARD", `-j $p${i}`);
      }
    }
    const first = await m.apply();
    expect(first.families.map((f) => f.sent)).toEqual([true, true]);
    for (const family of [4, 6] as const) {
      const text = await save(family);
      expect(text.split("\n").filter((l) => l.startsWith("-A neutron-l3-agent-FORWARD -j neutron-l3-agent-p"))).toHaveLength(300);
      expect(text).toContain(family === 4 ? "-A neutron-l3-agent-p299 -s 10.1.1.43/32 -j RETURN" : "-A neutron-l3-agent-p299 -s 2001:db8::12c/128 -j RETURN");
    }
    expect((await m.apply()).lines).toBe(0);
    // What the manager holds is what the kernel holds: a fresh read finds nothing to repair.
    expect((await m.verify()).repaired).toBe(false);
  });

  it("a streamed apply (openStream) of both families lands whole: chains sent while computing, the rest at the end", async () => {
    const m = manager();
    await m.apply();
    m.deferApplyOn();
    // IPv6 first, then IPv4 sent early; on legacy both under one hold of the xtables lock.
    for (const family of [6, 4] as const) {
      expect(await m.openStream(family, "filter")).toBe(true);
      const filter = m.table(family, "filter");
      filter.addChain("fallback");
      for (let i = 0; i < 700; i++) {
        filter.addChain(`p${i}`);
        filter.addRule(`p${i}`, family === 4 ? `-s 10.1.${i >> 8}.${i & 255}/32 -j RETURN` : `-s 2001:db8::${(i + 1).toString(16)}/128 -j RETURN`);
        filter.addRule(`p${i}`, "-j $fallback");
        filter.addRule("FORWARD", `-j $p${i}`);
        m.streamChains(family, "filter", [`p${i}`]);
        if (i % 50 === 49) await new Promise((r) => setImmediate(r));
      }
      // After they went: one chain changes, one goes, the fallback gets its rule; the apply corrects.
      filter.addRule("p5", "-j DROP");
      filter.removeChain("p7");
      filter.addRule("fallback", "-j DROP");
      if (family === 6) expect(await m.applyEarly(6)).toBe(true);
    }
    const result = await m.deferApplyOff();
    expect(result.families.map((f) => [f.family, f.sent])).toEqual([[4, true], [6, true]]);
    for (const family of [4, 6] as const) {
      const text = await save(family);
      expect(text.split("\n").filter((l) => l.startsWith("-A neutron-l3-agent-FORWARD -j neutron-l3-agent-p"))).toHaveLength(699);
      expect(text).toContain("-A neutron-l3-agent-p5 -j DROP");
      expect(text).not.toContain(":neutron-l3-agent-p7 ");
      expect(text).toContain("-A neutron-l3-agent-fallback -j DROP");
    }
    expect((await m.apply()).lines).toBe(0);
    expect((await m.verify()).repaired).toBe(false);
  });

  it("a stream abandoned (plan() read the family meanwhile) commits nothing; the apply sends it all", async () => {
    const m = manager();
    await m.apply();
    m.deferApplyOn();
    expect(await m.openStream(4, "filter")).toBe(true);
    const filter = m.table(4, "filter");
    for (let i = 0; i < 400; i++) {
      filter.addChain(`q${i}`);
      filter.addRule(`q${i}`, "-j RETURN");
      m.streamChains(4, "filter", [`q${i}`]);
    }
    const plan = await m.plan();
    expect(plan.families[0]!.input).toContain(":neutron-l3-agent-q399 - [0:0]");
    expect(await save(4)).not.toContain("neutron-l3-agent-q0");
    await m.deferApplyOff();
    expect(await save(4)).toContain("-A neutron-l3-agent-q399 -j RETURN");
    expect((await m.verify()).repaired).toBe(false);
  });

  it("an input over a megabyte goes in whole (through an unlinked file), leaving no file behind", async () => {
    const before = new Set(readdirSync(tmpdir()).filter((f) => f.startsWith("chainwarden-input-")));
    const lines = ["*filter"];
    for (let i = 0; i < 12_000; i++) lines.push(`:cw-big-${i} - [0:0]`, `-A cw-big-${i} -s 10.${i >> 8 & 255}.${i & 255}.0/24 -m comment --comment "a comment that makes this input longer than a megabyte" -j RETURN`);
    lines.push("COMMIT");
    const input = `${lines.join("\n")}\n`;
    expect(input.length).toBeGreaterThan(1 << 20);
    await runner.restore({ namespace: ns, family: 4 }, input);
    const text = await save(4);
    expect(text).toContain("-A cw-big-11999 -s 10.46.223.0/24");
    expect(readdirSync(tmpdir()).filter((f) => f.startsWith("chainwarden-input-") && !before.has(f))).toEqual([]);
  });

  it("takes over what a previous run left: sends nothing for the same state and keeps every counter", async () => {
    const build = () => {
      const m = manager();
      const f = m.table(4, "filter");
      f.addChain("count");
      f.addRule("OUTPUT", "-o lo -j $count");
      f.addRule("count", "-p icmp -j RETURN", { comment: "count pings" });
      return m;
    };
    await build().apply();
    await ping();
    const before = await save(4, true);
    expect(before).toMatch(/\[[1-9]\d*:\d+\] -A neutron-l3-agent-count -p icmp/);
    const successor = build();
    const result = await successor.apply();
    expect(result.sent).toBe(false);
    expect(await save(4, true)).toBe(before);
  });

  it("takes over rules real Neutron wrote for the same input without sending anything", async () => {
    const expected = referenceSections("manager_init_l3.expected.txt");
    for (const [family, key] of [[4, "iptables-save"], [6, "ip6tables-save"]] as const) {
      // Neutron's layout, loaded as Neutron left it (restore of its save output).
      await runner.restore({ namespace: ns, family }, expected[key]!);
    }
    const result = await manager().apply();
    expect(result.families.map((f) => f.input)).toEqual(["", ""]);
  });

  it("never touches foreign rules, and unchanged rules keep their counters", async () => {
    await runner.restore(
      { namespace: ns, family: 4 },
      ["*filter", ":FOREIGN - [0:0]", ":neutron-linuxbri-local - [0:0]", ":neutron-filter-top - [0:0]",
        "-A INPUT -s 192.0.2.1/32 -j DROP", "-A OUTPUT -o lo -p icmp -j FOREIGN", "-A FOREIGN -j RETURN",
        "-A neutron-filter-top -j neutron-linuxbri-local", "COMMIT", ""].join("\n"),
    );
    const m = manager();
    const f = m.table(4, "filter");
    f.addRule("INPUT", "-s 198.51.100.0/24 -j DROP");
    await m.apply();
    await ping();
    const saved = parseSave(await save(4, true)).get("filter")!;
    const texts = (c: string) => saved.chains.get(c)!.rules.map((r) => r.text);
    // Ours first in shared chains, as Neutron writes them; foreign rules after, in their order.
    expect(texts("INPUT")).toEqual(["-j neutron-l3-agent-INPUT", "-s 192.0.2.1/32 -j DROP"]);
    expect(texts("OUTPUT")).toEqual(["-j neutron-filter-top", "-j neutron-l3-agent-OUTPUT", "-o lo -p icmp -j FOREIGN"]);
    expect(texts("neutron-filter-top")).toEqual(["-j neutron-l3-agent-local", "-j neutron-linuxbri-local"]);
    const foreignCount = saved.chains.get("OUTPUT")!.rules[2]!.counters!;
    expect(foreignCount.packets).toBeGreaterThan(0n);

    // Change ours in the same chains; the foreign rules and their counters stay as they were.
    f.removeRule("INPUT", "-s 198.51.100.0/24 -j DROP");
    f.addRule("INPUT", "-s 203.0.113.0/24 -j DROP", { top: true });
    m.table(4, "filter").addChain("x");
    m.table(4, "filter").addRule("OUTPUT", "-p udp -j $x", { wrap: false });
    await m.apply();
    const after = parseSave(await save(4, true)).get("filter")!;
    expect(after.chains.get("FOREIGN")!.rules.map((r) => r.text)).toEqual(["-j RETURN"]);
    expect(after.chains.get("OUTPUT")!.rules.map((r) => r.text)).toEqual([
      "-j neutron-filter-top", "-j neutron-l3-agent-OUTPUT", "-p udp -j neutron-l3-agent-x", "-o lo -p icmp -j FOREIGN",
    ]);
    expect(after.chains.get("OUTPUT")!.rules[3]!.counters).toEqual(foreignCount);
    expect(after.chains.get("OUTPUT")!.rules[0]!.counters).toEqual(saved.chains.get("OUTPUT")!.rules[0]!.counters);
    expect(after.chains.get("INPUT")!.rules.map((r) => r.text)).toEqual(["-j neutron-l3-agent-INPUT", "-s 192.0.2.1/32 -j DROP"]);
    expect(after.chains.get("neutron-l3-agent-INPUT")!.rules.map((r) => r.text)).toEqual(["-s 203.0.113.0/24 -j DROP"]);
    expect((await m.apply()).sent).toBe(false);
  });

  it("removeChain removes the jumps to it; tags clear together; top rules come first; IPv6 works", async () => {
    const m = manager();
    const f4 = m.table(4, "filter");
    const f6 = m.table(6, "filter");
    f4.addChain("victim");
    f4.addRule("FORWARD", "-i qr-+ -j $victim");
    f4.addRule("INPUT", "-j $victim");
    f4.addRule("victim", "-p tcp -m tcp --dport 80 -j DROP");
    f4.addRule("INPUT", "-s 10.1.0.0/16 -j ACCEPT", { tag: "t" });
    f4.addRule("INPUT", "-s 10.2.0.0/16 -j ACCEPT", { tag: "t" });
    f4.addRule("INPUT", "-s 10.3.0.0/16 -j ACCEPT", { top: true });
    f6.addChain("v6");
    f6.addRule("INPUT", "-j $v6");
    f6.addRule("v6", "-s 2001:db8::/32 -p ipv6-icmp -j ACCEPT");
    await m.apply();
    let s4 = parseSave(await save(4)).get("filter")!;
    expect(s4.chains.get("neutron-l3-agent-INPUT")!.rules.map((r) => r.text)).toEqual([
      "-s 10.3.0.0/16 -j ACCEPT", "-j neutron-l3-agent-victim", "-s 10.1.0.0/16 -j ACCEPT", "-s 10.2.0.0/16 -j ACCEPT",
    ]);
    const s6 = parseSave(await save(6)).get("filter")!;
    expect(s6.chains.get("neutron-l3-agent-v6")!.rules.map((r) => r.text)).toEqual(["-s 2001:db8::/32 -p ipv6-icmp -j ACCEPT"]);

    f4.removeChain("victim");
    f4.clearRulesByTag("t");
    const r = await m.apply();
    expect(r.families[0]!.input).toContain("-X neutron-l3-agent-victim");
    s4 = parseSave(await save(4)).get("filter")!;
    expect(s4.chains.has("neutron-l3-agent-victim")).toBe(false);
    expect(s4.chains.get("neutron-l3-agent-INPUT")!.rules.map((r) => r.text)).toEqual(["-s 10.3.0.0/16 -j ACCEPT"]);
    expect(s4.chains.get("neutron-l3-agent-FORWARD")!.rules).toEqual([]);
    expect((await m.apply()).sent).toBe(false);
  });

  it("stateless mode manages filter and raw only", async () => {
    const m = manager({ wrapName: "neutron-linuxbri", stateless: true });
    expect(() => m.table(4, "nat")).toThrow(/not managed/);
    m.table(4, "raw").addRule("PREROUTING", "-m physdev --physdev-in tap1234 -j CT --notrack");
    await m.apply();
    const tables = parseSave(await save(4));
    expect(tables.get("raw")!.chains.get("neutron-linuxbri-PREROUTING")!.rules.map((r) => r.text)).toEqual([
      "-m physdev --physdev-in tap1234 -j CT --notrack",
    ]);
    expect(tables.get("nat")?.chains.get("neutron-linuxbri-PREROUTING")).toBeUndefined();
  });

  it("a rule the kernel rejects: typed error with line context, kernel unchanged, next apply works", async () => {
    const m = manager();
    await m.apply();
    const before = await save(4);
    const f = m.table(4, "filter");
    f.addRule("INPUT", "-s 10.9.0.0/16 -j ACCEPT", { resource: "router r1" });
    // REDIRECT is only valid in the nat table: the canonicalizer accepts it, the kernel does not.
    f.addRule("INPUT", "-p tcp -m tcp --dport 80 -j REDIRECT --to-ports 9697", { resource: "router r2" });
    const err = await m.apply().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RestoreError);
    const re = err as RestoreError;
    expect(re.code === "RESTORE_FAILED" || re.code === "RESOURCE_PROBLEM").toBe(true);
    expect(re.namespace).toBe(ns);
    expect(re.stderr).not.toBe("");
    expect(re.context.length).toBeGreaterThan(0);
    expect(re.message).toContain(ns);
    if (re.line !== undefined && re.lineText?.includes("REDIRECT")) {
      expect(re.chain).toBe("neutron-l3-agent-INPUT");
      expect(re.resource).toBe("router r2");
    }
    expect(await save(4)).toBe(before);
    f.removeRule("INPUT", "-p tcp -m tcp --dport 80 -j REDIRECT --to-ports 9697");
    const ok = await m.apply();
    expect(ok.families[0]!.full).toBe(true);
    expect(parseSave(await save(4)).get("filter")!.chains.get("neutron-l3-agent-INPUT")!.rules.map((r) => r.text)).toEqual([
      "-s 10.9.0.0/16 -j ACCEPT",
    ]);
    expect((await m.apply()).sent).toBe(false);
  });

  it("verify() detects and repairs drift: a flushed chain and a deleted jump", async () => {
    const m = manager();
    m.table(4, "filter").addRule("INPUT", "-s 10.0.0.0/8 -j ACCEPT");
    m.table(4, "filter").addRule("INPUT", "-s 172.16.0.0/12 -j ACCEPT");
    await m.apply();
    const good = await save(4);
    await iptables(["-t", "filter", "-F", "neutron-l3-agent-INPUT"]);
    await iptables(["-t", "filter", "-D", "FORWARD", "-j", "neutron-filter-top"]);
    expect(await save(4)).not.toBe(good);
    const v = await m.verify();
    expect(v.repaired).toBe(true);
    expect(await save(4)).toBe(good);
    expect((await m.verify()).repaired).toBe(false);
  });

  it("plan() returns the exact input apply() sends and changes nothing", async () => {
    const m = manager();
    await m.apply();
    m.table(4, "nat").addRule("PREROUTING", "-d 172.24.4.20/32 -j DNAT --to-destination 10.0.0.5", { tag: "floating_ip" });
    const before = await save(4);
    const plan = await m.plan();
    expect(await save(4)).toBe(before);
    expect(plan.families[0]!.input).toBe("*nat\n-A neutron-l3-agent-PREROUTING -d 172.24.4.20/32 -j DNAT --to-destination 10.0.0.5\nCOMMIT\n");
    const applied = await m.apply();
    expect(applied.families[0]!.input).toBe(plan.families[0]!.input);
  });

  it("raises NamespaceGoneError when the namespace vanished", async () => {
    const m = manager();
    await m.apply();
    await deleteNamespace(runner, ns);
    expect(await namespaceExists(runner, ns)).toBe(false);
    m.table(4, "filter").addRule("INPUT", "-j ACCEPT");
    await expect(m.apply()).rejects.toBeInstanceOf(NamespaceGoneError);
    await addNamespace(runner, ns); // for afterEach
  });

  // The xtables lock is a legacy-backend mechanism; nf_tables serializes in the kernel.
  if (backend === "legacy") it("waits for the xtables lock another process holds for 2 s, then succeeds", async () => {
    const m = manager({ lockWaitSeconds: 1, lockRetry: { attempts: 10, initialDelayMs: 200, maxDelayMs: 1000 } });
    const holder = spawn("flock", [lockFile, "sleep", "2"], { stdio: "ignore" });
    try {
      // Wait until flock really holds the lock.
      for (let i = 0; i < 50; i++) {
        if ((await spawnExit("flock", ["-n", lockFile, "true"])) !== 0) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const t0 = performance.now();
      const result = await m.apply();
      expect(result.sent).toBe(true);
      expect(result.families[0]!.lockRetries).toBeGreaterThan(0);
      expect(performance.now() - t0).toBeGreaterThan(1000);
    } finally {
      holder.kill();
    }
    expect(normalizeSave(await save(4))).toBe(referenceSections("manager_init_l3.expected.txt")["iptables-save"]);
  });

  if (backend === "legacy") describe("both families under one hold of the xtables lock", () => {
    /** The real runner, noting when each restore ran and whether under our hold. */
    class TimedRunner extends ForwardingRunner<ExecaRunner> {
      readonly restores: { family: IpFamily; underHold: boolean; start: number; end: number }[] = [];
      override async restore(target: Target, input: string, options?: RestoreOptions): Promise<void> {
        // In the order they started.
        const noted = { family: target.family, underHold: options?.underHold !== undefined, start: performance.now(), end: Infinity };
        this.restores.push(noted);
        try {
          await super.restore(target, input, options);
        } finally {
          noted.end = performance.now();
        }
      }
    }
    const lockFree = async () => (await spawnExit("flock", ["-n", lockFile, "true"])) === 0;
    /** A manager whose tables hold 4,100 rules in each family (enough for a hold), applied. */
    const bigManager = async (timed: TimedRunner, options: Partial<IptablesManagerOptions> = {}) => {
      const m = new IptablesManager({ runner: timed, namespace: ns, strict: true, ...options });
      for (const family of [4, 6] as const) {
        const filter = m.table(family, "filter");
        filter.addChain("big");
        for (let i = 0; i < 4100; i++) filter.addRule("big", family === 4 ? `-s 10.9.${i >> 8}.${i & 255}/32 -j RETURN` : `-s 2001:db8::${(i + 1).toString(16)}/128 -j RETURN`);
      }
      await m.apply();
      timed.restores.length = 0;
      return m;
    };
    const drop = (family: IpFamily, n: number) => (family === 4 ? `-s 10.200.0.${n}/32 -j DROP` : `-s 2001:db8:200::${n}/128 -j DROP`);

    it("a change of both families into large tables: the two restores run side by side, the lock is free after", async () => {
      const timed = new TimedRunner(runner);
      const m = await bigManager(timed);
      for (const family of [4, 6] as const) m.table(family, "filter").addRule("FORWARD", drop(family, 1));
      const result = await m.apply();
      expect(result.families.map((f) => f.sent)).toEqual([true, true]);
      const [r4, r6] = [4, 6].map((f) => timed.restores.find((r) => r.family === f)!);
      expect([r4!.underHold, r6!.underHold]).toEqual([true, true]);
      // Each started before the other ended.
      expect(r4!.start < r6!.end && r6!.start < r4!.end).toBe(true);
      expect(await lockFree()).toBe(true);
      for (const family of [4, 6] as const) expect(await save(family)).toContain(`-A neutron-l3-agent-FORWARD ${drop(family, 1)}`);
      expect((await m.apply()).lines).toBe(0);
      // One family changed: no hold, a plain restore.
      m.table(4, "filter").addRule("FORWARD", drop(4, 2));
      await m.apply();
      expect(timed.restores.at(-1)).toMatchObject({ family: 4, underHold: false });
    });

    it("a family sent early (applyEarly) holds the lock for the other's restore too, and lets go at the end", async () => {
      const timed = new TimedRunner(runner);
      const m = await bigManager(timed);
      m.deferApplyOn();
      const many = (family: IpFamily) => {
        const filter = m.table(family, "filter");
        for (let i = 0; i < 300; i++) {
          filter.addChain(`p${i}`);
          filter.addRule(`p${i}`, drop(family, (i % 200) + 1));
          filter.addRule("FORWARD", `-j $p${i}`);
        }
      };
      many(6);
      expect(await m.applyEarly(6)).toBe(true);
      many(4);
      const result = await m.deferApplyOff();
      expect(result.families.map((f) => [f.family, f.sent])).toEqual([[4, true], [6, true]]);
      expect(timed.restores.map((r) => [r.family, r.underHold])).toEqual([[6, true], [4, true]]);
      expect(await lockFree()).toBe(true);
      expect((await m.verify()).repaired).toBe(false);
    });

    it("a lock another process keeps past the wait: the families take turns, waiting for it as before", async () => {
      const timed = new TimedRunner(runner);
      const m = await bigManager(timed, { lockWaitSeconds: 1, lockRetry: { attempts: 10, initialDelayMs: 200, maxDelayMs: 1000 } });
      for (const family of [4, 6] as const) m.table(family, "filter").addRule("FORWARD", drop(family, 3));
      const holder = spawn("flock", [lockFile, "sleep", "2"], { stdio: "ignore" });
      try {
        while ((await spawnExit("flock", ["-n", lockFile, "true"])) === 0) await new Promise((r) => setTimeout(r, 20));
        const result = await m.apply();
        expect(result.families.map((f) => f.sent)).toEqual([true, true]);
      } finally {
        holder.kill();
      }
      expect(timed.restores.every((r) => !r.underHold)).toBe(true);
      for (const family of [4, 6] as const) expect(await save(family)).toContain(`-A neutron-l3-agent-FORWARD ${drop(family, 3)}`);
    });
  });
});

function spawnExit(command: string, args: string[]): Promise<number | null> {
  const child = spawn(command, args, { stdio: "ignore" });
  return new Promise((resolve) => child.on("exit", resolve));
}

