import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, baseConfigSchema, createPlugin, MemoryStateSource, stateSourceExtensionPoint, type AgentConfig, type StateDocument } from "@chainwarden/agent";
import type { HostRunner } from "@chainwarden/core";
import { pino, type Logger } from "pino";
import { afterAll } from "vitest";
import { l3NatPlugin } from "../l3-nat-plugin.js";
import { l3NatControlPlaneService, type L3NatOptions } from "../l3-nat-settings.js";
import type { RouterHandler } from "../router-handler.js";
import { l3AgentRouterExtensionPoint, type L3RouterExtension } from "../router-extension-point.js";
import { l3InterfaceDriverExtensionPoint, type InterfaceDriver } from "../interface-driver.js";
import { resourceHandlerExtensionPoint } from "@chainwarden/agent";


export interface L3AgentHarnessOptions {
  runner: HostRunner;
  options?: Partial<L3NatOptions>;
  config?: Record<string, unknown>;
  extensions?: L3RouterExtension[];
  drivers?: InterfaceDriver[];
  initial?: StateDocument;
  /** Default: silent (or `L3_TEST_LOG`'s level). */
  logger?: Logger;
  /** The test's state source says it is neutron-server's (as neutron-l3-rpc does): `bridge_mode: auto` is `neutron`. */
  neutronControlPlane?: boolean;
}

let sharedStateDir: string | undefined;
/** One scratch state directory per test file (its agents share pid files, as one host's would). */
function stateDir(): string {
  sharedStateDir ??= mkdtempSync(join(tmpdir(), "cw-l3-harness-"));
  return sharedStateDir;
}
// Removed when the test file is done: vitest ends its workers without running "exit" handlers, so
// one registered there left a directory behind per file.
afterAll(() => {
  if (sharedStateDir !== undefined) rmSync(sharedStateDir, { recursive: true, force: true });
  sharedStateDir = undefined;
});

/**
 * A real agent (`Agent.create`, reconcile loop, apply observers) with `l3NatPlugin` and a test plugin
 * that provides the state and, optionally, router extensions and interface drivers.
 */
export async function createL3Agent(options: L3AgentHarnessOptions) {
  const source = new MemoryStateSource(options.initial ?? { routers: [] }, { name: "test", origin: "test-state" });
  const testPlugin = createPlugin({
    name: "l3-test",
    version: "0.0.0",
    framework: "^0.1.0",
    register(env) {
      env.addExtension(stateSourceExtensionPoint, source);
      for (const e of options.extensions ?? []) env.addExtension(l3AgentRouterExtensionPoint, e);
      for (const d of options.drivers ?? []) env.addExtension(l3InterfaceDriverExtensionPoint, d);
      if (options.neutronControlPlane) env.use(l3NatControlPlaneService).neutron(source.name);
    },
  });
  const config: AgentConfig = {
    ...baseConfigSchema.parse({ wrap_name: "neutron-l3-agent", coalesce_ms: 0, resync_interval: 0, retry_initial_delay_ms: 20, retry_max_delay_ms: 200, log_level: "silent" }),
    // Never the host's own state directory (pid files of metadata proxies live there).
    state_path: stateDir(),
    namespace_prefix: "qrouter-",
    metadata_port: 9697,
    enable_metadata_proxy: true,
    ...options.config,
  };
  const agent = await Agent.create({
    name: "l3-agent",
    version: "0.0.0",
    config,
    plugins: [{ plugin: l3NatPlugin, options: options.options ?? {} }, { plugin: testPlugin }],
    runner: options.runner,
    logger: options.logger ?? pino({ level: process.env.L3_TEST_LOG ?? "silent" }),
  });
  const handler = agent.extensions(resourceHandlerExtensionPoint).find((h) => h.kind === "router") as RouterHandler;
  return {
    agent,
    handler,
    /** Delivers a new desired state and waits until it is applied (retries included). */
    async push(document: StateDocument): Promise<void> {
      source.push(document);
      await agent.idle();
    },
  };
}
