/**
 * The release as a deployer gets it: built from the current tree (`buildRelease`, what `npm run
 * release` runs), each agent's tarball unpacked and installed with its own install.sh into a scratch
 * prefix under /tmp (nothing of the work tree is on the installed agents' module paths), then run from
 * there: `--help`, a plugin installed next to the l3-agent from its packed tarball, `apply --once` in
 * a throwaway network namespace (unique name, deleted in teardown also on failure), the shipped
 * example configs, the units checked by `systemd-analyze verify` and their capability set tried.
 */
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Cleanups, createNetns, isRoot, type TestNetns } from "@chainwarden/testing";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { APPS, buildRelease, cleanNpmEnv, REPO_ROOT, type Release } from "./release.js";

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

// The installed agents see none of the test's module settings.
const ENV: NodeJS.ProcessEnv = { ...cleanNpmEnv(), FORCE_COLOR: "0", NO_COLOR: "1" };
delete ENV.NODE_PATH;
delete ENV.NODE_OPTIONS;

/** A program with an argument array (no shell); resolves with its exit code, never rejects on one. */
function exec(file: string, args: readonly string[], options: { cwd?: string; timeoutMs?: number } = {}): Promise<Result> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd: options.cwd, env: ENV, timeout: options.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

const WRAP = "neutron-l3-agent";
const STATIC_CHAINS = "@chainwarden/example-plugin-static-chains";

let scratch: string;
let release: Release;
let prefix: string;
let etc: string;
let units: string;
const bin = (app: string) => join(prefix, "bin", app);

// Last in, first out: agents go before their namespaces and files.
const cleanups = new Cleanups();
afterEach(() => cleanups.run());

async function netns(): Promise<TestNetns> {
  const ns = await createNetns("cw-rel");
  cleanups.defer(() => ns.delete());
  return ns;
}

function write(name: string, text: string): string {
  const path = join(scratch, name);
  writeFileSync(path, text);
  return path;
}

/** The namespace's IPv4 rules of one wrapped chain (`iptables-legacy-save` for the legacy tables). */
async function chainRules(ns: TestNetns, chain: string, save = "iptables-save"): Promise<string[]> {
  const r = await ns.exec([save]);
  return r.stdout.split("\n").filter((l) => l.startsWith(`-A ${WRAP}-${chain} `));
}

describe.skipIf(!isRoot())("the release, installed from its tarballs into a scratch prefix", () => {
  beforeAll(async () => {
    scratch = mkdtempSync(join(tmpdir(), "cw-release-test-"));
    prefix = join(scratch, "prefix");
    etc = join(scratch, "etc");
    units = join(scratch, "units");
    release = await buildRelease({ outDir: join(scratch, "out") });
    for (const artifact of release.apps) {
      const unpack = join(scratch, "unpack", artifact.app);
      mkdirSync(unpack, { recursive: true });
      const untar = await exec("tar", ["-xzf", artifact.tarball, "-C", unpack]);
      expect(untar.code, untar.stderr).toBe(0);
      const installer = join(unpack, `chainwarden-${artifact.app}-${release.version}`, "install.sh");
      const installed = await exec(installer, ["--prefix", prefix, "--sysconfdir", etc, "--unitdir", units, "--node", process.execPath]);
      expect(installed.code, installed.stderr + installed.stdout).toBe(0);
      expect(installed.stdout).toContain(`installed chainwarden-${artifact.app} ${release.version}`);
    }
    // A plugin, as an operator adds one: its packed tarball installed next to the l3-agent with npm,
    // offline: everything it needs is installed with the agent already.
    const plugin = release.plugins.find((p) => p.includes("example-plugin-static-chains"))!;
    const npm = await exec("npm", ["install", "--prefix", join(prefix, "lib", "chainwarden", "l3-agent"), "--offline", "--no-audit", "--no-fund", plugin], { timeoutMs: 120_000 });
    expect(npm.code, npm.stderr + npm.stdout).toBe(0);
  });

  afterAll(() => {
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  it("packs every package with its LICENSE, its entry points and real ranges between our packages, and no tests", async () => {
    const license = readFileSync(join(REPO_ROOT, "LICENSE"), "utf8");
    expect(license).toContain("Apache License\n                           Version 2.0, January 2004");
    expect(release.packages.size).toBeGreaterThanOrEqual(13);
    for (const [name, tarball] of release.packages) {
      const list = await exec("tar", ["-tzf", tarball]);
      const files = list.stdout.split("\n").filter(Boolean);
      expect(files, name).toContain("package/LICENSE");
      // Built output only: create-plugin's template/ ships the tests of the plugin it writes, on purpose.
      expect(files.filter((f) => f.startsWith("package/dist/") && /\.test\.|\/test-support\/|\.fixtures\./.test(f)), name).toEqual([]);
      const manifest = JSON.parse((await exec("tar", ["-xzOf", tarball, "package/package.json"])).stdout) as {
        license: string;
        engines: { node: string };
        exports: Record<string, { import: string }>;
        dependencies?: Record<string, string>;
        peerDependencies?: Record<string, string>;
      };
      expect(manifest.license, name).toBe("Apache-2.0");
      expect(manifest.engines.node, name).toBe("^20.19.0 || ^22.12.0 || ^24.0.0");
      for (const range of Object.values({ ...manifest.dependencies, ...manifest.peerDependencies })) expect(range, name).not.toBe("*");
      for (const entry of Object.values(manifest.exports).filter((e) => typeof e === "object")) {
        expect(files, `${name} exports ${entry.import}`).toContain(`package/${entry.import.replace(/^\.\//, "")}`);
      }
      // The tarball's LICENSE is the repository's.
      expect((await exec("tar", ["-xzOf", tarball, "package/LICENSE"])).stdout, name).toBe(license);
    }
  });

  it("puts l3-agent and l2-agent on the prefix's PATH, running from the install", async () => {
    for (const app of APPS) {
      const help = await exec(bin(app), ["--help"]);
      expect(help.code, help.stderr).toBe(0);
      expect(help.stdout).toContain("apply --once");
      const version = await exec(bin(app), ["--version"]);
      expect(version.stdout).toMatch(new RegExp(`^${app} ${release.version} .*node ${process.version}\\)\\n$`));
    }
    // The agent's files are the installed ones, not the work tree's.
    expect(readFileSync(bin("l3-agent"), "utf8")).toContain(`exec ${process.execPath} ${prefix}/lib/chainwarden/l3-agent/node_modules/@chainwarden/l3-agent/bin/l3-agent.js "$@"`);
  });

  it("finds a plugin installed next to the l3-agent from its tarball, and apply --once programs a throwaway namespace", async () => {
    const ns = await netns();
    const state = write("state.json", JSON.stringify({ chain_sets: [{ id: "web", namespace: ns.name, rules: ["-s 10.0.0.0/8 -j ACCEPT", "-p tcp --dport 22 -j ACCEPT"] }] }));
    const config = write("l3-agent.yaml", `plugins:\n  - package: "${STATIC_CHAINS}"\n`);
    const apply = await exec(bin("l3-agent"), ["apply", "--once", "--config", config, "--state", state, "--namespace-prefix", `${ns.name}-r-`]);
    expect(apply.code, apply.stderr + apply.stdout).toBe(0);
    expect(apply.stdout).toContain("applied 1 of 1 namespace\n");
    expect(await chainRules(ns, "INPUT")).toEqual([`-A ${WRAP}-INPUT -j ${WRAP}-cs-web`]);
    expect(await chainRules(ns, "cs-web")).toEqual([`-A ${WRAP}-cs-web -s 10.0.0.0/8 -j ACCEPT`, `-A ${WRAP}-cs-web -p tcp -m tcp --dport 22 -j ACCEPT`]);
  });

  it("a plugin made by the released create-plugin builds and passes its tests on the released packages; packed, both installed agents load it as its README says and program a throwaway namespace", async () => {
    // As a plugin author without a registry: `npm create` is `npm exec` of the create-plugin package.
    const gen = join(scratch, "gen");
    mkdirSync(gen);
    const dir = join(gen, "chainwarden-plugin-allow-list");
    const created = await exec("npm", ["exec", "--yes", "--offline", "--package", release.packages.get("@chainwarden/create-plugin")!, "--", "create-plugin", dir], { cwd: gen, timeoutMs: 120_000 });
    expect(created.code, created.stderr + created.stdout).toBe(0);
    // Its README's way without a registry: our packages from the release's tarballs.
    const ours = ["core", "oslo-config", "agent", "testing", "plugin-harness"].map((p) => release.packages.get(`@chainwarden/${p}`)!);
    const npm = (args: string[], timeoutMs = 300_000) => exec("npm", ["--no-audit", "--no-fund", ...args], { cwd: dir, timeoutMs });
    const installed = await npm(["install", "--prefer-offline", "--save-dev", ...ours]);
    expect(installed.code, installed.stderr + installed.stdout).toBe(0);
    for (const script of ["typecheck", "build"]) {
      const r = await npm(["run", script]);
      expect(r.code, `${script}: ${r.stderr}${r.stdout}`).toBe(0);
    }
    const tested = await npm(["test", "--", "--reporter=verbose"]);
    expect(tested.code, tested.stderr + tested.stdout).toBe(0);
    expect(tested.stdout).toMatch(/allow-list on the fake host/);
    expect(tested.stdout).toMatch(/allow-list on the kernel/);
    expect(tested.stdout).not.toMatch(/\bfailed\b|\bskipped\b/);
    const packed = await npm(["pack", "--silent"]);
    expect(packed.code, packed.stderr).toBe(0);
    const tarball = join(dir, packed.stdout.trim().split("\n").pop()!);

    // What its README gives: the state example and the config that loads it.
    const readme = readFileSync(join(dir, "README.md"), "utf8");
    const yaml = [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);
    const stateExample = yaml.find((b) => b.startsWith("allow_lists:"));
    const config = write("plugin.yaml", yaml.find((b) => b.startsWith("plugins:"))!);
    expect(stateExample, readme).toBeDefined();
    for (const [app, wrap, scope] of [
      ["l3-agent", "neutron-l3-agent", (ns: string) => ["--namespace-prefix", `${ns}-r-`]],
      ["l2-agent", "neutron-linuxbri", (ns: string) => ["--netns", ns]],
    ] as const) {
      const agentDir = join(prefix, "lib", "chainwarden", app);
      const add = await exec("npm", ["install", "--prefix", agentDir, "--offline", "--no-audit", "--no-fund", tarball], { timeoutMs: 120_000 });
      expect(add.code, add.stderr + add.stdout).toBe(0);
      const ns = await netns();
      const state = write(`${app}-allow.yaml`, stateExample!.replace("namespace: lab", `namespace: ${ns.name}`));
      const apply = await exec(bin(app), ["apply", "--once", "--config", config, "--state", state, ...scope(ns.name)]);
      expect(apply.code, `${app}: ${apply.stderr}${apply.stdout}`).toBe(0);
      const save = (await ns.exec(["iptables-save", "-t", "filter"])).stdout.split("\n");
      const jump = save.find((l) => l.startsWith(`-A ${wrap}-INPUT -j ${wrap}-`));
      expect(jump, `${app}:\n${save.join("\n")}`).toBeDefined();
      const chain = jump!.split(" -j ")[1]!;
      expect(save.filter((l) => l.startsWith(`-A ${chain} `)), app).toEqual([`-A ${chain} -s 10.0.0.1/32 -j ACCEPT`, `-A ${chain} -s 192.168.0.0/16 -j ACCEPT`]);
    }
  }, 600_000);

  it("ships example configs under the sysconfdir that the installed agents accept", async () => {
    const ns = await netns();
    const l3 = await exec(bin("l3-agent"), ["plan", "--config", join(etc, "chainwarden", "l3-agent.yaml"), "--state", write("routers.json", '{"routers": []}'), "--namespace-prefix", `${ns.name}-r-`]);
    expect(l3.code, l3.stderr).toBe(0);
    const l2 = await exec(bin("l2-agent"), ["plan", "--config", join(etc, "chainwarden", "l2-agent.yaml"), "--state", write("ports.json", '{"devices": {}}'), "--netns", ns.name]);
    expect(l2.code, l2.stderr).toBe(0);
  });

  it("installs units that systemd-analyze verify accepts, pointing at the installed binaries and configs", async () => {
    for (const app of APPS) {
      const unit = join(units, `chainwarden-${app}.service`);
      const text = readFileSync(unit, "utf8");
      expect(text).toContain(`\nExecStart=${prefix}/bin/${app} run --config ${etc}/chainwarden/${app}.yaml\n`);
      expect(text).toContain("\nRestart=on-failure\n");
      expect(text).toContain("\nCapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_SYS_ADMIN\n");
      expect(text).not.toMatch(/@\w+@|^ExecReload=/m);
      const verify = await exec("systemd-analyze", ["verify", "--man=no", unit]);
      expect(verify.code, verify.stderr).toBe(0);
      expect(verify.stderr.split("\n").filter((l) => l.includes(`chainwarden-${app}`))).toEqual([]);
    }
  });

  it("needs no capability beyond the unit's bounding set (nft and legacy)", async () => {
    const unit = readFileSync(join(units, "chainwarden-l3-agent.service"), "utf8");
    const caps = /^CapabilityBoundingSet=(.*)$/m.exec(unit)![1]!.split(" ").map((c) => `+${c.replace(/^CAP_/, "").toLowerCase()}`);
    const config = write("l3-caps.yaml", `plugins:\n  - package: "${STATIC_CHAINS}"\n`);
    for (const backend of ["nft", "legacy"]) {
      const ns = await netns();
      const state = write(`caps-${backend}.json`, JSON.stringify({ chain_sets: [{ id: "caps", namespace: ns.name, rules: ["-j ACCEPT"] }] }));
      // As systemd starts the service: root with only the bounding set's capabilities, no new privileges.
      const apply = await exec("setpriv", ["--bounding-set", ["-all", ...caps].join(","), "--no-new-privs", "--", bin("l3-agent"), "apply", "--once", "--backend", backend, "--config", config, "--state", state, "--namespace-prefix", `${ns.name}-r-`]);
      expect(apply.code, apply.stderr + apply.stdout).toBe(0);
      // Read with the backend's own save: the rules are in legacy tables only if the agent drove iptables-legacy.
      expect(await chainRules(ns, "cs-caps", backend === "legacy" ? "iptables-legacy-save" : "iptables-save")).toEqual([`-A ${WRAP}-cs-caps -j ACCEPT`]);
    }
  });
});
