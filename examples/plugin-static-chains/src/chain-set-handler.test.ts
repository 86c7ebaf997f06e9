import { IptablesManager } from "@chainwarden/core";
import type { ReconcileContext, ReconcileRequest } from "@chainwarden/agent";
import { FakeHost } from "@chainwarden/testing";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { ChainSetHandler } from "./chain-set-handler.js";
import type { ChainSet } from "./chain-set.js";

const NS = "ns-static";

/** Drives the handler as the reconcile loop does: one manager per namespace, reconcile inside deferApply. */
function harness(host = new FakeHost({ namespaces: [NS] })) {
  const runner = host.iptables;
  const manager = new IptablesManager({ runner: host, namespace: NS, wrapName: "test-agent", useIpv6: false });
  const handler = new ChainSetHandler();
  const context: ReconcileContext = {
    namespace: NS,
    runner: host,
    logger: pino({ level: "silent" }),
    dryRun: false,
    manager: () => manager,
    forgetNamespace: () => undefined,
    requeue: () => undefined,
  };
  let last = new Map<string, ChainSet>();
  const reconcile = async (sets: ChainSet[], full = false, input: { held?: string[]; complete?: boolean } = {}) => {
    const desired = new Map(sets.map((s) => [s.id, s]));
    const changed = new Set([...desired].filter(([id, s]) => full || JSON.stringify(last.get(id)) !== JSON.stringify(s)).map(([id]) => id));
    const removed = new Map([...last].filter(([id]) => !desired.has(id)));
    const request: ReconcileRequest<ChainSet> = { desired, changed, removed, full, held: new Set(input.held ?? []), complete: input.complete ?? true };
    const { result } = await manager.deferApply(() => handler.reconcile(context, request));
    last = desired;
    return result;
  };
  const filter = () => runner.dump({ namespace: NS, family: 4 }).split("\n").filter((l) => l.includes("cs-"));
  return { reconcile, filter, runner, host };
}

const set = (id: string, rules: string[]): ChainSet => ({ id, namespace: NS, rules });

describe("ChainSetHandler", () => {
  it("programs one wrapped chain per set, jumped to from the wrapped INPUT in id order", async () => {
    const h = harness();
    await h.reconcile([set("web", ["-s 10.0.0.0/8 -j ACCEPT"]), set("admin", ["-p tcp --dport 22 -j ACCEPT", "-j DROP"])], true);
    expect(h.filter()).toEqual([
      ":test-agent-cs-admin -",
      ":test-agent-cs-web -",
      "-A test-agent-INPUT -j test-agent-cs-admin",
      "-A test-agent-INPUT -j test-agent-cs-web",
      "-A test-agent-cs-admin -p tcp -m tcp --dport 22 -j ACCEPT",
      "-A test-agent-cs-admin -j DROP",
      "-A test-agent-cs-web -s 10.0.0.0/8 -j ACCEPT",
    ]);
  });

  it("applies changes and removals, and a repeated full pass sends nothing", async () => {
    const h = harness();
    await h.reconcile([set("web", ["-s 10.0.0.0/8 -j ACCEPT"]), set("admin", ["-j DROP"])], true);
    await h.reconcile([set("web", ["-s 10.0.0.0/8 -j ACCEPT", "-s 192.168.0.0/16 -j ACCEPT"])]);
    expect(h.filter()).toEqual([
      ":test-agent-cs-web -",
      "-A test-agent-INPUT -j test-agent-cs-web",
      "-A test-agent-cs-web -s 10.0.0.0/8 -j ACCEPT",
      "-A test-agent-cs-web -s 192.168.0.0/16 -j ACCEPT",
    ]);
    const again = await h.reconcile([set("web", ["-s 10.0.0.0/8 -j ACCEPT", "-s 192.168.0.0/16 -j ACCEPT"])], true);
    expect(again.lines).toBe(0);
  });

  it("a full pass removes sets it programmed that are no longer desired", async () => {
    const h = harness();
    await h.reconcile([set("a", ["-j ACCEPT"]), set("b", ["-j DROP"])], true);
    await h.reconcile([set("b", ["-j DROP"])], true);
    expect(h.filter()).toEqual([":test-agent-cs-b -", "-A test-agent-INPUT -j test-agent-cs-b", "-A test-agent-cs-b -j DROP"]);
  });

  it("after a restart, a held set keeps the kernel's chain, one the kernel lacks accepts nothing, and incomplete input keeps every set", async () => {
    const first = harness();
    await first.reconcile([set("web", ["-s 10.0.0.0/8 -j ACCEPT"]), set("admin", ["-j DROP"])], true);
    const before = first.filter();

    // A new agent: web's input is invalid now (its stand-in is held), admin is gone from a complete state.
    const restarted = harness(first.host);
    const standIn: ChainSet = { id: "web", namespace: NS, rules: [], standIn: true };
    await restarted.reconcile([standIn, { id: "new", namespace: NS, rules: [], standIn: true }], true, { held: ["web", "new"] });
    expect(restarted.filter()).toEqual(before.filter((l) => !l.includes("cs-admin")));

    // Incomplete input (a problem that names no set): what the kernel has stays.
    const third = harness(first.host);
    await third.reconcile([], true, { complete: false });
    expect(third.filter()).toEqual(before.filter((l) => !l.includes("cs-admin")));
  });
});
