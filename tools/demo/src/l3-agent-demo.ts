import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runAgentCli } from "@chainwarden/agent";
import { addNamespace, deleteNamespace, ExecaRunner, listNamespaces, type BackendChoice } from "@chainwarden/core";
import { l3AgentApp } from "@chainwarden/l3-agent";

/** The seed's router (reference `l3_seed_router_fip`): gateway with SNAT, one subnet, one floating IP. */
const SEED_ROUTER = {
  id: "1e4c5a7b-2f0d-4c0e-9a47-3b1f6e2d8c90",
  tenant_id: "b7a4e4b5c0d34f0f9d7c1e2a3b4c5d6e",
  enable_snat: true,
  gw_port: {
    id: "a1b2c3d4-0001-4e5f-8a9b-0c1d2e3f4a5b",
    network_id: "f0e1d2c3-0000-4b5a-9c8d-7e6f5a4b3c2d",
    mac_address: "fa:16:3e:5a:00:01",
    fixed_ips: [{ ip_address: "200.200.128.2", subnet_id: "ext-subnet-1", prefixlen: 24 }],
    subnets: [{ id: "ext-subnet-1", cidr: "200.200.128.0/24", gateway_ip: "200.200.128.1" }],
  },
  _interfaces: [
    {
      id: "c0ffee00-1111-4222-8333-444455556666",
      network_id: "8f2e0c6a-3d1b-4b7e-9c55-1a2b3c4d5e6f",
      mac_address: "fa:16:3e:10:10:01",
      fixed_ips: [{ ip_address: "10.10.10.1", subnet_id: "int-subnet-1", prefixlen: 24 }],
      subnets: [{ id: "int-subnet-1", cidr: "10.10.10.0/24", gateway_ip: "10.10.10.1" }],
    },
  ],
  _floatingips: [
    { id: "f1f1f1f1-0000-4000-8000-000000000003", floating_ip_address: "200.200.128.3", fixed_ip_address: "10.10.10.2", port_id: "6bc18a88-9619-4fce-bf4e-49cae6df1715", status: "DOWN" },
  ],
};

export interface L3AgentDemoResult {
  routerNamespace: string;
  save: string;
  removed: boolean;
}

/**
 * The l3-agent itself (the same CLI code the binary runs, in-process) serving the seed's router with a
 * namespace prefix of its own and the bridges in a throwaway namespace, so the host's own network
 * and rules are never touched; then the router is removed again, and everything is deleted.
 */
export async function runL3AgentDemo(options: { backend?: BackendChoice; write?: (text: string) => void } = {}): Promise<L3AgentDemoResult> {
  const write = options.write ?? ((t: string) => process.stdout.write(t));
  const runner = new ExecaRunner({ backend: options.backend ?? "auto" });
  const tag = randomBytes(3).toString("hex");
  const prefix = `cwdemo-${tag}-`;
  const fabric = `cwfabric-${tag}`;
  const routerNamespace = `${prefix}${SEED_ROUTER.id}`;
  const dir = mkdtempSync(join(tmpdir(), "cw-demo-"));
  const config = join(dir, "l3-agent.json");
  const state = join(dir, "routers.json");
  await addNamespace(runner, fabric);
  try {
    writeFileSync(
      config,
      JSON.stringify({
        backend: options.backend ?? "auto",
        namespace_prefix: prefix,
        log_level: "warn",
        plugin_options: { "l3-nat": { bridge_namespace: fabric, metadata_proxy: "external" } },
      }),
    );
    writeFileSync(state, JSON.stringify({ routers: [SEED_ROUTER] }));
    write(`\n# l3-agent apply --once --config ${config} --state ${state}\n`);
    const applied = await runAgentCli(l3AgentApp, ["apply", "--once", "--config", config, "--state", state]);
    if (applied !== 0) throw new Error(`l3-agent apply --once exited ${applied}`);
    const save = await runner.save({ namespace: routerNamespace, family: 4 });
    write(`# iptables-save in the router namespace ${routerNamespace}:\n${save.split("\n").filter((l) => !l.startsWith("#")).join("\n")}`);

    writeFileSync(state, JSON.stringify({ routers: [] }));
    write(`# the router leaves the state: l3-agent apply --once again\n`);
    const removedCode = await runAgentCli(l3AgentApp, ["apply", "--once", "--config", config, "--state", state]);
    const removed = removedCode === 0 && !(await listNamespaces(runner)).includes(routerNamespace);
    write(`# router namespace ${removed ? "deleted, with its rules" : "STILL PRESENT"}\n`);
    return { routerNamespace, save, removed };
  } finally {
    await deleteNamespace(runner, routerNamespace).catch(() => undefined);
    await deleteNamespace(runner, fabric);
    rmSync(dir, { recursive: true, force: true });
  }
}
