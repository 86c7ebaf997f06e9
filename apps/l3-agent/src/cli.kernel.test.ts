/**
 * The built l3-agent binary against the real kernel: every test creates its own network namespace
 * (unique name) and deletes it in teardown, also when the test fails; a still-running agent is
 * killed first. Rules come from the example static-chains plugin, loaded by package name from a
 * config file, as an operator would load a third-party plugin.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Cleanups, createNetns, isRoot, type TestNetns } from "@chainwarden/testing";
import { afterEach, describe, expect, it } from "vitest";
import { AgentProcess, freePort, runCli, waitFor } from "@chainwarden/testing";

const APP_DIR = fileURLToPath(new URL("..", import.meta.url));
const BIN = join(APP_DIR, "bin", "l3-agent.js");
const FIXTURES = join(APP_DIR, "test-fixtures");
const WRAP = "neutron-l3-agent";

// Last in, first out: agents go before their namespaces and files.
const cleanups = new Cleanups();
afterEach(() => cleanups.run());

async function netns(): Promise<TestNetns> {
  const ns = await createNetns("cw-l3");
  cleanups.defer(() => ns.delete());
  return ns;
}

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "l3-agent-kernel-"));
  cleanups.defer(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function daemon(args: string[]): AgentProcess {
  const agent = new AgentProcess(BIN, args);
  cleanups.defer(() => agent.kill());
  return agent;
}

/** `iptables-save` of the namespace without its "# Generated/Completed on <time>" comment lines. */
async function save(ns: TestNetns): Promise<string> {
  const r = await ns.exec(["iptables-save"]);
  return r.stdout
    .split("\n")
    .filter((l) => !l.startsWith("#"))
    .join("\n");
}

async function chainRules(ns: TestNetns, chain: string): Promise<string[]> {
  return (await save(ns)).split("\n").filter((l) => l.startsWith(`-A ${WRAP}-${chain} `));
}

interface ChainSet {
  id: string;
  namespace?: string;
  rules: string[];
}

function writeState(path: string, sets: ChainSet[], extra: object = {}): void {
  writeFileSync(path, JSON.stringify({ chain_sets: sets, ...extra }, null, 2));
}

/** A YAML config naming the plugins by package (fixtures by absolute path). */
function writeConfig(dir: string, plugins: { package: string; options?: object }[], extra: string[] = []): string {
  const path = join(dir, "l3-agent.yaml");
  const lines = ["# written by cli.kernel.test.ts", "plugins:"];
  for (const p of plugins) {
    lines.push(`  - package: ${JSON.stringify(p.package)}`);
    if (p.options) lines.push(`    options: ${JSON.stringify(p.options)}`);
  }
  writeFileSync(path, [...lines, ...extra, ""].join("\n"));
  return path;
}

const STATIC_CHAINS = { package: "@chainwarden/example-plugin-static-chains" };

describe.skipIf(!isRoot())("l3-agent on a real kernel", () => {
  it("plan changes nothing, apply --once programs the namespace and is audited, status reports in sync", async () => {
    const ns = await netns();
    const dir = tempDir();
    const audit = join(dir, "audit.jsonl");
    const config = writeConfig(dir, [STATIC_CHAINS, { package: "@chainwarden/example-plugin-audit-log", options: { path: audit } }]);
    const state = join(dir, "state.json");
    writeState(state, [{ id: "web", namespace: ns.name, rules: ["-s 10.0.0.0/8 -j ACCEPT", "-p tcp --dport 22 -j ACCEPT"] }]);
    const args = ["--config", config, "--state", state];

    // plan on an untouched namespace: prints the exact restore input, changes nothing.
    const before = await save(ns);
    const plan = await runCli(BIN, ["plan", ...args]);
    expect(plan.code, plan.stderr).toBe(0);
    expect(await save(ns)).toBe(before);
    expect(plan.stdout).toMatch(new RegExp(`^# namespace ${ns.name}: chain_set/web\n# IPv4: \\d+ lines\n\\*filter\n`));
    expect(plan.stdout).toContain(`-A ${WRAP}-INPUT -j ${WRAP}-cs-web\n`);
    expect(plan.stdout).toContain(`-A ${WRAP}-cs-web -p tcp -m tcp --dport 22 -j ACCEPT\n`);
    expect(plan.stdout).toContain("# IPv6: ");
    // Logs went to stderr: stdout is only the plan (headers are # comments, the rest restore input).
    for (const line of plan.stdout.trimEnd().split("\n")) expect(line).toMatch(/^(#|\*|:|-A |COMMIT$)/);
    expect(existsSync(audit)).toBe(false);

    const pending = await runCli(BIN, ["status", ...args]);
    expect(pending.code).toBe(3);
    expect(pending.stdout).toMatch(new RegExp(`^${ns.name} +yes +chain_set/web +no +[1-9]\\d* +`, "m"));

    const apply = await runCli(BIN, ["apply", "--once", ...args]);
    expect(apply.code, apply.stderr).toBe(0);
    expect(apply.stdout).toContain("applied 1 of 1 namespace\n");
    expect(await chainRules(ns, "INPUT")).toEqual([`-A ${WRAP}-INPUT -j ${WRAP}-cs-web`]);
    expect(await chainRules(ns, "cs-web")).toEqual([`-A ${WRAP}-cs-web -s 10.0.0.0/8 -j ACCEPT`, `-A ${WRAP}-cs-web -p tcp -m tcp --dport 22 -j ACCEPT`]);

    const records = readFileSync(audit, "utf8").trimEnd().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ namespace: ns.name, resources: ["chain_set/web"], full: true, error: null });
    expect(records[0]!.lines_sent).toBeGreaterThan(0);
    expect(records[0]!.families).toContainEqual(expect.objectContaining({ family: 4, sent: true, lines: expect.any(Number) }));

    const status = await runCli(BIN, ["status", ...args]);
    expect(status.code, status.stdout + status.stderr).toBe(0);
    expect(status.stdout.split("\n")[0]).toMatch(/^NAMESPACE +EXISTS +RESOURCES +IN SYNC +PENDING LINES +RULES +CHAINS +NOTE$/);
    expect(status.stdout).toMatch(new RegExp(`^${ns.name} +yes +chain_set/web +yes +0 +[1-9]\\d* +[1-9]\\d*$`, "m"));

    const afterApply = await save(ns);
    const again = await runCli(BIN, ["plan", ...args]);
    expect(again.code).toBe(0);
    expect(again.stdout).toBe(`# namespace ${ns.name}: chain_set/web\n# IPv4: no changes\n# IPv6: no changes\n`);
    expect(await save(ns)).toBe(afterApply);
  });

  it("apply --once exits 1 naming the invalid resource and the failed namespace, and applies the rest", async () => {
    const ns = await netns();
    const dir = tempDir();
    const config = writeConfig(dir, [STATIC_CHAINS]);
    const state = join(dir, "state.json");
    const missing = `cw-l3-missing-${process.pid}`;
    writeState(state, [
      { id: "good", namespace: ns.name, rules: ["-j ACCEPT"] },
      { id: "bad", namespace: ns.name, rules: ["-s 10.0.0.300 -j DROP"] },
      { id: "lost", namespace: missing, rules: ["-j ACCEPT"] },
    ]);
    const r = await runCli(BIN, ["apply", "--once", "--config", config, "--state", state, "--log-level", "error"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`${state.replaceAll(".", "\\.")} chain_sets\\.1\\.rules\\.0 \\(bad\\): .*10\\.0\\.0\\.300`));
    expect(r.stderr).toContain(`apply failed in namespace ${missing}: `);
    expect(r.stdout).toContain("applied 1 of 2 namespaces, 1 failed, 1 invalid input");
    expect(await chainRules(ns, "cs-good")).toEqual([`-A ${WRAP}-cs-good -j ACCEPT`]);
    expect(await save(ns)).not.toContain("cs-bad");
  });

  it("run watches the state file: applies a valid change, keeps the last good state on an invalid file, removes a deleted resource", async () => {
    const ns = await netns();
    const dir = tempDir();
    const config = writeConfig(dir, [STATIC_CHAINS]);
    const state = join(dir, "state.json");
    writeState(state, [{ id: "a", namespace: ns.name, rules: ["-s 10.1.0.0/16 -j ACCEPT"] }]);
    const agent = daemon(["run", "--config", config, "--state", state]);
    await waitFor(async () => (await chainRules(ns, "cs-a")).length === 1, "chain set a programmed", 10_000, () => agent.running);

    // A valid change: a changed, b added.
    writeState(state, [
      { id: "a", namespace: ns.name, rules: ["-s 10.1.0.0/16 -j ACCEPT", "-s 10.2.0.0/16 -j ACCEPT"] },
      { id: "b", namespace: ns.name, rules: ["-j DROP"] },
    ]);
    await waitFor(async () => (await chainRules(ns, "cs-a")).length === 2 && (await chainRules(ns, "cs-b")).length === 1, "change applied", 10_000, () => agent.running);
    const good = await save(ns);

    // An invalid file: reported (which file), the last good state stays.
    writeFileSync(state, '{ "chain_sets": [ { "id": "a", ');
    const reported = await agent.waitForLog((l) => l.level === 40 && l.source === state, "state problem reported");
    expect(reported.msg).toContain("last good state");
    // An invalid resource in a valid file: reported with the resource; its last good version stays.
    writeState(state, [
      { id: "a", namespace: ns.name, rules: ["-s 10.1.0.0/16 -j ACCEPT", "-s 10.2.0.0/16 -j ACCEPT", "-j NOWHERE"] },
      { id: "b", namespace: ns.name, rules: ["-j DROP"] },
    ]);
    const invalid = await agent.waitForLog((l) => l.resource === "a" && l.path === "chain_sets.0.rules.2", "invalid resource reported");
    expect(invalid).toMatchObject({ source: state, keptAs: "last-good" });
    await new Promise((resolve) => setTimeout(resolve, 300)); // longer than the debounce and coalesce windows
    expect(await save(ns)).toBe(good);

    // A resource deleted from the file: its chain and jump go, the other stays.
    writeState(state, [{ id: "b", namespace: ns.name, rules: ["-j DROP"] }]);
    await waitFor(async () => !(await save(ns)).includes(`${WRAP}-cs-a`), "chain set a removed", 10_000, () => agent.running);
    expect(await chainRules(ns, "INPUT")).toEqual([`-A ${WRAP}-INPUT -j ${WRAP}-cs-b`]);
    expect(await chainRules(ns, "cs-b")).toEqual([`-A ${WRAP}-cs-b -j DROP`]);

    agent.signal("SIGTERM");
    const exit = await agent.exited;
    expect(exit.code, agent.describe()).toBe(0);
    // Rules stay in place after the agent stopped.
    expect(await chainRules(ns, "cs-b")).toEqual([`-A ${WRAP}-cs-b -j DROP`]);
  });

  it("run serves Prometheus metrics, /healthz and /readyz on --metrics-address; --log-time iso", async () => {
    const ns = await netns();
    const dir = tempDir();
    const config = writeConfig(dir, [STATIC_CHAINS]);
    const state = join(dir, "state.json");
    writeState(state, [{ id: "m", namespace: ns.name, rules: ["-j ACCEPT"] }]);
    const port = await freePort();
    const agent = daemon(["run", "--config", config, "--state", state, "--metrics-address", `127.0.0.1:${port}`, "--log-time", "iso", "--log-format", "json"]);
    await waitFor(async () => (await chainRules(ns, "cs-m")).length === 1, "chain set programmed", 10_000, () => agent.running);
    const text = await waitFor(
      async () => {
        const response = await fetch(`http://127.0.0.1:${port}/metrics`).catch(() => undefined);
        const body = response?.ok ? await response.text() : "";
        return /^chainwarden_apply_duration_seconds_count\{kind="full"\} [1-9]/m.test(body) ? body : undefined;
      },
      "metrics after the apply",
      10_000,
      () => agent.running,
    );
    expect(text).toMatch(/^chainwarden_restore_calls_total\{family="ipv4"\} [1-9]\d*$/m);
    expect(text).toMatch(/^chainwarden_restore_lines_total\{family="ipv4"\} [1-9]\d*$/m);
    expect(text).toMatch(/^# TYPE chainwarden_apply_duration_seconds histogram$/m);
    expect(text).toMatch(/^chainwarden_apply_duration_seconds_bucket\{le="\+Inf",kind="full"\} [1-9]/m);
    // What runs, and the process.
    expect(text).toMatch(/^chainwarden_build_info\{app="l3-agent",version="\d+\.\d+\.\d+[^"]*",backend="(nft|legacy)",plugins="l3-nat@[^"]*,fwaas-iptables@[^"]*,neutron-l3-rpc@[^"]*,static-chains@[^"]*"\} 1$/m);
    expect(text).toMatch(/^process_resident_memory_bytes \d+/m);
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds /m);

    // Alive, and ready once the first full sync is done and the file was read.
    const live = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(live.status).toBe(200);
    expect(live.headers.get("content-type")).toBe("application/json; charset=utf-8");
    expect(await live.json()).toMatchObject({ ok: true, reasons: [], phase: "running", loop: "running", stuckAfterSeconds: 300 });
    const ready = await waitFor(
      async () => {
        const response = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
        return response?.status === 200 ? ((await response.json()) as Record<string, unknown>) : undefined;
      },
      "ready",
      10_000,
      () => agent.running,
    );
    expect(ready).toEqual({ ok: true, reasons: [], phase: "running", synced: true, stateRead: true, sources: [{ name: "file", delivered: true }] });

    // A state file that no longer parses leaves the agent ready: the last good state stays in force.
    writeFileSync(state, "{ not json");
    await agent.waitForLog((l) => l.level === 40 && l.source === state, "state problem reported");
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);

    // --log-time iso: each line's time is ISO 8601 text in UTC; still JSON lines (pino's fields).
    const lines = agent.logs();
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) expect(line.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(lines[0]).toMatchObject({ name: "l3-agent", level: expect.any(Number) });
    agent.signal("SIGTERM");
    expect((await agent.exited).code, agent.describe()).toBe(0);
  });

  it("run with a state file that never parsed: alive, not ready, and /readyz says why", async () => {
    const dir = tempDir();
    const state = join(dir, "state.json");
    writeFileSync(state, "{ not json");
    const port = await freePort();
    const agent = daemon(["run", "--config", writeConfig(dir, [STATIC_CHAINS]), "--state", state, "--metrics-address", `127.0.0.1:${port}`]);
    await agent.waitForLog((l) => l.msg === "agent started", "agent started");
    const live = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(live.status).toBe(200);
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    expect(ready.status).toBe(503);
    const body = (await ready.json()) as { ok: boolean; reasons: string[] };
    expect(body.ok).toBe(false);
    expect(body.reasons).toEqual(["no desired state was read yet", `state source file: no valid state read from ${state} yet`]);
    // Fixed: ready once what it asks for has run.
    writeState(state, []);
    await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200, "ready after the file is fixed", 10_000, () => agent.running);
    agent.signal("SIGTERM");
    expect((await agent.exited).code, agent.describe()).toBe(0);
  });

  it("SIGTERM during an apply finishes that apply, exits 0 and leaves the rules in place", async () => {
    const ns = await netns();
    const dir = tempDir();
    const marker = join(dir, "apply-started");
    const config = writeConfig(dir, [STATIC_CHAINS, { package: join(FIXTURES, "plugin-slow-apply"), options: { marker, delay_ms: 1500 } }]);
    const state = join(dir, "state.json");
    writeState(state, [{ id: "web", namespace: ns.name, rules: ["-j ACCEPT"] }], { slow_apply: { namespace: ns.name } });
    const agent = daemon(["run", "--config", config, "--state", state]);
    await waitFor(() => existsSync(marker), "the slow apply to start", 10_000, () => agent.running);
    // The namespace's apply is now in flight (the slow handler sleeps inside it); nothing is in the kernel yet.
    expect(await save(ns)).not.toContain(`${WRAP}-cs-web`);
    const signalled = Date.now();
    agent.signal("SIGTERM");
    const exit = await agent.exited;
    expect(exit.code, agent.describe()).toBe(0);
    expect(Date.now() - signalled).toBeGreaterThan(800); // it waited for the apply
    expect(agent.logs().map((l) => l.msg)).toContain("stopping: finishing the apply in flight, rules stay in place");
    expect(await chainRules(ns, "cs-web")).toEqual([`-A ${WRAP}-cs-web -j ACCEPT`]);
    expect(await chainRules(ns, "slow")).toEqual([`-A ${WRAP}-slow -j RETURN`]);
    unlinkSync(marker);
  });

  it("a second signal while stopping exits at once", async () => {
    const ns = await netns();
    const dir = tempDir();
    const marker = join(dir, "apply-started");
    const config = writeConfig(dir, [{ package: join(FIXTURES, "plugin-slow-apply"), options: { marker, delay_ms: 20_000 } }]);
    const state = join(dir, "state.json");
    writeFileSync(state, JSON.stringify({ slow_apply: { namespace: ns.name } }));
    const agent = daemon(["run", "--config", config, "--state", state]);
    await waitFor(() => existsSync(marker), "the slow apply to start", 10_000, () => agent.running);
    agent.signal("SIGTERM");
    await agent.waitForLog((l) => l.msg === "stopping: finishing the apply in flight, rules stay in place", "stopping");
    const signalled = Date.now();
    agent.signal("SIGINT");
    const exit = await agent.exited;
    expect(exit.code, agent.describe()).toBe(130);
    expect(Date.now() - signalled).toBeLessThan(3_000);
    expect(await save(ns)).not.toContain(`${WRAP}-slow`);
  });
});
