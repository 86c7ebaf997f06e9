import { PluginHarness } from "@chainwarden/plugin-harness";
import { isRoot } from "@chainwarden/testing";
import { describe, expect, it } from "vitest";
import { {{PLUGIN_VAR}} } from "./plugin.js";

// On the real kernel, in a network namespace the harness creates and deletes (run as root).
describe.skipIf(!isRoot())("{{PLUGIN_NAME}} on the kernel", () => {
  it("the real iptables-restore takes the plugin's rules", async () => {
    await using h = await PluginHarness.start({ plugins: [{{PLUGIN_VAR}}], host: "kernel", namespaces: ["lab"] });
    const { errors } = await h.apply({ {{STATE_KEY}}: [{ id: "web", namespace: h.namespace("lab"), sources: ["10.0.0.1"] }] });
    expect(errors).toEqual([]);
    expect(await h.rules("lab")).toContain("-A test-agent-{{CHAIN_PREFIX}}-web -s 10.0.0.1/32 -j ACCEPT");
  });
});
