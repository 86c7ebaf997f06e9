import { RabbitMqLab } from "@chainwarden/openstack-lab";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { memoryLogger } from "./memory-logger.test-support.js";
import { neutronAdminContext } from "./neutron-context.js";
import { RemoteError, RpcFailure, RpcTimeoutError } from "./oslo-messaging-errors.js";
import { PythonPeer, stopAllPeers, type PeerEvent } from "./python-peer.test-support.js";
import type { RpcEndpoint } from "./rpc-dispatcher.js";
import { RpcTransport } from "./rpc-transport.js";

/**
 * Interoperability with the real thing: Debian's python3-oslo.messaging 14.0.3 (kombu 5.2, py-amqp
 * 5.1) on a real RabbitMQ, both ways. The Python peers are in `test-peers/`.
 */
describe("interoperability with Python oslo.messaging", () => {
  let lab: RabbitMqLab;
  let transport: RpcTransport;
  const log = memoryLogger();

  beforeAll(async () => {
    lab = await RabbitMqLab.start();
    transport = await RpcTransport.connect({ transportUrl: lab.transportUrl, controlExchange: "neutron", logger: log, rabbit: { kombu_reconnect_delay: 0.1 } });
  });

  afterAll(async () => {
    await transport?.close();
    await stopAllPeers();
    await lab?.stop();
  });

  describe("our client, a Python oslo RPC server", () => {
    const topic = "cw-py-server";
    let server: PythonPeer;

    beforeAll(async () => {
      server = new PythonPeer("oslo_server.py", [lab.transportUrl, "neutron", topic, "pyhost"]);
      await server.waitFor((e) => e.event === "ready");
    });

    it("calls a method and gets its result, with our context as the server saw it", async () => {
      const context = neutronAdminContext();
      const result = await transport.call<{ args: unknown; context: Record<string, unknown> }>({ topic, version: "1.4" }, "echo", { router_ids: ["r1", "r2"], host: "h1", n: 3.5, none: null }, { context, timeoutMs: 20_000 });
      expect(result.args).toEqual({ router_ids: ["r1", "r2"], host: "h1", n: 3.5, none: null });
      expect(result.context).toMatchObject({ is_admin: true, request_id: context.request_id, user_id: null, roles: [] });
      // To one server by name (<topic>.<server>).
      await expect(transport.call({ topic, server: "pyhost" }, "echo", { x: 1 }, { timeoutMs: 20_000 })).resolves.toMatchObject({ args: { x: 1 } });
    });

    it("calls an endpoint by namespace and version (the Python server serves report_state in namespace cw_state)", async () => {
      const reply = await transport.call({ topic, namespace: "cw_state", version: "1.2" }, "report_state", { agent_state: { agent_state: { binary: "neutron-l3-agent" } }, time: "2026-12-06T03:00:00.000000" }, { timeoutMs: 20_000 });
      expect(reply).toBe("alive");
    });

    it("turns the server's exceptions into RemoteErrors naming the Python class and module", async () => {
      const value = await transport.call({ topic }, "fail_value", { text: "bad input" }, { timeoutMs: 20_000 }).catch((e: unknown) => e);
      expect(value).toBeInstanceOf(RemoteError);
      expect(value).toMatchObject({ code: "RPC_REMOTE_ERROR", className: "ValueError", module: "builtins", remoteMessage: "bad input", args: ["bad input"] });
      expect((value as RemoteError).traceback.join("")).toContain("raise ValueError(text)");
      expect((value as RemoteError).message).toBe(`remote builtins.ValueError from fail_value on topic ${topic}: bad input`);

      await expect(transport.call({ topic }, "fail_busy", { text: "busy" }, { timeoutMs: 20_000 })).rejects.toMatchObject({ className: "AgentBusy", module: "peer_exceptions" });
      await expect(transport.call({ topic }, "no_such", {}, { timeoutMs: 20_000 })).rejects.toMatchObject({ className: "NoSuchMethod", module: "oslo_messaging.rpc.dispatcher", remoteMessage: "Endpoint does not support RPC method no_such" });
      await expect(transport.call({ topic, version: "2.0" }, "echo", {}, { timeoutMs: 20_000 })).rejects.toMatchObject({ className: "UnsupportedVersion" });
    });

    it("times out a slow method with RpcTimeoutError naming the method, topic and timeout", async () => {
      const started = Date.now();
      const error = await transport.call({ topic }, "slow", { seconds: 3 }, { timeoutMs: 1000 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RpcTimeoutError);
      expect(error).toMatchObject({ code: "RPC_TIMEOUT", method: "slow", topic, exchange: "neutron", timeoutMs: 1000, connectionLost: false });
      expect((error as Error).message).toMatch(/^RPC call slow to topic cw-py-server \(exchange neutron\) got no reply within 1000 ms/);
      expect(Date.now() - started).toBeLessThan(2500);
    });

    it("keeps a long call alive on the server's call-monitor heartbeats", async () => {
      // 3 s of work, a 2 s call monitor: only the heartbeats (every second) keep it from failing.
      await expect(transport.call({ topic }, "slow", { seconds: 3 }, { timeoutMs: 20_000, callMonitorTimeoutMs: 2000 })).resolves.toBe("slept 3");
    });

    it("casts to the topic, and fanout casts reach the server", async () => {
      await transport.cast({ topic }, "record", { kind: "topic" }, { context: { request_id: "req-cast" } });
      await transport.cast({ topic, server: "pyhost" }, "record", { kind: "server" });
      await transport.cast({ topic, fanout: true }, "record", { kind: "fanout" });
      const cast = (kind: string) => (e: PeerEvent) => e.event === "cast" && (e.args as { kind?: string }).kind === kind;
      expect((await server.waitFor(cast("topic"))).context).toMatchObject({ request_id: "req-cast" });
      await server.waitFor(cast("server"));
      await server.waitFor(cast("fanout"));
    });
  });

  describe("a Python oslo RPC client, our server", () => {
    const topic = "cw-js-server";
    const casts: { method: string; args: Record<string, unknown>; fanout: boolean; routingKey: string }[] = [];
    const endpoints: RpcEndpoint[] = [
      {
        version: "1.4",
        methods: {
          add: (_ctx, { a, b }) => (a as number) + (b as number),
          whoami: (context, _args, request) => ({ context, request }),
          fail_value: () => {
            throw new RpcFailure("ValueError", "builtins", "bad host");
          },
          fail_busy: () => {
            throw new RpcFailure("AgentBusy", "peer_exceptions", "try later");
          },
          fail_plain: () => {
            throw new TypeError("routers is not iterable");
          },
          slow: async (_ctx, { ms }) => {
            await new Promise((r) => setTimeout(r, ms as number));
            return "done";
          },
          record: (_ctx, args, request) => {
            casts.push({ method: request.method, args, fanout: request.fanout, routingKey: request.routingKey });
          },
        },
      },
      { namespace: "cw_state", version: "1.2", methods: { report_state: (_ctx, args) => ({ seen: args.agent_state }) } },
    ];

    beforeAll(async () => {
      await transport.serve({ topic, server: "jshost" }, endpoints);
    });

    it("answers calls with our results and our failures as the client's own exception types", async () => {
      const actions = [
        { op: "call", topic, method: "add", args: { a: 2, b: 40 } },
        { op: "call", topic, server: "jshost", method: "whoami", args: {} },
        { op: "call", topic, namespace: "cw_state", version: "1.2", method: "report_state", args: { agent_state: { binary: "x" }, time: "t" } },
        { op: "call", topic, method: "fail_value", args: {} },
        { op: "call", topic, method: "fail_busy", args: {} },
        { op: "call", topic, method: "fail_plain", args: {} },
        { op: "call", topic, method: "nope", args: {} },
        { op: "call", topic, version: "1.5", method: "add", args: { a: 1, b: 1 } },
        { op: "call", topic, method: "slow", args: { ms: 3000 }, timeout: 20, call_monitor_timeout: 2 },
        { op: "cast", topic, method: "record", args: { kind: "topic" } },
        { op: "cast", topic, server: "jshost", method: "record", args: { kind: "server" } },
        { op: "cast", topic, fanout: true, method: "record", args: { kind: "fanout" } },
      ];
      const client = new PythonPeer("oslo_client.py", [lab.transportUrl, "neutron", JSON.stringify(actions)]);
      await client.waitFor((e) => e.event === "done", 60_000);
      const results = client.events.filter((e) => e.event === "result").sort((a, b) => (a.index as number) - (b.index as number));
      expect(results).toHaveLength(actions.length);
      const [add, whoami, state, value, busy, plain, nope, version, slow] = results as (PeerEvent & { ok?: unknown; error?: Record<string, unknown> })[];

      expect(add!.ok, JSON.stringify(results, null, 1)).toBe(42);
      expect(whoami!.ok).toMatchObject({
        context: { user_id: "u-1", project_id: "p-1", request_id: "req-python-peer", roles: ["member"] },
        request: { method: "whoami", namespace: null, version: "1.0", routingKey: `${topic}.jshost`, isCall: true, fanout: false },
      });
      expect(state!.ok).toEqual({ seen: { binary: "x" } });
      // builtins and allowed modules are rebuilt as the Python class itself...
      expect(value!.error).toMatchObject({ type: "ValueError", module: "builtins" });
      expect(value!.error!.str).toMatch(/^bad host\n/);
      expect(busy!.error).toMatchObject({ type: "AgentBusy_Remote", module: "peer_exceptions_Remote" });
      expect(busy!.error!.mro).toContain("peer_exceptions.AgentBusy");
      // ... anything else is oslo's RemoteError naming our class.
      expect(plain!.error).toMatchObject({ type: "RemoteError", module: "oslo_messaging.rpc.client", exc_type: "TypeError", value: "routers is not iterable" });
      expect(nope!.error).toMatchObject({ type: "RemoteError", exc_type: "NoSuchMethod", value: "Endpoint does not support RPC method nope" });
      expect(version!.error).toMatchObject({ type: "RemoteError", exc_type: "UnsupportedVersion" });
      // A 3 s method under a 2 s call monitor: our heartbeats kept it alive.
      expect(slow!.ok).toBe("done");

      await vitestWaitFor(() => casts.length >= 3);
      expect(casts).toEqual(
        expect.arrayContaining([
          { method: "record", args: { kind: "topic" }, fanout: false, routingKey: topic },
          { method: "record", args: { kind: "server" }, fanout: false, routingKey: `${topic}.jshost` },
          { method: "record", args: { kind: "fanout" }, fanout: true, routingKey: topic },
        ]),
      );
    });

    it("declares the queues as oslo does, so a Python server can share the topic", async () => {
      const python = new PythonPeer("oslo_server.py", [lab.transportUrl, "neutron", topic, "pyhost2"]);
      await python.waitFor((e) => e.event === "ready");
      await transport.cast({ topic, fanout: true }, "record", { kind: "both" });
      await python.waitFor((e) => e.event === "cast" && (e.args as { kind?: string }).kind === "both");
      await vitestWaitFor(() => casts.some((c) => c.args.kind === "both"));
      const queues = lab.ctl(["list_queues", "--quiet", "--no-table-headers", "name", "durable", "auto_delete", "consumers"]);
      expect(queues).toMatch(new RegExp(`^${topic}\\s+false\\s+false\\s+2$`, "m"));
      expect(queues).toMatch(new RegExp(`^${topic}_fanout_[0-9a-f]{32}\\s+false\\s+false\\s+1$`, "m"));
      await python.stop();
    });
  });
});

async function vitestWaitFor(condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 50));
  }
}
