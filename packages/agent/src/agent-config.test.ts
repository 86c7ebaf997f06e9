import { describe, expect, it } from "vitest";
import { z } from "zod";
import { composeAgentConfig } from "./agent-config.js";
import { PluginError } from "./agent-errors.js";
import { createPlugin } from "./plugin.js";

const plugin = (name: string, keys: z.ZodRawShape, flags: { flag: string; key: string }[] = []) =>
  createPlugin({
    name,
    version: "1.0.0",
    framework: "*",
    settings: { keys, flags: flags.map((f) => ({ ...f, type: "string" as const, description: f.key })) },
    register() {},
  });

describe("composeAgentConfig", () => {
  it("is the framework's keys and flags plus each plugin's, strict", () => {
    const { schema, flags, owners } = composeAgentConfig([plugin("routers", { namespace_prefix: z.string().default("qrouter-") }, [{ flag: "namespace-prefix", key: "namespace_prefix" }])]);
    expect(owners.get("namespace_prefix")).toBe("routers");
    expect(owners.get("wrap_name")).toBe("the framework");
    expect(flags.map((f) => f.flag)).toEqual(["state", "backend", "log-level", "log-format", "log-time", "metrics-address", "netns", "wrap-name", "namespace-prefix"]);
    expect(schema.parse({ wrap_name: "w" })).toMatchObject({ wrap_name: "w", namespace_prefix: "qrouter-" });
    expect(schema.safeParse({ wrap_name: "w", namespace_prefx: "x" }).success).toBe(false);
  });

  it("refuses a key or a flag declared twice, naming both declarers", () => {
    const a = plugin("first", { shared_key: z.string() });
    const b = plugin("second", { shared_key: z.string() });
    expect(() => composeAgentConfig([a, b])).toThrow(new PluginError("PLUGIN_INVALID", "config key shared_key is declared by plugin first and by plugin second", "second"));
    expect(() => composeAgentConfig([plugin("greedy", { wrap_name: z.string() })])).toThrow("config key wrap_name is declared by the framework and by plugin greedy");
    const f1 = plugin("one", { k1: z.string() }, [{ flag: "same", key: "k1" }]);
    const f2 = plugin("two", { k2: z.string() }, [{ flag: "same", key: "k2" }]);
    expect(() => composeAgentConfig([f1, f2])).toThrow("flag --same is declared by plugin one and by plugin two");
    expect(() => composeAgentConfig([plugin("stray", { k3: z.string() }, [{ flag: "x", key: "wrap_name" }])])).toThrow(
      "plugin stray declares flag --x for config key wrap_name, which is not one of its settings",
    );
  });
});
