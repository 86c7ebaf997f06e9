import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { request as httpsRequest } from "node:https";

/** Where the proxy sends requests: Neutron's metadata agent socket, or an HTTP(S) URL. */
export type MetadataUpstream = { readonly kind: "unix"; readonly socketPath: string } | { readonly kind: "url"; readonly url: URL };

/**
 * `/path/to.sock`, `unix:/path/to.sock` or `http(s)://host:port[/prefix]`. Throws with a message
 * saying what is accepted.
 */
export function parseMetadataUpstream(text: string): MetadataUpstream {
  if (text.startsWith("unix:")) text = text.slice("unix:".length);
  if (text.startsWith("/")) {
    if (text.includes("\0") || text.length > 107) throw new Error(`metadata upstream ${JSON.stringify(text)}: a unix socket path must be absolute and at most 107 bytes`);
    return { kind: "unix", socketPath: text };
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`metadata upstream ${JSON.stringify(text)} is neither an absolute unix socket path nor an http(s) URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error(`metadata upstream ${JSON.stringify(text)}: only http and https URLs`);
  if (url.search || url.hash || url.username || url.password) throw new Error(`metadata upstream ${JSON.stringify(text)}: no query, fragment or credentials`);
  return { kind: "url", url };
}

export function formatMetadataUpstream(upstream: MetadataUpstream): string {
  return upstream.kind === "unix" ? upstream.socketPath : upstream.url.href;
}

export interface MetadataProxyOptions {
  routerId: string;
  upstream: MetadataUpstream;
  /** Seconds to wait for the upstream (haproxy's `timeout server` in Neutron's template: 32). */
  timeoutSeconds?: number;
  /** Called with every failed forward (for logs). */
  onError?: (error: Error, request: { method: string | undefined; url: string | undefined }) => void;
}

/**
 * Headers a client must never set: the ones the proxy and the metadata agent use to tell which
 * instance asks. Neutron's haproxy deletes `X-Neutron-Network-ID` and sets `X-Neutron-Router-ID`
 * (and its `option forwardfor` appends to a client's `X-Forwarded-For` rather than replacing it);
 * we drop all of these and set our own.
 */
const CLIENT_FORBIDDEN = new Set([
  "x-forwarded-for",
  "forwarded",
  "x-neutron-router-id",
  "x-neutron-network-id",
  "x-instance-id",
  "x-instance-id-signature",
  "x-tenant-id",
]);

/** Hop-by-hop headers (RFC 9110 §7.6.1) are not forwarded. */
const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"]);

/**
 * The per-router metadata proxy (what Neutron runs haproxy for): an HTTP server that forwards every
 * request to the metadata agent with `X-Neutron-Router-ID` and `X-Forwarded-For` (the instance's
 * address, as the REDIRECT keeps it) set, and any such headers from the client dropped.
 */
export function createMetadataProxyServer(options: MetadataProxyOptions): Server {
  const timeoutMs = (options.timeoutSeconds ?? 32) * 1000;
  return createServer((req, res) => forward(req, res, options, timeoutMs));
}

function forward(req: IncomingMessage, res: ServerResponse, options: MetadataProxyOptions, timeoutMs: number): void {
  const client = clientAddress(req.socket.remoteAddress);
  const headers = forwardedHeaders(req.headers, client, options.routerId);
  const upstream = options.upstream;
  const fail = (status: number, error: Error) => {
    options.onError?.(error, { method: req.method, url: req.url });
    if (!res.headersSent) {
      res.writeHead(status, { "content-type": "text/plain", connection: "close" });
      res.end(status === 504 ? "Gateway Timeout\n" : "Bad Gateway\n");
    } else {
      res.destroy(error);
    }
  };
  let outgoing;
  if (upstream.kind === "unix") {
    outgoing = httpRequest({ socketPath: upstream.socketPath, method: req.method, path: req.url, headers });
  } else {
    const base = upstream.url.pathname.replace(/\/$/, "");
    const request = upstream.url.protocol === "https:" ? httpsRequest : httpRequest;
    outgoing = request({ hostname: upstream.url.hostname, port: upstream.url.port || undefined, method: req.method, path: `${base}${req.url ?? "/"}`, headers });
  }
  outgoing.setTimeout(timeoutMs, () => outgoing.destroy(Object.assign(new Error("upstream timed out"), { code: "ETIMEDOUT" })));
  outgoing.on("error", (err: NodeJS.ErrnoException) => fail(err.code === "ETIMEDOUT" ? 504 : 502, err));
  outgoing.on("response", (upstreamRes) => {
    const back: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(upstreamRes.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) back[k] = v;
    res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.statusMessage, back);
    upstreamRes.pipe(res);
  });
  req.pipe(outgoing);
}

/** The headers sent upstream: the client's, less hop-by-hop and forbidden ones, plus ours. */
export function forwardedHeaders(incoming: IncomingHttpHeaders, client: string, routerId: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(incoming)) {
    if (v === undefined || HOP_BY_HOP.has(k) || CLIENT_FORBIDDEN.has(k)) continue;
    out[k] = v;
  }
  out["x-forwarded-for"] = client;
  out["x-neutron-router-id"] = routerId;
  return out;
}

/** `::ffff:10.0.0.5` (an IPv4 client on a dual-stack socket) is `10.0.0.5`. */
function clientAddress(remote: string | undefined): string {
  if (!remote) return "unknown";
  return remote.startsWith("::ffff:") && remote.includes(".") ? remote.slice("::ffff:".length) : remote;
}
