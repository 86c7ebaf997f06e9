/**
 * The l3-agent binary without the kernel: help, version, usage errors, configuration errors, and
 * plugins named in a config file (none of these cases reaches iptables).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { runCli } from "@chainwarden/testing";

const APP_DIR = fileURLToPath(new URL("..", import.meta.url));
const BIN = join(APP_DIR, "bin", "l3-agent.js");
const FIXTURES = join(APP_DIR, "test-fixtures");
const version = (await import("../package.json", { with: { type: "json" } })).default.version;

const tmp = mkdtempSync(join(tmpdir(), "l3-agent-cli-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let files = 0;
function file(name: string, text: string): string {
  const path = join(tmp, `${++files}-${name}`);
  writeFileSync(path, text);
  return path;
}

describe.concurrent("l3-agent: help and version", () => {
  it("--help lists every command and flag with its config key and default, and examples", async () => {
    const r = await runCli(BIN, ["--help"]);
    expect(r.code).toBe(0);
    for (const command of ["run", "apply --once", "plan", "status"]) expect(r.stdout).toMatch(new RegExp(`^  ${command} `, "m"));
    for (const flag of ["--config FILE", "--state PATH", "--backend nft|legacy|auto", "--log-level LEVEL", "--metrics-address HOST:PORT", "--namespace-prefix", "--wrap-name", "--metadata-port N", "--[no-]enable-metadata-proxy", "--version"]) {
      expect(r.stdout).toContain(flag);
    }
    expect(r.stdout).toContain("config key: namespace_prefix; default: qrouter-");
    expect(r.stdout).toContain("config key: wrap_name; default: neutron-l3-agent");
    expect(r.stdout).toContain("config key: metadata_port; default: 9697");
    expect(r.stdout).toContain("config key: enable_metadata_proxy; default: true");
    expect(r.stdout).toContain("config key: backend; default: auto");
    expect(r.stdout).toMatch(/built in: l3-nat \S+, fwaas-iptables \S+/);
    expect(r.stdout).toMatch(/Examples:\n  l3-agent run /);
    expect(r.stderr).toBe("");
  });

  it("each command has its own --help (also as `help <command>`)", async () => {
    const [plan, status] = await Promise.all([runCli(BIN, ["plan", "--help"]), runCli(BIN, ["help", "status"])]);
    expect(plan.code).toBe(0);
    expect(plan.stdout).toMatch(/^l3-agent plan: print per namespace the exact iptables-restore input/);
    expect(plan.stdout).toContain("--namespace-prefix");
    expect(plan.stdout).toContain("l3-agent plan --state state.yaml");
    expect(status.code).toBe(0);
    expect(status.stdout).toContain("Exit code 0 when every namespace is in sync, 3 otherwise");
  });

  it("--version prints the app's version", async () => {
    const r = await runCli(BIN, ["--version"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^l3-agent ${version.replaceAll(".", "\\.")} \\(@chainwarden/agent \\d+\\.\\d+\\.\\d+, node v\\d+`));
  });
});

describe.concurrent("l3-agent: usage errors exit 2 with one reason and a hint", () => {
  it.each([
    [[], "missing command"],
    [["apply"], "apply needs --once"],
    [["plan", "--once"], "--once belongs to apply, not plan"],
    [["plan", "--bogus"], "unknown flag --bogus"],
    [["plna"], 'unknown command "plna"'],
    [["plan", "--state"], "--state needs a value"],
    [["status", "extra"], 'unexpected argument "extra"'],
  ])("%j", async (args, reason) => {
    const r = await runCli(BIN, args);
    expect(r.code).toBe(2);
    const lines = r.stderr.trimEnd().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toContain(reason);
    expect(lines[1]).toMatch(/^Run 'l3-agent( \w+)? --help'/);
    expect(r.stdout).toBe("");
  });
});

describe.concurrent("l3-agent: configuration", () => {
  it("an invalid config exits non-zero listing every problem, from the file and from the flags", async () => {
    const config = file(
      "agent.yaml",
      ["backend: iptables", "metadata_port: 70000", "resync_interval: -1", "wrap_name: this-name-is-far-too-long", "enable_metadta_proxy: false", ""].join("\n"),
    );
    const r = await runCli(BIN, ["plan", "--config", config, "--namespace-prefix=-bad", "--log-level", "loud"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("invalid configuration (7 problems)");
    const problem = (source: string, path: string) => new RegExp(`^  - ${source.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} ${path}\\b.*$`, "m");
    expect(r.stderr).toMatch(problem(config, "backend"));
    expect(r.stderr).toMatch(problem(config, "metadata_port"));
    expect(r.stderr).toMatch(problem(config, "resync_interval"));
    expect(r.stderr).toMatch(problem(config, "wrap_name"));
    expect(r.stderr).toMatch(/enable_metadta_proxy.*unknown key; did you mean enable_metadata_proxy\?/);
    expect(r.stderr).toMatch(problem("--namespace-prefix", "namespace_prefix"));
    expect(r.stderr).toMatch(problem("--log-level", "log_level"));
    expect(r.stdout).toBe("");
  });

  it("a config file that does not parse is reported with its line", async () => {
    const config = file("broken.json", '{ "backend": "nft", }');
    const r = await runCli(BIN, ["status", "--config", config]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/invalid JSON: .*\(line 1, column \d+\)/);
  });
});

describe.concurrent("l3-agent: plugins from the config file", () => {
  const plugins = (entries: object[], extra: object = {}) => file("agent.json", JSON.stringify({ plugins: entries, ...extra }));
  const staticChains = { package: "@chainwarden/example-plugin-static-chains" };
  const auditLog = { package: "@chainwarden/example-plugin-audit-log", options: { path: join(tmp, "audit.jsonl") } };

  it("loads the example plugins by package name", async () => {
    // No state: nothing to plan, so nothing touches the kernel; plan says so and fails.
    const r = await runCli(BIN, ["plan", "--config", plugins([staticChains, auditLog])]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("# no desired state was read: nothing would be changed\n");
    expect(r.stderr).toContain('"plugin":"audit-log"');
  });

  it("two plugins with one name fail, naming the plugin and both packages", async () => {
    const duplicate = join(FIXTURES, "plugin-duplicate");
    const r = await runCli(BIN, ["plan", "--config", plugins([staticChains, { package: duplicate }])]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`two plugins are named static-chains: one from @chainwarden/example-plugin-static-chains, one from ${duplicate}`);
  });

  it("a plugin built for another framework major fails, naming it", async () => {
    const r = await runCli(BIN, ["plan", "--config", plugins([{ package: join(FIXTURES, "plugin-incompatible") }])]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/plugin incompatible 1\.0\.0 \(.*plugin-incompatible\) needs @chainwarden\/agent \^9\.0\.0, but this is \d+\.\d+\.\d+/);
    expect(r.stderr).not.toContain("register must never run");
  });

  it("bad options fail, naming the plugin and every problem", async () => {
    const r = await runCli(BIN, ["plan", "--config", plugins([{ ...auditLog, options: { path: 42, rotate: true } }])]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("invalid options for plugin audit-log (@chainwarden/example-plugin-audit-log)");
    expect(r.stderr).toMatch(/- path: /);
    expect(r.stderr).toMatch(/rotate/);
  });

  it("options for a plugin that takes none fail too", async () => {
    const r = await runCli(BIN, ["plan", "--config", plugins([{ ...staticChains, options: { colour: "red" } }])]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/invalid options for plugin static-chains .*\n.*colour/);
  });

  it("plugin_options naming no installed plugin fail", async () => {
    const r = await runCli(BIN, ["plan", "--config", plugins([staticChains], { plugin_options: { "no-such": { x: 1 } } })]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("plugin_options.no-such names no installed plugin (installed: l3-nat, fwaas-iptables, neutron-l3-rpc, static-chains)");
  });

  it("unknown options of a built-in plugin fail, naming it and the key", async () => {
    const r = await runCli(BIN, ["plan", "--config", plugins([staticChains], { plugin_options: { "l3-nat": { x: 1 } } })]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("l3-nat");
    expect(r.stderr).toContain("x");
  });

  it("a package that is not installed fails, naming it", async () => {
    const r = await runCli(BIN, ["plan", "--config", plugins([{ package: "@chainwarden/no-such-plugin" }])]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("cannot load plugin package @chainwarden/no-such-plugin: not found");
  });
});
