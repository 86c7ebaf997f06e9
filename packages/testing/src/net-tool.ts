import { fileURLToPath } from "node:url";

/**
 * The absolute path of `net-tool.mjs`, the traffic helper datapath tests run inside their
 * namespaces as `ip netns exec NS node <path> MODE ...` (argument arrays, no shell). Modes:
 * `http-server PORT` (answers "remote=<client address>"), `echo-server PORT`, `probe HOST PORT`
 * (prints "ok" or "fail") and `stream HOST PORT` (prints "echo" per line echoed back). The servers
 * and `stream` exit when their stdin closes.
 */
export function netToolPath(): string {
  return fileURLToPath(new URL("../bin/net-tool.mjs", import.meta.url));
}
