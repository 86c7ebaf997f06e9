import { PluginHarness } from "@chainwarden/plugin-harness";
import { describe, expect, it } from "vitest";
import { {{PLUGIN_VAR}} } from "./plugin.js";

// On the honest fake of iptables (no root needed): the agent's real loop, managers and applier.
describe("{{PLUGIN_NAME}} on the fake host", () => {
  it("programs a chain per resource, changes and removes it", async () => {
    await using h = await PluginHarness.start({ plugins: [{{PLUGIN_VAR}}], namespaces: ["ns1"] });
    const ns = h.namespace("ns1");
    const first = await h.apply({ {{STATE_KEY}}: [{ id: "web", namespace: ns, sources: ["10.0.0.1", "192.168.0.0/16"] }] });
    expect(first.errors).toEqual([]);
    expect(await h.rules("ns1")).toEqual(
      expect.arrayContaining([
        "-A test-agent-INPUT -j test-agent-{{CHAIN_PREFIX}}-web",
        "-A test-agent-{{CHAIN_PREFIX}}-web -s 10.0.0.1/32 -j ACCEPT",
        "-A test-agent-{{CHAIN_PREFIX}}-web -s 192.168.0.0/16 -j ACCEPT",
      ]),
    );

    await h.apply({ {{STATE_KEY}}: [{ id: "web", namespace: ns, sources: ["10.0.0.2"] }] });
    const changed = await h.rules("ns1");
    expect(changed).toContain("-A test-agent-{{CHAIN_PREFIX}}-web -s 10.0.0.2/32 -j ACCEPT");
    expect(changed).not.toContain("-A test-agent-{{CHAIN_PREFIX}}-web -s 10.0.0.1/32 -j ACCEPT");

    await h.apply({ {{STATE_KEY}}: [] });
    expect((await h.rules("ns1")).some((l) => l.includes("{{CHAIN_PREFIX}}-web"))).toBe(false);
  });

  it("bad input never reaches the kernel and removes nothing: the resource keeps its last good rules", async () => {
    await using h = await PluginHarness.start({ plugins: [{{PLUGIN_VAR}}], namespaces: ["ns1"] });
    const ns = h.namespace("ns1");
    await h.apply({ {{STATE_KEY}}: [{ id: "web", namespace: ns, sources: ["10.0.0.1"] }] });
    await h.apply({ {{STATE_KEY}}: [{ id: "web", namespace: ns, sources: ["10.0.0.1 -j ACCEPT; iptables -F"] }] });
    expect(await h.rules("ns1")).toContain("-A test-agent-{{CHAIN_PREFIX}}-web -s 10.0.0.1/32 -j ACCEPT");
  });

  it("after a restart too: a bad resource keeps the kernel's chain, and input that is incomplete removes nothing", async () => {
    await using h = await PluginHarness.start({ plugins: [{{PLUGIN_VAR}}], namespaces: ["ns1"] });
    const ns = h.namespace("ns1");
    const web = { id: "web", namespace: ns, sources: ["10.0.0.1"] };
    const db = { id: "db", namespace: ns, sources: ["10.0.0.2"] };
    const kept = (id: string, source: string) => [`-A test-agent-INPUT -j test-agent-{{CHAIN_PREFIX}}-${id}`, `-A test-agent-{{CHAIN_PREFIX}}-${id} -s ${source}/32 -j ACCEPT`];
    await h.apply({ {{STATE_KEY}}: [web, db] });

    // The new process has no last good version of "web": its stand-in keeps the kernel's chain.
    expect((await h.restart({ {{STATE_KEY}}: [{ ...web, sources: ["not an address"] }, db] })).errors).toEqual([]);
    expect(await h.rules("ns1")).toEqual(expect.arrayContaining([...kept("web", "10.0.0.1"), ...kept("db", "10.0.0.2")]));

    // "db" is not in this state, but an entry whose id cannot be read makes it incomplete: kept.
    expect((await h.restart({ {{STATE_KEY}}: [web, { id: "-j ACCEPT", namespace: ns, sources: [] }] })).errors).toEqual([]);
    expect(await h.rules("ns1")).toEqual(expect.arrayContaining(kept("db", "10.0.0.2")));

    // A complete state without "db" removes it.
    await h.apply({ {{STATE_KEY}}: [web] });
    expect((await h.rules("ns1")).some((l) => l.includes("{{CHAIN_PREFIX}}-db"))).toBe(false);
  });
});
