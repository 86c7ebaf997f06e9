/**
 * Namespaces shared by plugins (issue 19): the app's manager flavour, declared manager needs checked
 * when the agent is created, and one plugin's failure kept its own. A real agent on the fake iptables.
 */
import { FakeHost } from "@chainwarden/testing";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { PluginError } from "./agent-errors.js";
import { Agent, FRAMEWORK_VERSION, type AgentOptions } from "./agent.js";
import { baseConfigSchema } from "./config-schema.js";
import { resourceHandlerExtensionPoint, stateSourceExtensionPoint, type ReconcileContext, type ReconcileRequest, type ResourceHandler, type StateDocument } from "./extension-points.js";
import type { ManagerNeeds } from "./manager-flavours.js";
import { MemoryStateSource } from "./memory-state-source.js";
import { createPlugin } from "./plugin.js";

const WRAP = "neutron-linuxbri";

/** `<key>: { id: [rules] }` → a wrapped filter chain `<prefix>-<id>` per id, jumped to from INPUT; all in the agent's namespace. */
function chainsHandler(kind: string, prefix: string, options: { managers?: ManagerNeeds[]; ask?: { stateless?: boolean }; fail?: () => boolean } = {}): ResourceHandler<string[]> {
  return {
    kind,
    documentKeys: [`${kind}s`],
    ...(options.managers ? { managers: options.managers } : {}),
    parse(document: StateDocument) {
      return { resources: new Map(Object.entries((document[`${kind}s`] ?? {}) as Record<string, string[]>)), problems: [] };
    },
    namespaceOf: () => undefined,
    async reconcile(context: ReconcileContext, request: ReconcileRequest<string[]>) {
      const filter = context.manager(options.ask ?? {}).table(4, "filter");
      if (options.fail?.()) throw new Error(`${kind} backend unreachable`);
      for (const id of request.removed.keys()) filter.removeChain(`${prefix}-${id}`);
      for (const [id, rules] of request.desired) {
        filter.removeChain(`${prefix}-${id}`);
        filter.addChain(`${prefix}-${id}`);
        for (const rule of rules) filter.addRule(`${prefix}-${id}`, rule);
        filter.addRule("INPUT", `-j $${prefix}-${id}`);
      }
    },
  };
}

function plugin(name: string, handler: ResourceHandler<string[]>, source?: MemoryStateSource) {
  return createPlugin({
    name,
    version: "1.0.0",
    framework: `^${FRAMEWORK_VERSION}`,
    register(env) {
      env.addExtension(resourceHandlerExtensionPoint, handler as ResourceHandler);
      if (source) env.addExtension(stateSourceExtensionPoint, source);
    },
  });
}

/** The l2 agent's port handler as far as managers go: it declares, and asks for, a stateless one. */
const ports = (fail?: () => boolean) => chainsHandler("port", "sg", { managers: [{ stateless: true }], ask: { stateless: true }, ...(fail ? { fail } : {}) });

function options(plugins: AgentOptions["plugins"], host: FakeHost, extra: Partial<AgentOptions> = {}): AgentOptions {
  const config = baseConfigSchema.parse({ wrap_name: WRAP, resync_interval: 0, coalesce_ms: 0, use_ipv6: false });
  return { name: "l2-agent", version: "0.0.1", config, plugins, runner: host, logger: pino({ level: "silent" }), ...extra };
}

describe("namespaces shared by plugins", () => {
  it("an l2-flavoured agent (managerDefaults stateless): a plugin's namespace gets no nat or mangle chains", async () => {
    const host = new FakeHost({ variant: "nft" });
    const source = new MemoryStateSource({ chain_sets: { lab: ["-s 192.168.10.0/24 -j ACCEPT"] } });
    const agent = await Agent.create(options([{ plugin: plugin("static-chains", chainsHandler("chain_set", "cs"), source) }], host, { managerDefaults: { stateless: true } }));
    expect(await agent.applyOnce()).toMatchObject({ applied: 1, failed: [], failedResources: [], failedHandlers: [] });
    const saved = host.iptables.dump({ family: 4 });
    expect(saved).toContain(`-A ${WRAP}-cs-lab -s 192.168.10.0/24 -j ACCEPT`);
    expect(saved).not.toContain("*nat");
    expect(saved).not.toContain("float-snat");
    expect(saved).not.toContain("*mangle");

    // Without the app's flavour the framework's default is the l3 agent's: stateful, with nat.
    const l3 = new FakeHost({ variant: "nft" });
    const stateful = await Agent.create(options([{ plugin: plugin("static-chains", chainsHandler("chain_set", "cs"), new MemoryStateSource({ chain_sets: { lab: ["-j ACCEPT"] } })) }], l3));
    await stateful.applyOnce();
    expect(l3.iptables.dump({ family: 4 })).toContain(`:${WRAP}-float-snat`);
  });

  it("a plugin calling manager() before the port handler, in the namespace of the ports, shares their stateless manager", async () => {
    const host = new FakeHost({ variant: "nft" });
    const source = new MemoryStateSource({ chain_sets: { lab: ["-j ACCEPT"] }, ports: { p1: ["-j DROP"] } });
    // The plugin is registered first, so it asks first; the port handler declares stateless.
    const agent = await Agent.create(options([{ plugin: plugin("static-chains", chainsHandler("chain_set", "cs"), source) }, { plugin: plugin("l2-secgroup", ports()) }], host));
    expect(await agent.applyOnce()).toMatchObject({ applied: 1, failed: [], failedResources: [], failedHandlers: [] });
    expect(host.iptables.rules({ family: 4 }, "filter", `${WRAP}-cs-lab`)).toEqual(["-j ACCEPT"]);
    expect(host.iptables.rules({ family: 4 }, "filter", `${WRAP}-sg-p1`)).toEqual(["-j DROP"]);
    expect(host.iptables.dump({ family: 4 })).not.toContain("*nat");
  });

  it("refuses two plugins whose handlers need one manager with different options, naming both, the wrap name and the options", async () => {
    const nat = chainsHandler("dnat_rule", "dn", { managers: [{ nat: true }] });
    const err = await Agent.create(options([{ plugin: plugin("l2-secgroup", ports()) }, { plugin: plugin("acme-dnat", nat) }], new FakeHost())).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PluginError);
    expect(err).toMatchObject({
      code: "PLUGIN_INVALID",
      plugin: "acme-dnat",
      message: `the dnat_rule handler of plugin acme-dnat needs the nat table of the ${WRAP} manager, which the port handler of plugin l2-secgroup needs stateless (no nat table); give one of them a wrap name of its own`,
    });
    // With a wrap name of its own it is fine.
    const own = chainsHandler("dnat_rule", "dn", { managers: [{ nat: true, wrapName: "acme-dnat" }] });
    await expect(Agent.create(options([{ plugin: plugin("l2-secgroup", ports()) }, { plugin: plugin("acme-dnat", own) }], new FakeHost()))).resolves.toBeInstanceOf(Agent);
  });

  it("refuses a malformed managers declaration, naming the plugin", async () => {
    const bad = { ...chainsHandler("chain_set", "cs"), managers: [{ stateless: "yes" }] } as unknown as ResourceHandler<string[]>;
    const err = await Agent.create(options([{ plugin: plugin("static-chains", bad) }], new FakeHost())).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "PLUGIN_REGISTER", plugin: "static-chains" });
    expect((err as Error).message).toContain('plugin static-chains added a resource handler for kind "chain_set" whose managers field is invalid: managers[0].stateless must be true or false');
  });

  it("one plugin's failure is its own: the other plugin's resources in the namespace apply", async () => {
    const host = new FakeHost({ variant: "nft" });
    const source = new MemoryStateSource({ chain_sets: { lab: ["-j ACCEPT"] }, ports: { p1: ["-j DROP"] } });
    const agent = await Agent.create(
      options([{ plugin: plugin("l2-secgroup", ports(() => true)) }, { plugin: plugin("static-chains", chainsHandler("chain_set", "cs"), source) }], host, { managerDefaults: { stateless: true } }),
    );
    const report = await agent.applyOnce();
    expect(report.failed).toEqual([]);
    expect(report.failedHandlers.map((f) => [f.kind, f.plugin, f.error.message])).toEqual([["port", "l2-secgroup", "port backend unreachable"]]);
    expect(host.iptables.rules({ family: 4 }, "filter", `${WRAP}-cs-lab`)).toEqual(["-j ACCEPT"]);
    expect(host.iptables.rules({ family: 4 }, "filter", `${WRAP}-sg-p1`)).toBeUndefined();
  });
});
