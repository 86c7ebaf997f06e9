import { afterEach, describe, expect, it, vi } from "vitest";
import { z } from "zod";
import { runAgentCli, type AgentApp } from "./cli.js";
import { createPlugin } from "./plugin.js";

/** A built-in plugin that owns config keys (its settings) and their flags. */
const builtin = createPlugin({
  name: "builtin",
  version: "0.0.1",
  framework: "*",
  settings: {
    keys: { colour: z.enum(["red", "blue"]).default("red"), size: z.number().int().min(1).optional(), shiny: z.boolean().default(true) },
    flags: [
      { flag: "colour", key: "colour", type: "string", description: "the colour" },
      { flag: "size", key: "size", type: "number", description: "the size" },
      { flag: "shiny", key: "shiny", type: "boolean", description: "a boolean" },
    ],
  },
  register() {},
});

const app: AgentApp = {
  name: "test-agent",
  version: "1.2.3",
  description: "an agent for tests",
  defaults: { wrap_name: "test-agent" },
  plugins: [builtin],
  appDir: process.cwd(),
  notes: ["Notes are printed."],
};

/** Runs the CLI in-process, capturing what it writes. */
async function run(argv: string[]) {
  let stdout = "";
  let stderr = "";
  vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => ((stdout += String(chunk)), true));
  vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => ((stderr += String(chunk)), true));
  const code = await runAgentCli(app, argv);
  vi.restoreAllMocks();
  return { code, stdout, stderr };
}

afterEach(() => vi.restoreAllMocks());

describe("runAgentCli", () => {
  it("prints help with the app's flags, their config keys and defaults, and its plugins", async () => {
    const r = await run(["--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^test-agent 1\.2\.3: an agent for tests\n/);
    expect(r.stdout).toMatch(/--colour COLOUR +the colour\n +\(config key: colour; default: red\)/);
    expect(r.stdout).toMatch(/--size N +the size\n +\(config key: size; default: \(none\)\)/);
    expect(r.stdout).toMatch(/--\[no-\]shiny +a boolean\n +\(config key: shiny; default: true\)/);
    // A framework flag whose default the app sets (its defaults) rather than the schema.
    expect(r.stdout).toMatch(/--wrap-name NAME +the prefix of this agent's chains \(at most 16 characters\)\n +\(config key: wrap_name; default: test-agent\)/);
    // A key without a flag; config-only keys are wrapped across lines: compare with the line breaks folded.
    expect(r.stdout.replace(/\n +/g, " ")).toContain("state_path (default: /var/lib/chainwarden)");
    expect(r.stdout).toContain("built in: builtin 0.0.1");
    expect(r.stdout).toContain("Notes are printed.");
  });

  it("--version", async () => {
    const r = await run(["--version"]);
    expect(r.stdout).toMatch(/^test-agent 1\.2\.3 \(@chainwarden\/agent \d+\.\d+\.\d+, node v/);
  });

  it("usage errors exit 2 with a reason and a hint", async () => {
    expect(await run(["apply"])).toMatchObject({ code: 2, stderr: "test-agent: apply needs --once (the long-running form is `run`)\nRun 'test-agent apply --help' for the commands, flags and config keys.\n" });
    expect((await run(["status", "--shiny=yes"])).stderr).toMatch(/^test-agent: --shiny takes no value\n/);
  });

  it("flags are config keys: converted, validated, every problem listed", async () => {
    const r = await run(["plan", "--colour", "green", "--size", "0", "--backend", "iptables"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("invalid configuration (3 problems)");
    expect(r.stderr).toMatch(/- --colour colour: /);
    expect(r.stderr).toMatch(/- --size size: Too small/);
    expect(r.stderr).toMatch(/- --backend backend: /);
  });
});

describe("exit codes by error code", () => {
  it("one error family: what an operator fixes in the config is 2, anything else 1", async () => {
    const { exitCodeFor } = await import("./cli.js");
    const { AgentError, ConfigError, PluginError } = await import("./agent-errors.js");
    const { ChainwardenError, InvalidNamespaceNameError, RestoreError } = await import("@chainwarden/core");
    expect(exitCodeFor(new ConfigError([{ source: "f", path: "k", message: "m" }]))).toBe(2);
    expect(exitCodeFor(new PluginError("PLUGIN_OPTIONS", "bad"))).toBe(2);
    expect(exitCodeFor(new PluginError("PLUGIN_REGISTER", "threw"))).toBe(1);
    expect(exitCodeFor(new InvalidNamespaceNameError("../x"))).toBe(2);
    expect(exitCodeFor(new RestoreError({ exitCode: 1, stderr: "x", input: "" }))).toBe(1);
    expect(exitCodeFor(new Error("a bug"))).toBe(1);
    // The agent's errors are core's errors.
    expect(new AgentError("AGENT_STATE", "x")).toBeInstanceOf(ChainwardenError);
  });
});
