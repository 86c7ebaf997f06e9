import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { ConfigError, type Problem } from "./agent-errors.js";
import { loadConfig } from "./config-loader.js";
import { extendConfigSchema } from "./config-schema.js";

const dir = mkdtempSync(join(tmpdir(), "chainwarden-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

const schema = extendConfigSchema({
  agent_mode: z.enum(["legacy", "dvr"]).default("legacy"),
  metadata_port: z.number().int().min(1).max(65535).default(9697),
});

function problemsOf(fn: () => unknown): Problem[] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe("CONFIG_INVALID");
    return [...(err as ConfigError).problems];
  }
  throw new Error("expected a ConfigError");
}

describe("loadConfig", () => {
  it("reads YAML and applies the schema's defaults", () => {
    const path = file("agent.yaml", "wrap_name: neutron-l3-agent\nstate: /var/lib/chainwarden/routers.json\nagent_mode: dvr\n");
    const config = loadConfig({ schema, file: path, overrides: {} });
    expect(config).toMatchObject({
      wrap_name: "neutron-l3-agent",
      state: "/var/lib/chainwarden/routers.json",
      agent_mode: "dvr",
      metadata_port: 9697,
      backend: "auto",
      log_level: "info",
      plugins: [],
      plugin_options: {},
    });
  });

  it("reads .json as JSON, and JSON under any other extension with the YAML parser", () => {
    const text = JSON.stringify({ wrap_name: "neutron-l3-agent", resync_interval: 10, plugins: [{ package: "@acme/audit", options: { level: 2 } }] });
    for (const name of ["agent.json", "agent.conf"]) {
      const config = loadConfig({ schema, file: file(name, text), overrides: {} });
      expect(config.resync_interval).toBe(10);
      expect(config.plugins).toEqual([{ package: "@acme/audit", options: { level: 2 } }]);
    }
  });

  it("takes an empty file as no keys", () => {
    expect(loadConfig({ schema, file: file("empty.yaml", ""), overrides: {}, defaults: { wrap_name: "neutron-l3-agent" } }).wrap_name).toBe("neutron-l3-agent");
  });

  it("lets flags win over the file and the file over the app's defaults", () => {
    const path = file("layers.yaml", "wrap_name: from-file\nlog_level: warn\nresync_interval: 10\n");
    const config = loadConfig({
      schema,
      file: path,
      defaults: { wrap_name: "from-defaults", metadata_port: 8775 },
      overrides: { log_level: "debug", resync_interval: undefined },
    });
    expect(config).toMatchObject({ wrap_name: "from-file", log_level: "debug", resync_interval: 10, metadata_port: 8775 });
  });

  it("converts flag strings when the key takes a number, a boolean or JSON", () => {
    const config = loadConfig({
      schema,
      overrides: { wrap_name: "x", resync_interval: "30", use_ipv6: "false", plugin_options: '{"audit":{"level":1}}', state: "42" },
    });
    expect(config).toMatchObject({ resync_interval: 30, use_ipv6: false, plugin_options: { audit: { level: 1 } }, state: "42" });
  });

  it("works without a file", () => {
    expect(loadConfig({ schema, overrides: { wrap_name: "neutron-l3-agent" } }).wrap_name).toBe("neutron-l3-agent");
  });

  it("lists every problem in one error: unknown keys, wrong types and values, bad flags, with file positions", () => {
    const path = file(
      "bad.yaml",
      [
        "wrap_name: neutron-l3-agent-much-too-long", // 1
        "resync_intervall: 30", // 2
        "use_ipv6: maybe", // 3
        "plugins:", // 4
        "  - package: '@acme/audit'", // 5
        "    opts: {}", // 6
        "metadata_port: 70000", // 7
      ].join("\n"),
    );
    const problems = problemsOf(() => loadConfig({ schema, file: path, overrides: { log_level: "loud", coalesce_ms: "-1" } }));
    const byPath = Object.fromEntries(problems.map((p) => [p.path, p]));
    expect(Object.keys(byPath).sort()).toEqual(
      ["coalesce_ms", "log_level", "metadata_port", "plugins.0.opts", "resync_intervall", "use_ipv6", "wrap_name"].sort(),
    );
    expect(byPath.resync_intervall).toEqual({ source: path, path: "resync_intervall", message: "unknown key; did you mean resync_interval? (line 2, column 1)" });
    expect(byPath["plugins.0.opts"]).toMatchObject({ source: path, message: "unknown key (line 6, column 5)" });
    expect(byPath.use_ipv6?.message).toMatch(/expected boolean.*\(line 3, column 1\)/);
    expect(byPath.wrap_name?.message).toMatch(/line 1, column 1/);
    expect(byPath.metadata_port?.message).toMatch(/65535.*line 7/);
    expect(byPath.log_level).toMatchObject({ source: "--log-level" });
    // "-1" was converted to a number, so the problem is the range, not the type.
    expect(byPath.coalesce_ms).toMatchObject({ source: "--coalesce-ms" });
    expect(byPath.coalesce_ms?.message).toMatch(/>=0/);
  });

  it("names the error's problems in its message", () => {
    try {
      loadConfig({ schema, overrides: { wrap_name: "x", backend: "iptables" } });
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message).toMatch(/invalid configuration \(1 problem\):\n {2}- --backend backend: Invalid option/);
    }
  });

  it("reports a missing required key with where to set it", () => {
    expect(problemsOf(() => loadConfig({ schema, overrides: {} }))).toEqual([
      { source: "--wrap-name", path: "wrap_name", message: "required: set wrap_name or pass --wrap-name" },
    ]);
    const path = file("nowrap.yaml", "log_level: debug\n");
    expect(problemsOf(() => loadConfig({ schema, file: path, overrides: {} }))).toEqual([
      { source: path, path: "wrap_name", message: "required: set wrap_name in the config file or pass --wrap-name" },
    ]);
  });

  it("attributes a bad default to the defaults", () => {
    expect(problemsOf(() => loadConfig({ schema, overrides: {}, defaults: { wrap_name: "x", agent_mode: "dvr_snat" } }))).toEqual([
      expect.objectContaining({ source: "defaults", path: "agent_mode" }),
    ]);
  });

  it("reports a missing file, and the flags' own problems with it", () => {
    const path = join(dir, "nope.yaml");
    const problems = problemsOf(() => loadConfig({ schema, file: path, overrides: { log_level: "loud" } }));
    expect(problems).toEqual([
      { source: path, path: "", message: "file not found" },
      expect.objectContaining({ source: "--log-level", path: "log_level" }),
    ]);
  });

  it("reports YAML syntax errors with line and column", () => {
    const path = file("syntax.yaml", "wrap_name: a\nplugins: [\n  { package: x\nlog_level: info\n");
    const problems = problemsOf(() => loadConfig({ schema, file: path, overrides: {} }));
    expect(problems.length).toBeGreaterThan(0);
    for (const p of problems) expect(p).toMatchObject({ source: path, path: "", message: expect.stringMatching(/^invalid YAML: .*\(line \d+, column \d+\)$/s) });
  });

  it("reports duplicate YAML keys", () => {
    const path = file("dup.yaml", "wrap_name: a\nwrap_name: b\n");
    expect(problemsOf(() => loadConfig({ schema, file: path, overrides: {} }))[0]?.message).toMatch(/unique.*line 2, column 1/);
  });

  it("reports JSON syntax errors with line and column", () => {
    const path = file("syntax.json", '{\n  "wrap_name": "a",\n  "log_level": info\n}\n');
    expect(problemsOf(() => loadConfig({ schema, file: path, overrides: {} }))).toEqual([
      { source: path, path: "", message: expect.stringMatching(/^invalid JSON: .*\(line 3, column 16\)$/) },
    ]);
  });

  it("requires a mapping at the top level", () => {
    const path = file("list.yaml", "- wrap_name: a\n");
    expect(problemsOf(() => loadConfig({ schema, file: path, overrides: {} }))).toEqual([
      { source: path, path: "", message: "expected a mapping of config keys at the top level, got a list" },
    ]);
  });

  it("locates problems in JSON files too", () => {
    const path = file("pos.json", '{\n  "wrap_name": "a",\n  "use_ipv6": "yes"\n}\n');
    expect(problemsOf(() => loadConfig({ schema, file: path, overrides: {} }))[0]?.message).toMatch(/line 3, column 3/);
  });
});
