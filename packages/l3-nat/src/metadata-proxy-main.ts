/**
 * The metadata proxy process: `ip netns exec <router namespace> node metadata-proxy-main.js
 * --router-id ID --port 9697 --upstream /var/lib/neutron/metadata_proxy`. Started and stopped by
 * `MetadataProxyProcess` in the agent; see there for the lifecycle.
 *
 * Protocol with the agent: one JSON line on stdout once listening (`{"event":"listening",...}`),
 * JSON lines on stderr for problems. The process ends on SIGTERM, and also when its stdin reaches
 * end of file: the agent holds the other end of that pipe, so when the agent dies, however it dies,
 * the proxy goes with it and is never left behind.
 */
import { parseArgs } from "node:util";
import { createMetadataProxyServer, parseMetadataUpstream } from "./metadata-proxy.js";

function report(stream: NodeJS.WriteStream, fields: Record<string, unknown>): void {
  stream.write(`${JSON.stringify(fields)}\n`);
}

function fatal(message: string): never {
  report(process.stderr, { event: "fatal", message });
  process.exit(2);
}

const { values } = (() => {
  try {
    return parseArgs({
      options: {
        "router-id": { type: "string" },
        port: { type: "string" },
        upstream: { type: "string" },
        host: { type: "string" },
      },
      strict: true,
    });
  } catch (err) {
    return fatal(err instanceof Error ? err.message : String(err));
  }
})();

const routerId = values["router-id"] ?? fatal("--router-id is required");
const port = Number(values.port ?? fatal("--port is required"));
if (!Number.isInteger(port) || port < 1 || port > 65535) fatal(`--port ${values.port} is not a port number`);
let upstream;
try {
  upstream = parseMetadataUpstream(values.upstream ?? fatal("--upstream is required"));
} catch (err) {
  fatal(err instanceof Error ? err.message : String(err));
}

const server = createMetadataProxyServer({
  routerId,
  upstream,
  onError: (error, request) => report(process.stderr, { event: "upstream-error", message: error.message, method: request.method, url: request.url }),
});

// Both stacks on one socket (Neutron binds haproxy to `::` when IPv6 is on); IPv4 only where the
// namespace has IPv6 disabled.
const hosts = values.host !== undefined ? [values.host] : ["::", "0.0.0.0"];
function listen(i: number): void {
  const host = hosts[i]!;
  const onError = (err: NodeJS.ErrnoException) => {
    if (i + 1 < hosts.length && (err.code === "EAFNOSUPPORT" || err.code === "EADDRNOTAVAIL")) listen(i + 1);
    else fatal(`cannot listen on ${host}:${port}: ${err.message}`);
  };
  server.once("error", onError);
  server.listen({ host, port, ipv6Only: false }, () => {
    server.off("error", onError);
    report(process.stdout, { event: "listening", host, port, pid: process.pid, routerId });
  });
}
listen(0);

let closing = false;
function shutdown(): void {
  if (closing) return;
  closing = true;
  // Idle keep-alive connections go now; a request in flight gets up to a second.
  server.close(() => process.exit(0));
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 1_000).unref();
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
process.stdin.on("end", shutdown);
process.stdin.on("error", shutdown);
process.stdin.resume();
