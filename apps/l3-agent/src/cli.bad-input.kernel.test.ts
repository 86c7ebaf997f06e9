/**
 * What bad input gets, through the built l3-agent binary on the real kernel: every invocation is a
 * fresh process (as a restart is), so nothing is remembered between them. A router is applied,
 * then the input goes wrong in the ways operators and servers get it wrong; the router's namespace
 * and rules stay exactly as they were, and `plan`/`status` say why. Each test has its own namespace
 * prefix, bridge namespace and state directory, all removed in teardown, also after a failure.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Cleanups, createNetns, isRoot, runCli } from "@chainwarden/testing";
import { ExecaRunner, deleteNamespace, listNamespaces } from "@chainwarden/core";
import { afterEach, describe, expect, it } from "vitest";

const APP_DIR = fileURLToPath(new URL("..", import.meta.url));
const BIN = join(APP_DIR, "bin", "l3-agent.js");
const runner = new ExecaRunner({ backend: "nft" });

const ROUTER_ID = "1e4c5a7b-2f0d-4c0e-9a47-3b1f6e2d8c90";
const router = () => ({
  id: ROUTER_ID,
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
  _floatingips: [{ id: "f1f1f1f1-0000-4000-8000-000000000003", floating_ip_address: "200.200.128.3", fixed_ip_address: "10.10.10.2", port_id: "6bc18a88-9619-4fce-bf4e-49cae6df1715" } as Record<string, unknown>],
});

// Last in, first out: agents go before their namespaces and files.
const cleanups = new Cleanups();
afterEach(() => cleanups.run());

/** A host of its own: a namespace prefix, a bridge namespace, a config and a state file. */
async function host() {
  const tag = randomBytes(3).toString("hex");
  const prefix = `cwbad-${tag}-`;
  const fabric = await createNetns("cw-fabric");
  cleanups.defer(() => fabric.delete());
  const dir = mkdtempSync(join(tmpdir(), "l3-bad-input-"));
  cleanups.defer(() => rmSync(dir, { recursive: true, force: true }));
  const namespace = `${prefix}${ROUTER_ID}`;
  cleanups.defer(() => deleteNamespace(runner, namespace).catch(() => undefined));
  const config = join(dir, "l3-agent.json");
  writeFileSync(
    config,
    JSON.stringify({
      backend: "nft",
      namespace_prefix: prefix,
      state_path: join(dir, "state-path"),
      use_ipv6: false,
      plugin_options: { "l3-nat": { bridge_namespace: fabric.name, metadata_proxy: "external" } },
    }),
  );
  const state = join(dir, "state.json");
  const write = (doc: unknown) => writeFileSync(state, JSON.stringify(doc));
  const cli = (...args: string[]) => runCli(BIN, [...args, "--config", config, "--state", state]);
  const save = async () => (await runner.save({ namespace, family: 4 })).split("\n").filter((l) => !l.startsWith("#")).join("\n");
  const exists = async () => (await listNamespaces(runner)).includes(namespace);
  return { namespace, state, write, cli, save, exists, prefix, fabric: fabric.name };
}

describe.skipIf(!isRoot())("l3-agent: what bad input gets (real kernel, a fresh process each time)", () => {
  it("an invalid router keeps its namespace and rules; plan and status say so and fail; fixed, it applies", async () => {
    const h = await host();
    h.write({ routers: [router()] });
    expect((await h.cli("apply", "--once")).code).toBe(0);
    const good = await h.save();
    expect(good).toContain("-A neutron-l3-agent-float-snat -s 10.10.10.2/32 -j SNAT --to-source 200.200.128.3");

    // A misspelled key in a floating IP: the router is invalid, and was valid in another process.
    const bad = router();
    const fip = bad._floatingips[0]!;
    fip["floating_ip_adress"] = fip["floating_ip_address"];
    delete fip["floating_ip_address"];
    h.write({ routers: [bad] });
    const applied = await h.cli("apply", "--once");
    expect(applied.code).toBe(1);
    expect(applied.stderr).toContain('unknown key "floating_ip_adress": did you mean floating_ip_address?');
    expect(applied.stdout).not.toContain("stale");
    expect(await h.exists()).toBe(true);
    expect(await h.save()).toBe(good);

    const plan = await h.cli("plan");
    expect(plan.code).toBe(1);
    expect(plan.stdout).toContain(`# held as the kernel has it (invalid input or a failed apply): router/${ROUTER_ID}`);
    expect(plan.stdout).not.toMatch(/^-[DX] /m);
    const status = await h.cli("status");
    expect(status.code).toBe(3);
    expect(status.stdout).toContain(`held as the kernel has it: router/${ROUTER_ID}`);
    expect(status.stderr).toContain("floating_ip_adress");

    // `_interfacs` for `_interfaces`: named, and the router is kept.
    const typo = router() as Record<string, unknown>;
    typo["_interfacs"] = typo["_interfaces"];
    delete typo["_interfaces"];
    h.write({ routers: [typo] });
    const r = await h.cli("apply", "--once");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('unknown key "_interfacs": did you mean _interfaces?');
    expect(await h.save()).toBe(good);

    h.write({ routers: [router()] });
    expect((await h.cli("apply", "--once")).code).toBe(0);
    expect(await h.save()).toBe(good);
  });

  it("a missing state file, or a top-level key misspelled, changes nothing and fails", async () => {
    const h = await host();
    h.write({ routers: [router()] });
    expect((await h.cli("apply", "--once")).code).toBe(0);
    const good = await h.save();

    rmSync(h.state);
    const missing = await h.cli("apply", "--once");
    expect(missing.code).toBe(1);
    expect(missing.stdout).toContain("no desired state was read: nothing was changed\n");
    expect(missing.stderr).toContain("state file does not exist");
    expect(await h.save()).toBe(good);

    h.write({ router: [] });
    const unknown = await h.cli("apply", "--once");
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('unknown key "router"; did you mean routers?');
    expect(await h.exists()).toBe(true);
    expect(await h.save()).toBe(good);
    const plan = await h.cli("plan");
    expect(plan.code).toBe(1);
    expect(plan.stdout).not.toContain("would remove");
  });

  it("with routers: [] plan lists the namespace it would remove and status counts it out of sync; apply removes it", async () => {
    const h = await host();
    h.write({ routers: [router()] });
    expect((await h.cli("apply", "--once")).code).toBe(0);
    h.write({ routers: [] });
    const plan = await h.cli("plan");
    expect(plan.code).toBe(0);
    // The namespace with its devices (veth, tap and bridge), and the bridges of our own that lose their last port.
    const fabric = `(namespace ${h.fabric})`;
    expect(plan.stdout).toContain(
      `# namespace ${h.namespace}: left by an earlier run and no longer desired\n# would remove namespace ${h.namespace} (router/${ROUTER_ID}; with its devices qg-a1b2c3d4-00 (veth, with tapa1b2c3d4-00 in brqf0e1d2c3-00 ${fabric}), qr-c0ffee00-11 (veth, with tapc0ffee00-11 in brq8f2e0c6a-3d ${fabric}))\n`,
    );
    for (const bridge of ["brqf0e1d2c3-00", "brq8f2e0c6a-3d"]) {
      expect(plan.stdout).toContain(`# bridge ${bridge}: left by an earlier run and no longer desired\n# would remove bridge ${bridge} (router/${ROUTER_ID}; made by this agent (alias chainwarden:l3-nat:${h.prefix}); its last port goes)\n`);
    }
    const status = await h.cli("status");
    expect(status.code).toBe(3);
    expect(status.stdout).toMatch(new RegExp(`^${h.namespace} +yes +- +no .*stale: left by an earlier run, would be removed$`, "m"));
    expect(await h.exists()).toBe(true);
    expect((await h.cli("apply", "--once")).code).toBe(0);
    expect(await h.exists()).toBe(false);
  });
});
