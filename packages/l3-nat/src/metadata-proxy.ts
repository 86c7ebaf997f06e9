import { createServer, request as httpRequest, type ClientRequest, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { request as httpsRequest } from "node:https";
import type { Socket } from "node:net";
import { L3NatError } from "./l3-nat-errors.js";

/** Where the proxy sends requests: Neutron's metadata agent socket, or an HTTP(S) URL. */
export type MetadataUpstream = { readonly kind: "unix"; readonly socketPath: string } | { readonly kind: "url"; readonly url: URL };

/**
 * `/path/to.sock`, `unix:/path/to.sock` or `http(s)://host:port[/prefix]`. Throws with a message
 * saying what is accepted.
 */
export function parseMetadataUpstream(text: string): MetadataUpstream {
  if (text.startsWith("unix:")) text = text.slice("unix:".length);
  if (text.startsWith("/")) {
    if (text.includes("\0") || text.length > 107) throw new L3NatError("METADATA_UPSTREAM_INVALID", `metadata upstream ${JSON.stringify(text)}: a unix socket path must be absolute and at most 107 bytes`);
    return { kind: "unix", socketPath: text };
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new L3NatError("METADATA_UPSTREAM_INVALID", `metadata upstream ${JSON.stringify(text)} is neither an absolute unix socket path nor an http(s) URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new L3NatError("METADATA_UPSTREAM_INVALID", `metadata upstream ${JSON.stringify(text)}: only http and https URLs`);
  if (url.search || url.hash || url.username || url.password) throw new L3NatError("METADATA_UPSTREAM_INVALID", `metadata upstream ${JSON.stringify(text)}: no query, fragment or credentials`);
  return { kind: "url", url };
}

/** The upstream as text (a socket path, or the URL's normalized `href`) that `parseMetadataUpstream` reads back to the same upstream; for logs and the proxy's command line. */
export function formatMetadataUpstream(upstream: MetadataUpstream): string {
  return upstream.kind === "unix" ? upstream.socketPath : upstream.url.href;
}

/** Options of `createMetadataProxyServer`: the router it serves (sent upstream as `X-Neutron-Router-ID`), the upstream, limits and log hooks. */
export interface MetadataProxyOptions {
  routerId: string;
  upstream: MetadataUpstream;
  /** Seconds the upstream may stay silent (haproxy's `timeout server` in Neutron's template: 32); then 504. */
  timeoutSeconds?: number;
  /** Seconds to connect to the upstream (default 5); then 502. A missing unix socket fails at once. */
  connectTimeoutSeconds?: number;
  /** Seconds a client has to send its request headers (haproxy's `timeout http-request`: 30). */
  headersTimeoutSeconds?: number;
  /** Seconds a client has to send its whole request, body included (default 30). */
  requestTimeoutSeconds?: number;
  /** Seconds a client connection may stay silent (haproxy's `timeout client`: 32). */
  clientTimeoutSeconds?: number;
  /** Requests forwarded at once (default 128); more are answered 503 at once rather than queued. */
  maxUpstreamRequests?: number;
  /** Called with every failed forward (for logs). */
  onError?: (error: Error, request: { method: string | undefined; url: string | undefined }) => void;
  /** Called with every request refused before it was forwarded (for logs). */
  onRejected?: (reason: string, request: { method: string | undefined; url: string | undefined }) => void;
}

/**
 * Client headers that an upstream would take as the proxy's or the metadata agent's. Compared after
 * `normalizeHeaderName` (lower case, `_` as `-`): a WSGI server (the metadata agent, nova's metadata
 * API) turns `X-Neutron-Router-ID` and `X_Neutron_Router_ID` into the same `HTTP_X_NEUTRON_ROUTER_ID`,
 * and which one wins depends on the server. Neutron's haproxy deletes `X-Neutron-Network-ID` and sets
 * `X-Neutron-Router-ID` (and its `option forwardfor` appends to a client's `X-Forwarded-For` rather
 * than replacing it); we drop whole families and set our own.
 */
const CLIENT_FORBIDDEN_NAMES = new Set(["forwarded", "x-real-ip", "x-client-ip"]);
const CLIENT_FORBIDDEN_PREFIXES = ["x-forwarded", "x-neutron", "x-instance", "x-tenant", "x-ovn"];

/** Hop-by-hop headers (RFC 9110 §7.6.1) are not forwarded. */
const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"]);

/** `X_Neutron_Router_ID` → `x-neutron-router-id`: how a WSGI upstream sees a header name. */
export function normalizeHeaderName(name: string): string {
  return name.toLowerCase().replaceAll("_", "-");
}

/**
 * True for a request target in origin form (`/path?query`, RFC 9112 §3.2.1), the only form a
 * client of the metadata service sends. Absolute form (`http://elsewhere/…`, a proxy request),
 * authority form (`CONNECT host:port`) and asterisk form (`OPTIONS *`) are refused, as are a
 * leading `//` (read as `//host/path` by URL parsers upstream) and backslashes (read as `/` by some).
 */
export function isOriginFormTarget(target: string | undefined): boolean {
  return target !== undefined && target.startsWith("/") && !target.startsWith("//") && !/[\s\\#]/.test(target);
}

/**
 * The per-router metadata proxy (what Neutron runs haproxy for): an HTTP server that forwards every
 * request to the metadata agent with `X-Neutron-Router-ID` and `X-Forwarded-For` (the instance's
 * address, as the REDIRECT keeps it) set, and any such headers from the client dropped.
 *
 * Hardening (a guest is the client): only origin-form targets are forwarded (else 400); client
 * headers that could pass for ours are dropped in any spelling; slow clients are cut off by header,
 * request and idle timeouts; the upstream has a connect and an inactivity timeout; at most
 * `maxUpstreamRequests` are forwarded at once, so one hanging upstream costs bounded sockets and
 * the proxy keeps answering (503 when full, 502/504 when the upstream fails).
 */
export function createMetadataProxyServer(options: MetadataProxyOptions): Server {
  const seconds = (v: number | undefined, d: number) => Math.max(1, Math.round((v ?? d) * 1000));
  const headersTimeout = seconds(options.headersTimeoutSeconds, 30);
  const requestTimeout = Math.max(headersTimeout, seconds(options.requestTimeoutSeconds, 30));
  const limits: ForwardLimits = {
    timeoutMs: seconds(options.timeoutSeconds, 32),
    connectTimeoutMs: seconds(options.connectTimeoutSeconds, 5),
    maxUpstreamRequests: options.maxUpstreamRequests ?? 128,
    inflight: 0,
  };
  const server = createServer(
    // Node checks the header and request timeouts every `connectionsCheckingInterval` (30 s by default).
    { headersTimeout, requestTimeout, connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(headersTimeout / 4))) },
    (req, res) => forward(req, res, options, limits),
  );
  // CONNECT (authority form) never reaches the request handler: refuse it here, rather than hang up.
  server.on("connect", (req: IncomingMessage, socket: Socket) => {
    options.onRejected?.("request target not in origin form", { method: req.method, url: req.url });
    socket.end("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nBad Request\n");
  });
  server.timeout = seconds(options.clientTimeoutSeconds, 32);
  server.maxConnections = 1024;
  return server;
}

interface ForwardLimits {
  readonly timeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly maxUpstreamRequests: number;
  inflight: number;
}

function answer(res: ServerResponse, status: number, text: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": "text/plain", connection: "close", ...extra });
  res.end(`${text}\n`);
}

function forward(req: IncomingMessage, res: ServerResponse, options: MetadataProxyOptions, limits: ForwardLimits): void {
  const request = { method: req.method, url: req.url };
  if (!isOriginFormTarget(req.url)) {
    options.onRejected?.("request target not in origin form", request);
    answer(res, 400, "Bad Request");
    return;
  }
  if (limits.inflight >= limits.maxUpstreamRequests) {
    options.onRejected?.("too many upstream requests at once", request);
    answer(res, 503, "Service Unavailable", { "retry-after": "1" });
    return;
  }
  limits.inflight++;
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    limits.inflight--;
  };
  const client = clientAddress(req.socket.remoteAddress);
  const headers = forwardedHeaders(req.headers, client, options.routerId);
  const upstream = options.upstream;
  const fail = (status: number, error: Error) => {
    options.onError?.(error, request);
    if (!res.headersSent) answer(res, status, status === 504 ? "Gateway Timeout" : "Bad Gateway");
    else res.destroy(error);
  };
  let outgoing: ClientRequest;
  if (upstream.kind === "unix") {
    outgoing = httpRequest({ socketPath: upstream.socketPath, method: req.method, path: req.url, headers });
  } else {
    const base = upstream.url.pathname.replace(/\/$/, "");
    const send = upstream.url.protocol === "https:" ? httpsRequest : httpRequest;
    outgoing = send({ hostname: upstream.url.hostname, port: upstream.url.port || undefined, method: req.method, path: `${base}${req.url}`, headers });
  }
  outgoing.on("close", release);
  outgoing.on("socket", (socket: Socket) => {
    if (!socket.connecting) return;
    const timer = setTimeout(() => outgoing.destroy(Object.assign(new Error("upstream connect timed out"), { code: "ECONNTIMEDOUT" })), limits.connectTimeoutMs);
    const clear = () => clearTimeout(timer);
    socket.once("connect", clear);
    socket.once("close", clear);
  });
  outgoing.setTimeout(limits.timeoutMs, () => outgoing.destroy(Object.assign(new Error("upstream timed out"), { code: "ETIMEDOUT" })));
  outgoing.on("error", (err: NodeJS.ErrnoException) => fail(err.code === "ETIMEDOUT" ? 504 : 502, err));
  outgoing.on("response", (upstreamRes) => {
    const back: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(upstreamRes.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) back[k] = v;
    res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.statusMessage, back);
    upstreamRes.pipe(res);
  });
  // A client that goes away frees its upstream request (and its slot) at once.
  res.on("close", () => {
    if (!res.writableFinished) outgoing.destroy();
  });
  req.pipe(outgoing);
}

/**
 * The headers sent upstream: the client's, less hop-by-hop ones (and those its `Connection` header
 * names), less every name containing `_` (nginx's default: a WSGI server folds it into a dashed
 * name's variable) and the forbidden families in any case, plus ours.
 */
export function forwardedHeaders(incoming: IncomingHttpHeaders, client: string, routerId: string): Record<string, string | string[]> {
  const named = new Set(
    String(incoming.connection ?? "")
      .split(",")
      .map((t) => normalizeHeaderName(t.trim()))
      .filter(Boolean),
  );
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(incoming)) {
    if (v === undefined || k.includes("_") || HOP_BY_HOP.has(k)) continue;
    const name = normalizeHeaderName(k);
    if (named.has(name) || CLIENT_FORBIDDEN_NAMES.has(name) || CLIENT_FORBIDDEN_PREFIXES.some((p) => name.startsWith(p))) continue;
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
