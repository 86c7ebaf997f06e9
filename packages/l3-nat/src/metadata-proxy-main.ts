/**
 * The metadata proxy process, one per router, a daemon as Neutron's haproxy is:
 *
 *   ip netns exec <router namespace> node metadata-proxy-main.js --router-id ID --namespace NS
 *     --port 9697 --upstream /var/lib/neutron/metadata_proxy --pid-file F [--log-file L]
 *
 * `MetadataProxyProcess` starts it in a session of its own with stdin from /dev/null and stdout and
 * stderr appended to its log file, so it outlives the agent (an `apply --once`, a restart); a later
 * agent finds it by its pid file and adopts it.
 *
 * - Logs: JSON lines on stdout, pino's shape (`level`, `time`, `pid`, `router`, `namespace`, `msg`);
 *   with `--log-file` (the file stdout goes to) the file is copied to `<file>.1` and emptied once it
 *   passes 1 MiB, so a guest that makes it log on every request fills at most 2 MiB.
 * - Pid file: written (atomically) once the proxy listens, so a pid file naming a live proxy means
 *   that proxy accepted connections; removed when the proxy exits on its own accord.
 * - Namespace: every second the proxy compares its own network namespace with
 *   `/run/netns/<namespace>` (device and inode). When the router's namespace was deleted (or deleted
 *   and made again) it exits: a process in a deleted namespace keeps it alive with its devices, and
 *   the agent could never plug the router's ports again (`RTNETLINK answers: File exists`).
 * - Exit: SIGTERM or SIGINT (requests in flight get up to a second), or the namespace going.
 */
import { copyFileSync, fstatSync, ftruncateSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { createMetadataProxyServer, formatMetadataUpstream, parseMetadataUpstream, type MetadataUpstream } from "./metadata-proxy.js";

const LOG_ROTATE_BYTES = 1024 * 1024;
const NAMESPACE_CHECK_MS = 1_000;
const LEVELS = { info: 30, warn: 40, error: 50, fatal: 60 } as const;

const bindings: { router?: string; namespace?: string } = {};
let logFile: string | undefined;
let logBytes = 0;

function log(level: keyof typeof LEVELS, msg: string, fields: Record<string, unknown> = {}): void {
  const line = `${JSON.stringify({ level: LEVELS[level], time: Date.now(), pid: process.pid, ...bindings, ...fields, msg })}\n`;
  process.stdout.write(line);
  logBytes += Buffer.byteLength(line);
  if (logFile !== undefined && logBytes > LOG_ROTATE_BYTES) rotate(logFile);
}

/** Keeps one old generation. stdout and stderr share one open file (O_APPEND): emptying it is enough. */
function rotate(path: string): void {
  try {
    copyFileSync(path, `${path}.1`);
    ftruncateSync(1, 0);
    logBytes = 0;
  } catch {
    logFile = undefined;
  }
}

function fatal(message: string): never {
  log("fatal", "metadata proxy cannot run", { error: message });
  process.exit(2);
}

const { values } = (() => {
  try {
    return parseArgs({
      options: {
        "router-id": { type: "string" },
        namespace: { type: "string" },
        port: { type: "string" },
        upstream: { type: "string" },
        host: { type: "string" },
        "pid-file": { type: "string" },
        "log-file": { type: "string" },
      },
      strict: true,
    });
  } catch (err) {
    return fatal(err instanceof Error ? err.message : String(err));
  }
})();

const routerId = values["router-id"] ?? fatal("--router-id is required");
bindings.router = routerId;
const namespace = values.namespace;
if (namespace !== undefined) bindings.namespace = namespace;
// Rotation only when stdout really is that file (the agent's start); run by hand, stdout is the terminal.
if (values["log-file"] !== undefined) {
  try {
    const out = fstatSync(1);
    const file = statSync(values["log-file"]);
    if (out.dev === file.dev && out.ino === file.ino) {
      logFile = values["log-file"];
      logBytes = out.size;
    }
  } catch {
    // No rotation.
  }
}
const port = Number(values.port ?? fatal("--port is required"));
if (!Number.isInteger(port) || port < 1 || port > 65535) fatal(`--port ${values.port} is not a port number`);
let upstream: MetadataUpstream;
try {
  upstream = parseMetadataUpstream(values.upstream ?? fatal("--upstream is required"));
} catch (err) {
  fatal(err instanceof Error ? err.message : String(err));
}
const pidFile = values["pid-file"];

/** Our namespace against the router's: "gone" when /run/netns/<namespace> is missing or another one. */
function namespaceState(): "same" | "gone" {
  try {
    const own = statSync("/proc/self/ns/net");
    const router = statSync(`/run/netns/${namespace}`);
    return own.dev === router.dev && own.ino === router.ino ? "same" : "gone";
  } catch {
    return "gone";
  }
}
if (namespace !== undefined && namespaceState() !== "same") fatal(`not running in network namespace ${namespace}`);

const server = createMetadataProxyServer({
  routerId,
  upstream,
  onError: (error, request) =>
    log("warn", "metadata upstream request failed", { error: error.message, code: (error as NodeJS.ErrnoException).code, upstream: formatMetadataUpstream(upstream), method: request.method, url: request.url }),
  onRejected: (reason, request) => log("warn", "metadata request refused", { reason, method: request.method, url: request.url }),
});
server.on("clientError", (err: NodeJS.ErrnoException, socket) => {
  // Malformed requests and slow clients (header/request timeouts) end here; Node's default answers them.
  if (err.code !== "ECONNRESET") log("info", "metadata client error", { error: err.message, code: err.code });
  if (socket.writable) socket.end(err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n" : "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
  else socket.destroy();
});

function writePidFile(path: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${process.pid}\n`, { mode: 0o644 });
  renameSync(tmp, path);
}

function removePidFile(): void {
  if (pidFile === undefined) return;
  try {
    if (Number(readFileSync(pidFile, "utf8").trim()) === process.pid) unlinkSync(pidFile);
  } catch {
    // Gone already, or another proxy's by now.
  }
}

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
    if (pidFile !== undefined) {
      try {
        writePidFile(pidFile);
      } catch (err) {
        fatal(`cannot write pid file ${pidFile}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    log("info", "metadata proxy listening", { host, port, upstream: formatMetadataUpstream(upstream), pidFile });
  });
}
listen(0);

let closing = false;
function shutdown(reason: string): void {
  if (closing) return;
  closing = true;
  log("info", "metadata proxy exiting", { reason });
  removePidFile();
  // Idle keep-alive connections go now; a request in flight gets up to a second.
  server.close(() => process.exit(0));
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 1_000).unref();
}
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));
// No terminal to hang up; a stray SIGHUP must not end the proxy.
process.on("SIGHUP", () => undefined);

if (namespace !== undefined) {
  setInterval(() => {
    if (namespaceState() === "same") return;
    log("warn", "router namespace is gone; metadata proxy exits", { netnsPath: `/run/netns/${namespace}` });
    // No grace: whoever is connected sits in a namespace nobody can reach any more.
    removePidFile();
    process.exit(0);
  }, NAMESPACE_CHECK_MS).unref();
}
