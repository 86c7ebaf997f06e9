/**
 * The plugin inside a real agent (the framework's Agent with the test kit's fake iptables): loaded
 * with options, it observes every apply the reconcile loop makes.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  Agent,
  baseConfigSchema,
  createPlugin,
  resourceHandlerExtensionPoint,
  stateSourceExtensionPoint,
  type ResourceHandler,
} from "@chainwarden/agent";
import { FakeHost } from "@chainwarden/testing";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { auditLogPlugin, type AuditRecord } from "./index.js";

/** A minimal third-party handler: `{ allow: { <id>: { namespace, source } } }` → one ACCEPT rule each. */
const allowHandler: ResourceHandler<{ namespace: string; source: string }> = {
  kind: "allow",
  documentKeys: ["allow"],
  parse(document) {
    const resources = new Map(Object.entries((document.allow ?? {}) as Record<string, { namespace: string; source: string }>));
    return { resources, problems: [] };
  },
  namespaceOf: (r) => r.namespace,
  async reconcile(context, request) {
    const filter = context.manager().table(4, "filter");
    for (const id of request.removed.keys()) filter.clearRulesByTag(`allow-${id}`);
    for (const id of request.changed) {
      filter.clearRulesByTag(`allow-${id}`);
      filter.addRule("INPUT", `-s ${request.desired.get(id)!.source} -j ACCEPT`, { tag: `allow-${id}` });
    }
  },
};

const testPlugin = createPlugin({
  name: "allow-test",
  version: "0.0.0",
  framework: "*",
  register(env) {
    env.addExtension(resourceHandlerExtensionPoint, allowHandler as ResourceHandler);
    env.addExtension(stateSourceExtensionPoint, {
      name: "inline",
      async start(sink) {
        sink.update({ allow: { a: { namespace: "ns1", source: "10.0.0.0/8" }, b: { namespace: "ns2", source: "10.1.0.0/16" } } }, "inline");
      },
      async stop() {},
    });
  },
});

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "audit-log-agent-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("audit-log in an agent", () => {
  it("writes one line per namespace applied, with its resources and the lines sent", async () => {
    const path = join(dir, "audit.jsonl");
    const host = new FakeHost({ namespaces: ["ns1", "ns2"] });
    const agent = await Agent.create({
      name: "test-agent",
      version: "0.0.0",
      config: baseConfigSchema.parse({ wrap_name: "test-agent", use_ipv6: false, log_level: "silent" }),
      plugins: [{ plugin: testPlugin }, { plugin: auditLogPlugin, options: { path } }],
      runner: host,
      logger: pino({ level: "silent" }),
    });
    const report = await agent.applyOnce();
    expect(report).toMatchObject({ namespaces: 2, applied: 2, failed: [] });

    const records = readFileSync(path, "utf8").trimEnd().split("\n").map((l) => JSON.parse(l) as AuditRecord);
    expect(records.map((r) => r.namespace).sort()).toEqual(["ns1", "ns2"]);
    const ns1 = records.find((r) => r.namespace === "ns1")!;
    expect(ns1).toMatchObject({ resources: ["allow/a"], full: true, error: null });
    const sent = host.iptables.restoreCalls.filter((c) => c.target.namespace === "ns1");
    expect(sent).toHaveLength(1);
    expect(ns1.families).toEqual([{ family: 4, sent: true, lines: expect.any(Number), tables: expect.arrayContaining(["filter"]) }]);
    expect(ns1.lines_sent).toBeGreaterThan(0);
  });

  it("rejects options that are not exactly { path }, naming the plugin", async () => {
    const create = (options: unknown) =>
      Agent.create({
        name: "test-agent",
        version: "0.0.0",
        config: baseConfigSchema.parse({ wrap_name: "test-agent" }),
        plugins: [{ plugin: auditLogPlugin, options }],
        runner: new FakeHost(),
        logger: pino({ level: "silent" }),
      });
    await expect(create({})).rejects.toThrow(/invalid options for plugin audit-log/);
    await expect(create({ path: join(dir, "a"), rotate: true })).rejects.toThrow(/rotate/);
  });
});
