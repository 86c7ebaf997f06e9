import {
  Agent,
  MemoryStateSource,
  baseConfigSchema,
  createPlugin,
  resourceHandlerExtensionPoint,
  stateSourceExtensionPoint,
  type AgentConfig,
  type AgentPlugin,
  type AgentPluginEntry,
  type ReconcileContext,
  type ReconcileRequest,
  type ResourceHandler,
  type StateDocument,
} from "@chainwarden/agent";
import { addNamespace, deleteNamespace, type HostRunner, type IptablesManager } from "@chainwarden/core";
import { l3AgentRouterExtensionPoint, l3NatSettingsService, parseRouters, type L3NatSettings, type L3RouterExtension, type Router } from "@chainwarden/l3-nat";
import { pino } from "pino";
import { fwaasIptablesPlugin } from "../fwaas-iptables-plugin.js";


/**
 * What the l3 plugin does for router extensions, without its devices, processes and rules: a
 * namespace per router, one l3 rule (`-j $scope` in FORWARD, so FWaaS's jumps come after it as in
 * the reference), and the extension callbacks on the namespace's manager, so a test sees FWaaS's
 * rules and commands alone. The real plugin is used on FakeHost and for plans
 * (`fwaas-iptables-plugin.test.ts`) and on the kernel (`fwaas-iptables.datapath.test.ts`).
 */
export function stubL3Plugin(namespacePrefix = "qrouter-"): AgentPlugin {
  return createPlugin({
    name: "l3-stub",
    version: "0.0.0",
    framework: "^0.1.0",
    register(env) {
      // What FWaaS reads of the l3 plugin's settings.
      env.provide(l3NatSettingsService, { namespacePrefix } as L3NatSettings);
      const extensions = (): readonly L3RouterExtension[] => env.extensions(l3AgentRouterExtensionPoint);
      const seen = new WeakSet<IptablesManager>();
      const handler: ResourceHandler<Router> = {
        kind: "router",
        documentKeys: ["routers"],
        // Valid routers only: the stub never holds an invalid one (the real plugin does).
        parse: (document, origin) => {
          const { resources, problems } = parseRouters(document, origin, { namespacePrefix });
          return { resources, problems };
        },
        namespaceOf: (router) => `${namespacePrefix}${router.id}`,
        async reconcile(context: ReconcileContext, request: ReconcileRequest<Router>) {
          const ns = context.namespace!;
          const call = async (cb: "addRouter" | "updateRouter" | "deleteRouter", router: Router, manager: IptablesManager) => {
            for (const e of extensions()) {
              await e[cb]?.({ router, namespace: ns, iptables: manager, runner: context.runner, logger: context.logger, dryRun: context.dryRun });
            }
          };
          for (const router of request.removed.values()) {
            await call("deleteRouter", router, context.manager());
            if (!context.dryRun) {
              await deleteNamespace(context.runner, ns);
              context.forgetNamespace();
            }
          }
          const ids = request.full ? [...request.desired.keys()] : [...request.changed].filter((id) => request.desired.has(id));
          for (const id of ids) {
            if (!context.dryRun) await addNamespace(context.runner, ns);
            const manager = context.manager();
            const filter = manager.table(4, "filter");
            if (!seen.has(manager)) {
              filter.addChain("scope");
              filter.addRule("FORWARD", "-j $scope");
            }
            await call(seen.has(manager) ? "updateRouter" : "addRouter", request.desired.get(id)!, manager);
            seen.add(manager);
          }
        },
      };
      env.addExtension(resourceHandlerExtensionPoint, handler as ResourceHandler);
    },
  });
}

export interface FwaasAgentOptions {
  runner: HostRunner;
  initial: StateDocument;
  /** The l3 plugin to run with (default: the stub). */
  l3?: AgentPluginEntry;
  config?: Record<string, unknown>;
  fwaasOptions?: Record<string, unknown>;
}

/** A real agent (reconcile loop, observers) with an l3 plugin and `fwaasIptablesPlugin`. */
export async function createFwaasAgent(options: FwaasAgentOptions) {
  const source = new MemoryStateSource(options.initial, { name: "test", origin: "test-state" });
  const statePlugin = createPlugin({
    name: "state",
    version: "0.0.0",
    framework: "^0.1.0",
    register(env) {
      env.addExtension(stateSourceExtensionPoint, source);
    },
  });
  const config: AgentConfig = {
    ...baseConfigSchema.parse({ wrap_name: "neutron-l3-agent", coalesce_ms: 0, resync_interval: 0, retry_initial_delay_ms: 20, retry_max_delay_ms: 200, log_level: "silent" }),
    namespace_prefix: "qrouter-",
    metadata_port: 9697,
    enable_metadata_proxy: true,
    ...options.config,
  };
  const l3 = options.l3 ?? { plugin: stubL3Plugin(String(config["namespace_prefix"])) };
  const agent = await Agent.create({
    name: "l3-agent",
    version: "0.0.0",
    config,
    plugins: [l3, { plugin: fwaasIptablesPlugin, options: options.fwaasOptions ?? {} }, { plugin: statePlugin }],
    runner: options.runner,
    logger: pino({ level: process.env.FWAAS_TEST_LOG ?? "silent" }),
  });
  return {
    agent,
    source,
    async push(document: StateDocument): Promise<void> {
      source.push(document);
      await agent.idle();
    },
  };
}

/** A router dict as the server sends it: one internal port (and subnet) per port id, no gateway. */
export function routerDict(id: string, tenant: string, ports: string[]) {
  return {
    id,
    tenant_id: tenant,
    enable_snat: true,
    gw_port: null,
    _interfaces: ports.map((p, i) => ({
      id: p,
      network_id: `net-${i}`,
      fixed_ips: [{ ip_address: `10.${i}.0.1`, subnet_id: `s${i}`, prefixlen: 24 }],
      subnets: [{ id: `s${i}`, cidr: `10.${i}.0.0/24`, gateway_ip: `10.${i}.0.1` }],
    })),
    _floatingips: [],
  };
}
