import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import type { HealthChecks, HealthReport } from "./agent-health.js";
import type { AgentMetrics } from "./agent-metrics.js";
import { AgentError } from "./agent-errors.js";

/** A running metrics endpoint. */
export interface MetricsServer {
  /** The address actually bound (`127.0.0.1`, `::1`, ...). */
  readonly address: string;
  /** The port actually bound (the real one when 0 was asked for). */
  readonly port: number;
  /** Stops listening; resolves once the server is closed. */
  close(): Promise<void>;
}

/**
 * Serves the agent's Prometheus metrics on `http://HOST:PORT/metrics` (`HOST:PORT`, `[v6]:PORT`;
 * port 0 picks a free one), and, given `health`, `/healthz` (alive, not stuck) and `/readyz`
 * (synced, sources delivering) beside it: 200 or 503 with a small JSON body, `{ ok, reasons, ... }`
 * (see `liveness`, `readiness`). Everything else is 404; methods other than GET and HEAD are 405.
 */
export async function serveMetrics(metrics: AgentMetrics, address: string, logger: Logger, health?: HealthChecks): Promise<MetricsServer> {
  const { host, port } = parseAddress(address);
  const server = createServer((request, response) => {
    void handle(metrics, health, request, response, logger);
  });
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once("error", onError);
    server.listen({ host, port }, () => {
      server.off("error", onError);
      resolve();
    });
  });
  server.on("error", (err) => logger.error({ err }, "metrics server error"));
  const bound = server.address() as AddressInfo;
  logger.info({ address: bound.address, port: bound.port }, "metrics server listening");
  let closing: Promise<void> | undefined;
  return {
    address: bound.address,
    port: bound.port,
    close() {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // Keep-alive connections of a scraper would hold close() open until they time out.
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}

async function handle(metrics: AgentMetrics, health: HealthChecks | undefined, request: IncomingMessage, response: ServerResponse, logger: Logger): Promise<void> {
  const path = (request.url ?? "/").split("?")[0];
  const check = health && (path === "/healthz" ? () => health.live() : path === "/readyz" ? () => health.ready() : undefined);
  if (path !== "/metrics" && !check) {
    response.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end(`not found; metrics are at /metrics${health ? ", health at /healthz and /readyz" : ""}\n`);
    return;
  }
  if (request.method !== "GET" && request.method !== "HEAD") {
    response.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" }).end("method not allowed\n");
    return;
  }
  if (check) {
    let report: HealthReport;
    try {
      report = check();
    } catch (err) {
      logger.error({ err, path }, "health check failed");
      report = { ok: false, reasons: ["the health check itself failed"] };
    }
    response.writeHead(report.ok ? 200 : 503, { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" });
    response.end(request.method === "HEAD" ? undefined : `${JSON.stringify(report)}\n`);
    return;
  }
  try {
    const body = await metrics.metricsText();
    response.writeHead(200, { "content-type": metrics.registry.contentType });
    response.end(request.method === "HEAD" ? undefined : body);
  } catch (err) {
    logger.error({ err }, "collecting metrics failed");
    response.writeHead(500, { "content-type": "text/plain; charset=utf-8" }).end("collecting metrics failed\n");
  }
}

/** `HOST:PORT` or `[IPV6]:PORT` (the config schema already checked the shape). */
function parseAddress(address: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(address);
  const port = Number(m?.[3]);
  if (!m || port > 65535) throw new AgentError("CONFIG_INVALID", `metrics address ${JSON.stringify(address)} is not HOST:PORT`);
  return { host: m[1] ?? m[2] ?? "", port };
}
