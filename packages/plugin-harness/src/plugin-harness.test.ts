import { createPlugin, resourceHandlerExtensionPoint, type Problem, type ReconcileContext, type ReconcileRequest, type ResourceHandler, type StateDocument } from "@chainwarden/agent";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { PluginHarness } from "./plugin-harness.js";

/** A small plugin: each `allow` resource is one wrapped chain accepting a source, jumped to from INPUT. */
interface Allow {
  id: string;
  namespace: string;
  source: string;
}
const allowSchema = z.strictObject({ id: z.string().regex(/^[a-z0-9]{1,8}$/), namespace: z.string(), source: z.ipv4() });

class AllowHandler implements ResourceHandler<Allow> {
  readonly kind = "allow";
  readonly documentKeys = ["allows"];
  parse(document: StateDocument, origin: string) {
    const resources = new Map<string, Allow>();
    const problems: Problem[] = [];
    ((document.allows as unknown[] | undefined) ?? []).forEach((raw, i) => {
      const r = allowSchema.safeParse(raw);
      if (r.success) resources.set(r.data.id, r.data);
      else problems.push({ source: origin, path: `allows.${i}`, resource: String((raw as { id?: unknown }).id), message: r.error.message });
    });
    return { resources, problems };
  }
  namespaceOf(a: Allow) {
    return a.namespace;
  }
  async reconcile(context: ReconcileContext, request: ReconcileRequest<Allow>) {
    const filter = context.manager().table(4, "filter");
    for (const id of request.full ? [...request.desired.keys()] : [...request.changed, ...request.removed.keys()]) {
      filter.removeChain(`allow-${id}`);
      const a = request.desired.get(id);
      if (!a || request.held.has(id)) continue;
      filter.addChain(`allow-${id}`, { resource: `allow/${id}` });
      filter.addRule(`allow-${id}`, `-s ${a.source}/32 -j ACCEPT`, { resource: `allow/${id}` });
      filter.addRule("INPUT", `-j $allow-${id}`, { resource: `allow/${id}` });
    }
  }
}

const allowPlugin = createPlugin({
  name: "allow",
  version: "0.1.0",
  framework: "^0.1.0",
  register(env) {
    env.addExtension(resourceHandlerExtensionPoint, new AllowHandler());
  },
});

describe("PluginHarness on the fake host", () => {
  it("runs a plugin's handler through the agent: applies, changes, removes; bad input is a problem of its resource", async () => {
    await using h = await PluginHarness.start({ plugins: [allowPlugin], namespaces: ["ns1"] });
    const ns = h.namespace("ns1");
    const first = await h.apply({ allows: [{ id: "a", namespace: ns, source: "10.0.0.1" }] });
    expect(first.errors).toEqual([]);
    expect(await h.rules("ns1")).toEqual(expect.arrayContaining(["-A test-agent-INPUT -j test-agent-allow-a", "-A test-agent-allow-a -s 10.0.0.1/32 -j ACCEPT"]));

    await h.apply({ allows: [{ id: "b", namespace: ns, source: "10.0.0.2" }] });
    const rules = await h.rules("ns1");
    expect(rules).toContain("-A test-agent-allow-b -s 10.0.0.2/32 -j ACCEPT");
    expect(rules.some((l) => l.includes("allow-a"))).toBe(false);

    // An invalid resource never reaches the kernel, and the one before it stays.
    await h.apply({ allows: [{ id: "b", namespace: ns, source: "10.0.0.2; rm -rf /" }] });
    expect(await h.rules("ns1")).toContain("-A test-agent-allow-b -s 10.0.0.2/32 -j ACCEPT");
    expect(h.fake).toBeDefined();
  });

  it("restart: a new agent with the same plugins on the same host; the kernel keeps its rules, the plugins remember nothing", async () => {
    let made = 0;
    const counting = createPlugin({
      name: "allow",
      version: "0.1.0",
      framework: "^0.1.0",
      register(env) {
        made++;
        env.addExtension(resourceHandlerExtensionPoint, new AllowHandler());
      },
    });
    await using h = await PluginHarness.start({ plugins: [counting], namespaces: ["ns1"] });
    const ns = h.namespace("ns1");
    await h.apply({ allows: [{ id: "a", namespace: ns, source: "10.0.0.1" }] });
    const restarted = await h.restart({ allows: [{ id: "a", namespace: ns, source: "10.0.0.1" }, { id: "b", namespace: ns, source: "10.0.0.2" }] });
    expect(made).toBe(2);
    expect(restarted.errors).toEqual([]);
    expect(restarted.events.length).toBeGreaterThan(0);
    expect(await h.rules("ns1")).toEqual(expect.arrayContaining(["-A test-agent-allow-a -s 10.0.0.1/32 -j ACCEPT", "-A test-agent-allow-b -s 10.0.0.2/32 -j ACCEPT"]));
    // The new agent takes changes as the first did.
    await h.apply({ allows: [{ id: "b", namespace: ns, source: "10.0.0.2" }] });
    expect((await h.rules("ns1")).some((l) => l.includes("allow-a"))).toBe(false);
  });

  it("names the namespaces it knows when asked for another", async () => {
    await using h = await PluginHarness.start({ plugins: [allowPlugin], namespaces: ["ns1"] });
    expect(() => h.namespace("nope")).toThrow(/namespaces: ns1/);
  });
});
