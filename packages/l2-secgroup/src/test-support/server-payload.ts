/**
 * The `neutron-server-fixtures/` golden fixtures: real Neutron server answers to
 * `security_group_info_for_devices` (the wire text, as the RPC reply carries it) and real Neutron's
 * rules for them (`tools/neutron-reference/generate.py`; see the fixtures' README). `applyPayload`
 * feeds one answer to the firewall exactly as the agent would take it — the decoded reply is the
 * l2 state document, nothing added or renamed — and returns the normalized saves to compare.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { IptablesManager, normalizeSave } from "@chainwarden/core";
import type { FirewallRunner } from "../firewall-namespace.js";
import { readReferenceExpected, type ReferenceStep } from "@chainwarden/testing";
import { firewallFlavor } from "../firewall-flavor.js";
import { FirewallNamespace } from "../firewall-namespace.js";
import { parseL2State } from "../l2-state.js";

export const SERVER_FIXTURE_DIR = join(import.meta.dirname, "../neutron-server-fixtures");

/** IPv4, IPv6 with SLAAC (the server's RA rule, DHCPv6), dual stack (DHCPv6-stateful, address pairs, a port without port security). */
export const SERVER_PAYLOADS = ["server_ipv4", "server_ipv6_slaac", "server_dual_stack"] as const;

export interface ServerPayloadFixture {
  /** The server's reply, decoded from the wire text. */
  payload: Record<string, unknown>;
  /** Neutron's rules for it (one block: `prepare_devices_filter`). */
  expected: ReferenceStep;
}

export function loadServerPayload(name: string, enableIpset: boolean): ServerPayloadFixture {
  const payload = JSON.parse(readFileSync(join(SERVER_FIXTURE_DIR, `${name}.payload.json`), "utf8")) as Record<string, unknown>;
  const steps = readReferenceExpected(join(SERVER_FIXTURE_DIR, `${name}${enableIpset ? ".ipset" : ""}.expected.txt`));
  if (steps.length !== 1) throw new Error(`${name}: expected one block, found ${steps.length}`);
  return { payload, expected: steps[0]! };
}

export interface PayloadOutput {
  sections: Record<string, string>;
  problems: string[];
  /** Lines a second reconcile of the same state sent (0 when it converged). */
  secondLines: number;
}

export interface ApplyPayloadOptions {
  runner: FirewallRunner;
  namespace: string;
  enableIpset: boolean;
  /** Reads `ipset save` (normalized) in the namespace. */
  ipsetSave: () => Promise<string>;
}

/** The agent's path with the Linux bridge driver (`iptables`, wrap name `neutron-linuxbri`), comments on. */
export async function applyPayload(payload: Record<string, unknown>, options: ApplyPayloadOptions): Promise<PayloadOutput> {
  const flavor = firewallFlavor("iptables");
  const { runner, namespace, enableIpset } = options;
  const manager = new IptablesManager({ runner, namespace, wrapName: flavor.defaultWrapName, stateless: true, strict: true, comments: true });
  const ns = new FirewallNamespace({ runner, namespace, flavor, enableIpset, waitForDevices: false });
  const parsed = parseL2State(payload, "neutron-server", { flavor, enableIpset });
  await manager.deferApply(() => ns.reconcile(manager, parsed.resources.values()));
  await ns.afterApply();
  const again = await manager.deferApply(() => ns.reconcile(manager, parsed.resources.values()));
  const sections: Record<string, string> = {
    "iptables-save": normalizeSave(await runner.save({ namespace, family: 4 })),
    "ip6tables-save": normalizeSave(await runner.save({ namespace, family: 6 })),
  };
  if (enableIpset) sections["ipset save"] = await options.ipsetSave();
  return { sections, problems: parsed.problems.map((p) => `${p.path}: ${p.message}`), secondLines: again.result.lines };
}
