import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect as netConnect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from "node:tls";
import { freePort, RabbitMqLab } from "@chainwarden/openstack-lab";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { memoryLogger } from "./memory-logger.test-support.js";
import { RpcConnectError, RpcDeclareError, RpcSendError, RpcTimeoutError, TransportClosedError } from "./oslo-messaging-errors.js";
import type { RpcEndpoint } from "./rpc-dispatcher.js";
import { RpcTransport, type RpcTransportOptions } from "./rpc-transport.js";

/** Short delays so that a reconnection takes about a second once the broker is back. */
const FAST = { kombu_reconnect_delay: 0.1, rabbit_retry_interval: 0.25, rabbit_interval_max: 1, kombu_missing_consumer_retry_timeout: 2 };

let lab: RabbitMqLab;
beforeAll(async () => {
  lab = await RabbitMqLab.start();
});
afterAll(async () => {
  await lab?.stop();
});

describe("broker connections", () => {
  const opened: RpcTransport[] = [];
  const open = async (options: Partial<RpcTransportOptions> = {}) => {
    const transport = await RpcTransport.connect({ transportUrl: lab.transportUrl, controlExchange: "neutron", rabbit: FAST, ...options });
    opened.push(transport);
    return transport;
  };

  afterEach(async () => {
    await Promise.all(opened.splice(0).map((t) => t.close()));
  });

  /** A server on `topic` recording its casts, answering `ping`, and `hold` until released. */
  async function serveRecorder(transport: RpcTransport, topic: string) {
    const casts: unknown[] = [];
    let release: () => void = () => undefined;
    let holding: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (holding = resolve));
    const endpoints: RpcEndpoint[] = [
      {
        methods: {
          ping: (_ctx, { n }) => ({ pong: n }),
          record: (_ctx, args) => void casts.push(args),
          hold: async () => {
            holding();
            await new Promise<void>((resolve) => (release = resolve));
            return "released";
          },
        },
      },
    ];
    const server = await transport.serve({ topic, server: "host-a" }, endpoints);
    return { server, casts, held, release: () => release() };
  }

  const queueColumn = (queue: string, column: "consumers" | "messages"): number | undefined => {
    const line = lab
      .ctl(["list_queues", "--quiet", "--no-table-headers", "name", column])
      .split("\n")
      .find((l) => l.split(/\s+/)[0] === queue);
    return line === undefined ? undefined : Number(line.split(/\s+/)[1]);
  };
  const consumersOf = (queue: string) => queueColumn(queue, "consumers");

  it("after a broker restart: redeclares and resubscribes, emits reconnected, and delivers what is sent afterwards", async () => {
    const serverLog = memoryLogger();
    const serving = await open({ logger: serverLog });
    const calling = await open();
    const { casts, server } = await serveRecorder(serving, "cw-restart");
    // A request nobody consumes (its server stopped; the queue stays): pending across the restart.
    const idle = await serveRecorder(serving, "cw-idle");
    await idle.server.stop();
    const lostCall = calling.call({ topic: "cw-idle" }, "ping", { n: 0 }, { timeoutMs: 8000 }).catch((e: unknown) => e);
    await waitUntil(() => queueColumn("cw-idle", "messages") === 1);

    const reconnected = new Promise((resolve) => serving.once("reconnected", resolve));
    const disconnected = new Promise((resolve) => calling.once("disconnected", resolve));
    const restarting = lab.restart();
    await disconnected;
    // While the broker is down, a send cannot complete in time: RpcSendError, not a hang.
    const refused = await calling.cast({ topic: "cw-restart" }, "record", { during: true }, { timeoutMs: 300 }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(RpcSendError);
    expect((refused as Error).message).toMatch(/not connected to a broker \(127\.0\.0\.1:\d+\) in time/);
    await restarting;
    await expect(reconnected).resolves.toMatchObject({ host: `127.0.0.1:${lab.port}` });

    // The broker lost its non-durable queues; ours are back with their consumers.
    expect(consumersOf("cw-restart")).toBe(1);
    expect(consumersOf("cw-restart.host-a")).toBe(1);
    expect(consumersOf(server.fanoutQueue)).toBe(1);
    await calling.cast({ topic: "cw-restart" }, "record", { after: "topic" });
    await calling.cast({ topic: "cw-restart", fanout: true }, "record", { after: "fanout" });
    await expect(calling.call({ topic: "cw-restart", server: "host-a" }, "ping", { n: 1 }, { timeoutMs: 20_000 })).resolves.toEqual({ pong: 1 });
    await waitUntil(() => casts.length >= 2);
    expect(casts).toEqual(expect.arrayContaining([{ after: "topic" }, { after: "fanout" }]));
    expect(serverLog.messages("info")).toContain("reconnected to the broker; consumers restored");

    // The request went with the broker: the call times out, saying the connection was lost meanwhile.
    const error = await lostCall;
    expect(error).toBeInstanceOf(RpcTimeoutError);
    expect(error).toMatchObject({ method: "ping", topic: "cw-idle", connectionLost: true });
    expect((error as Error).message).toMatch(/the broker connection was lost while it waited/);
  });

  it("treats close_all_connections as a lost connection, and a call pending across it still gets its reply", async () => {
    const serving = await open();
    const calling = await open();
    const { held, release, casts } = await serveRecorder(serving, "cw-forced");
    const pending = calling.call({ topic: "cw-forced" }, "hold", {}, { timeoutMs: 30_000 });
    await held;

    const back = Promise.all([new Promise((r) => serving.once("reconnected", r)), new Promise((r) => calling.once("reconnected", r))]);
    lab.ctl(["close_all_connections", "test"]);
    await back;
    // The request was taken before the connections went; its reply reaches the same reply queue, restored.
    release();
    await expect(pending).resolves.toBe("released");
    await calling.cast({ topic: "cw-forced" }, "record", { after: "forced" });
    await waitUntil(() => casts.length === 1);
    expect(casts).toEqual([{ after: "forced" }]);
  });

  it("fails over to the next host of the URL when the first does not answer", async () => {
    const dead = await freePort();
    const log = memoryLogger();
    const transport = await open({ transportUrl: `rabbit://guest:guest@127.0.0.1:${dead},guest:guest@127.0.0.1:${lab.port}/`, logger: log });
    expect(transport.host).toBe(`127.0.0.1:${lab.port}`);
    expect(log.records.filter((r) => r.message === "cannot connect to the broker").map((r) => r.fields.host)).toContain(`127.0.0.1:${dead}`);
    const { server } = await serveRecorder(transport, "cw-failover");
    await expect(transport.call({ topic: "cw-failover" }, "ping", { n: 2 }, { timeoutMs: 20_000 })).resolves.toEqual({ pong: 2 });
    await server.stop();
  });

  it("declares and consumes again when the broker cancels a consumer (its queue was deleted)", async () => {
    const transport = await open();
    const { casts } = await serveRecorder(transport, "cw-deleted");
    lab.ctl(["delete_queue", "cw-deleted"]);
    await waitUntil(() => consumersOf("cw-deleted") === 1);
    await transport.cast({ topic: "cw-deleted" }, "record", { after: "delete" });
    await waitUntil(() => casts.length === 1);
  });

  it("declares a fanout exchange again after it went away with its last queue", async () => {
    const transport = await open();
    const { server } = await serveRecorder(transport, "cw-fanout-gone");
    await transport.cast({ topic: "cw-fanout-gone", fanout: true }, "record", { n: 1 });
    await server.stop();
    // The exchange was auto-deleted with the server's fanout queue; nobody listens, the broker drops the cast.
    await expect(transport.cast({ topic: "cw-fanout-gone", fanout: true }, "record", { n: 2 }, { timeoutMs: 5000 })).resolves.toBeUndefined();
  });

  it("refuses to serve a topic whose queue exists with other flags, naming the broker's reason, and stays usable", async () => {
    // Its own exchange: a durable one would make every later non-durable declaration of it fail too.
    const durable = await open({ controlExchange: "cw-durable-exchange", rabbit: { ...FAST, amqp_durable_queues: true } });
    await serveRecorder(durable, "cw-durable");
    const transient = await open();
    const error = await transient.serve({ topic: "cw-durable", server: "host-b", exchange: "cw-durable-exchange" }, [{ methods: {} }]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RpcDeclareError);
    expect((error as Error).message).toMatch(/^cannot set up RPC server cw-durable\.host-b .*PRECONDITION.FAILED.*inequivalent arg 'durable' for exchange 'cw-durable-exchange'/);
    const { server } = await serveRecorder(transient, "cw-transient");
    await expect(transient.call({ topic: "cw-transient" }, "ping", { n: 3 }, { timeoutMs: 20_000 })).resolves.toEqual({ pong: 3 });
    await server.stop();
  });

  it("negotiates the heartbeat of heartbeat_timeout_threshold and names its connections", async () => {
    await open({ rabbit: { ...FAST, heartbeat_timeout_threshold: 7 } });
    const connections = lab
      .ctl(["list_connections", "--quiet", "--no-table-headers", "timeout", "client_properties"])
      .split("\n")
      .filter((l) => l.includes("connection_name"));
    expect(connections.length).toBe(2);
    for (const line of connections) expect(line).toMatch(/^7\s.*connection_name.*:(send|listen):/);
  });

  it("reports a refused login without the password", async () => {
    const error = await RpcTransport.connect({ transportUrl: `rabbit://guest:hunter2@127.0.0.1:${lab.port}/`, rabbit: FAST, connectTimeoutMs: 1500 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RpcConnectError);
    expect((error as Error).message).toMatch(/ACCESS.REFUSED/);
    expect((error as Error).message).not.toContain("hunter2");
  });

  it("reports brokers that never answer by their hosts, without the password", async () => {
    const [a, b] = [await freePort(), await freePort()];
    const error = await RpcTransport.connect({ transportUrl: `rabbit://openstack:hunter2@127.0.0.1:${a},openstack:hunter2@127.0.0.1:${b}/`, rabbit: FAST, connectTimeoutMs: 1500 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RpcConnectError);
    expect((error as Error).message).toMatch(new RegExp(`could not connect to any RabbitMQ host \\(127\\.0\\.0\\.1:${a}, 127\\.0\\.0\\.1:${b}\\) within 1500 ms; last error: .*ECONNREFUSED`));
    expect((error as Error).message).not.toContain("hunter2");
  });

  it("rejects pending calls when closed, and everything after", async () => {
    const serving = await open();
    const calling = await open();
    const { held, release } = await serveRecorder(serving, "cw-close");
    const pending = calling.call({ topic: "cw-close" }, "hold", {}, { timeoutMs: 30_000 }).catch((e: unknown) => e);
    await held;
    await calling.close();
    expect(await pending).toBeInstanceOf(TransportClosedError);
    await expect(calling.cast({ topic: "cw-close" }, "record")).rejects.toBeInstanceOf(TransportClosedError);
    release();
    // Closing a transport stops its servers and deletes their fanout queues.
    const { server } = await serveRecorder(serving, "cw-close2");
    expect(consumersOf(server.fanoutQueue)).toBe(1);
    await serving.close();
    expect(consumersOf(server.fanoutQueue)).toBeUndefined();
    expect(consumersOf("cw-close2")).toBe(0);
  });
});


/** Makes a CA, a broker certificate for `broker.example` only, a client certificate, and a second, unrelated CA. */
function makeCertificates(dir: string) {
  const openssl = (args: string[]) => {
    const result = spawnSync("openssl", args, { cwd: dir, encoding: "utf8" });
    if (result.status !== 0) throw new Error(`openssl ${args[0]} failed: ${result.stderr}`);
  };
  const ca = (name: string) => openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.pem`, "-days", "1", "-subj", `/CN=${name}`]);
  const signed = (name: string, cn: string, extensions: string) => {
    writeFileSync(join(dir, `${name}.ext`), extensions);
    openssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${cn}`]);
    openssl(["x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", `${name}.pem`, "-days", "1", "-extfile", `${name}.ext`]);
  };
  ca("ca");
  ca("other-ca");
  signed("broker", "broker.example", "subjectAltName=DNS:broker.example\n");
  signed("agent", "cw-agent", "extendedKeyUsage=clientAuth\n");
  return (name: string) => join(dir, name);
}

/**
 * TLS in front of the lab's broker: a TLS server on loopback that requires a client certificate of
 * our CA and passes the bytes on to the broker's plain AMQP port (the lab's broker has no TLS
 * listener; the AMQP client cannot tell the difference).
 */
describe("TLS ([oslo_messaging_rabbit] ssl options)", () => {
  let dir: string;
  let file: (name: string) => string;
  let proxy: TlsServer;
  let proxyPort: number;
  const sockets = new Set<Socket>();
  const clients: string[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "cw-oslo-tls-"));
    file = makeCertificates(dir);
    proxy = createTlsServer({ key: readFileSync(file("broker.key")), cert: readFileSync(file("broker.pem")), ca: readFileSync(file("ca.pem")), requestCert: true, rejectUnauthorized: true }, (secure: TLSSocket) => {
      clients.push(String(secure.getPeerCertificate().subject?.CN));
      const plain = netConnect({ host: "127.0.0.1", port: lab.port });
      for (const s of [secure, plain]) {
        sockets.add(s);
        s.on("error", () => undefined);
        s.on("close", () => sockets.delete(s));
      }
      secure.pipe(plain).pipe(secure);
    });
    proxy.on("tlsClientError", () => undefined);
    await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
    proxyPort = (proxy.address() as { port: number }).port;
  });

  afterAll(async () => {
    for (const s of sockets) s.destroy();
    if (proxy) await new Promise((resolve) => proxy.close(resolve));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("connects with ssl_ca_file and a client certificate, and does not check the host name unless told to (as oslo)", async () => {
    const transport = await RpcTransport.connect({
      transportUrl: `rabbit://guest:guest@127.0.0.1:${proxyPort}/?ssl=true&ssl_ca_file=${encodeURIComponent(file("ca.pem"))}`,
      rabbit: { ...FAST, ssl_cert_file: file("agent.pem"), ssl_key_file: file("agent.key"), ssl_version: "TLSv1_2" },
    });
    try {
      await transport.serve({ topic: "cw-tls", server: "h" }, [{ methods: { ping: () => "pong over TLS" } }]);
      await expect(transport.call({ topic: "cw-tls" }, "ping", {}, { timeoutMs: 20_000 })).resolves.toBe("pong over TLS");
      expect(clients).toContain("cw-agent");
    } finally {
      await transport.close();
    }
  });

  it("refuses a broker whose certificate does not chain to ssl_ca_file, or names another host when hostname verification is on", async () => {
    const attempt = (rabbit: Record<string, unknown>) =>
      RpcTransport.connect({
        transportUrl: `rabbit://guest:guest@127.0.0.1:${proxyPort}/`,
        rabbit: { ...FAST, ssl: true, ssl_cert_file: file("agent.pem"), ssl_key_file: file("agent.key"), ...rabbit },
        connectTimeoutMs: 1500,
      }).then(
        async (t) => {
          await t.close();
          return new Error("connected");
        },
        (e: unknown) => e as Error,
      );
    const wrongCa = await attempt({ ssl_ca_file: file("other-ca.pem") });
    expect(wrongCa).toBeInstanceOf(RpcConnectError);
    expect(wrongCa.message).toMatch(/last error: .*(self-signed certificate|unable to verify|unable to get local issuer)/);
    const wrongHost = await attempt({ ssl_ca_file: file("ca.pem"), ssl_enforce_hostname_verification: true });
    expect(wrongHost).toBeInstanceOf(RpcConnectError);
    expect(wrongHost.message).toMatch(/last error: .*(Hostname\/IP does not match|altnames)/);
  });
});

// Generous: the conditions often run rabbitmqctl, an Erlang VM start each, slow on a loaded machine.
async function waitUntil(condition: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 50));
  }
}
