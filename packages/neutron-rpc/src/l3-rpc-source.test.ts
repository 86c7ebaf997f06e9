import type { StateDocument } from "@chainwarden/agent";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import type { RouterDict } from "./l3-plugin-api.js";
import { L3RpcSource } from "./l3-rpc-source.js";
import type { RpcEndpoints, RpcTarget, RpcTransport } from "./rpc-transport.js";

/**
 * neutron-server's side of the l3 agent's RPC as `L3RpcSource` sees it: `report_state` answers as the
 * server does (`new`, `revived` to an agent it had shown dead, else `alive`: the next answers are
 * queued in `reportAnswers`), `get_router_ids` and `sync_routers` answer from the routers scheduled
 * here, and every call is recorded.
 */
class L3ServerRpc implements RpcTransport {
  readonly routers = new Map<string, RouterDict>();
  readonly calls: string[] = [];
  readonly served: string[] = [];
  readonly reportAnswers: ("new" | "alive" | "revived")[] = [];

  async call<T>(_target: RpcTarget, method: string, args: Record<string, unknown>): Promise<T> {
    this.calls.push(method);
    switch (method) {
      case "report_state":
        return (this.reportAnswers.shift() ?? "alive") as T;
      case "get_router_ids":
        return [...this.routers.keys()] as T;
      case "sync_routers":
        return (args.router_ids as string[]).filter((id) => this.routers.has(id)).map((id) => structuredClone(this.routers.get(id)!)) as T;
      default:
        throw new Error(`unexpected call ${method}`);
    }
  }

  async cast(): Promise<void> {}

  async serve(target: { topic: string; server: string }, _endpoints: RpcEndpoints): Promise<void> {
    this.served.push(`${target.topic}.${target.server}`);
  }

  onReconnected(): void {}

  connected?: () => boolean | undefined;

  async close(): Promise<void> {}
}

function source(rpc: L3ServerRpc) {
  const documents: StateDocument[] = [];
  const l3 = new L3RpcSource({
    rpc,
    host: "network-1",
    timeoutMs: 1000,
    reportIntervalMs: 60_000,
    resyncIntervalMs: 0,
    firstSyncWaitMs: 5000,
    configurations: { interface_driver: "linuxbridge" },
    logger: pino({ level: "silent" }),
  });
  const sink = { update: (document: StateDocument) => documents.push(document), problem: () => undefined };
  return { l3, sink, documents };
}

describe("L3RpcSource", () => {
  // An agent that replaces one the server had shown dead (a takeover, a restart after a while) is
  // answered `revived` at its first report; its start's full sync answers that. A second one would
  // process every router twice, and Neutron's rule layout depends on how often a router was
  // processed (the metadata REDIRECT moves above the floating IP DNAT after the first time).
  it.each(["new", "alive", "revived"] as const)("starts with one full sync when the first report is answered %s", async (answer) => {
    const rpc = new L3ServerRpc();
    rpc.reportAnswers.push(answer);
    rpc.routers.set("r1", { id: "r1" });
    const { l3, sink, documents } = source(rpc);
    await l3.start(sink);
    await l3.routers.idle();
    expect(rpc.calls).toEqual(["report_state", "get_router_ids", "sync_routers"]);
    expect(documents).toEqual([{ routers: [{ id: "r1" }] }]);
    expect(rpc.served).toEqual(["l3_agent.network-1", "q-agent-notifier-network-update.network-1"]);
    await l3.stop();
  });

  it("a revived answer after the start does a full sync", async () => {
    const rpc = new L3ServerRpc();
    rpc.reportAnswers.push("new");
    rpc.routers.set("r1", { id: "r1" });
    const { l3, sink, documents } = source(rpc);
    await l3.start(sink);
    await l3.routers.idle();
    rpc.routers.set("r2", { id: "r2" });
    // The server had shown the agent dead (reports lost) and says so at the next report.
    rpc.reportAnswers.push("revived");
    await l3.reporter.report();
    await l3.routers.idle();
    expect(rpc.calls).toEqual(["report_state", "get_router_ids", "sync_routers", "report_state", "get_router_ids", "sync_routers"]);
    expect(documents.at(-1)).toEqual({ routers: [{ id: "r1" }, { id: "r2" }] });
    await l3.stop();
  });

  it("says for /readyz whether it has done a full sync and whether the transport is connected", async () => {
    const rpc = new L3ServerRpc();
    let connected: boolean | undefined = false;
    rpc.connected = () => connected;
    rpc.routers.set("r1", { id: "r1" });
    const { l3, sink } = source(rpc);
    expect(l3.health()).toEqual({ delivered: false, connected: false, detail: "not connected to the message broker; no full sync of routers from neutron-server yet" });
    connected = true;
    await l3.start(sink);
    await l3.routers.idle();
    expect(l3.health()).toEqual({ delivered: true, connected: true });
    connected = false;
    expect(l3.health()).toEqual({ delivered: true, connected: false, detail: "not connected to the message broker" });
    // A transport that does not know says nothing of its connection.
    connected = undefined;
    expect(l3.health()).toEqual({ delivered: true });
    await l3.stop();
  });
});
