import { request } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { AgentMetrics } from "./agent-metrics.js";
import { createLogger } from "./logging.js";
import { serveMetrics, type MetricsServer } from "./metrics-server.js";

const logger = createLogger({ level: "silent", name: "test", destination: { write: () => undefined } });

function get(port: number, path: string, method = "GET"): Promise<{ status: number; type: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, type: res.headers["content-type"], body }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("serveMetrics", () => {
  let server: MetricsServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it("answers GET /metrics with the agent's metrics on the real port of :0", async () => {
    const metrics = new AgentMetrics();
    metrics.restoreCalls.inc({ family: "4" }, 3);
    server = await serveMetrics(metrics, "127.0.0.1:0", logger);
    expect(server.address).toBe("127.0.0.1");
    expect(server.port).toBeGreaterThan(0);
    const res = await get(server.port, "/metrics");
    expect(res.status).toBe(200);
    expect(res.type).toBe(metrics.registry.contentType);
    expect(res.body).toContain('chainwarden_restore_calls_total{family="4"} 3');
    expect(res.body).toContain("chainwarden_apply_duration_seconds");
    expect(res.body).toContain("chainwarden_last_successful_sync_timestamp_seconds");
    // Our own registry only: none of prom-client's default process metrics.
    expect(res.body).not.toContain("process_cpu");
  });

  it("answers 404 elsewhere and 405 for other methods on /metrics", async () => {
    server = await serveMetrics(new AgentMetrics(), "127.0.0.1:0", logger);
    expect((await get(server.port, "/")).status).toBe(404);
    expect((await get(server.port, "/metricsx")).status).toBe(404);
    expect((await get(server.port, "/metrics?x=1")).status).toBe(200);
    expect((await get(server.port, "/metrics", "POST")).status).toBe(405);
  });

  it("fails when the port is taken, and frees it on close", async () => {
    server = await serveMetrics(new AgentMetrics(), "127.0.0.1:0", logger);
    const port = server.port;
    await expect(serveMetrics(new AgentMetrics(), `127.0.0.1:${port}`, logger)).rejects.toThrow(/EADDRINUSE/);
    await server.close();
    server = await serveMetrics(new AgentMetrics(), `127.0.0.1:${port}`, logger);
    expect(server.port).toBe(port);
  });
});
