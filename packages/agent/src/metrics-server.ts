import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import type { AgentMetrics } from "./agent-metrics.js";
import { AgentError } from "./agent-errors.js";

/** A running metrics endpoint. */
export interface MetricsServer {
  /** The address actually bound (`127.0.0.1`, `::1`, ...). */
  readonly address: string;
  /** The port actually bound (the real one when 0 was asked for). */
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Serves the agent's Prometheus metrics on `http://HOST:PORT/metrics` (`HOST:PORT`, `[v6]:PORT`;
 * port 0 picks a free one). Everything else is 404; other methods on `/metrics` are 405.
 */
export async function serveMetrics(metrics: AgentMetrics, address: string, logger: Logger): Promise<MetricsServer> {
  const { host, port } = parseAddress(address);
  const server = createServer((request, response) => {
    void handle(metrics, request, response, logger);
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

async function handle(metrics: AgentMetrics, request: IncomingMessage, response: ServerResponse, logger: Logger): Promise<void> {
  const path = (request.url ?? "/").split("?")[0];
  if (path !== "/metrics") {
    response.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not found; metrics are at /metrics\n");
    return;
  }
  if (request.method !== "GET" && request.method !== "HEAD") {
    response.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" }).end("method not allowed\n");
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
