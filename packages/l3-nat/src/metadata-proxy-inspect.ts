import { readFileSync, statSync } from "node:fs";
import { basename } from "node:path";

/** The file name of the proxy's entry point: how a process is recognised as a metadata proxy of ours. */
export const METADATA_PROXY_SCRIPT_NAME = "metadata-proxy-main.js";

/** What a metadata proxy's command line says (`node <script> --router-id … --port … …`). */
export interface ProxyCommandLine {
  readonly script: string;
  readonly routerId: string | undefined;
  readonly namespace: string | undefined;
  readonly port: string | undefined;
  readonly upstream: string | undefined;
  readonly pidFile: string | undefined;
}

/** A live process's namespace compared with the router's: the same, another one, or the router's is gone. */
export type NetnsMatch = "same" | "other" | "gone";

/** One live process that is a metadata proxy of ours, as `/proc` shows it. */
export interface ProxyProcessInfo {
  readonly pid: number;
  readonly commandLine: ProxyCommandLine;
  /** Its network namespace against `/run/netns/<the router's namespace>`. */
  readonly netns: NetnsMatch;
}

/**
 * Looks at process `pid` through `/proc`: undefined unless it is alive (a zombie is not) and runs
 * our proxy script (by file name: a proxy of an older install is still ours to stop). `netns`
 * compares its `/proc/<pid>/ns/net` with `/run/netns/<namespace>` by device and inode, which is how
 * one tells the router's namespace from a deleted one of the same name.
 */
export function inspectProxyProcess(pid: number, namespace: string): ProxyProcessInfo | undefined {
  if (!processAlive(pid)) return undefined;
  const commandLine = parseProxyCommandLine(readCommandLine(pid));
  if (!commandLine) return undefined;
  const netns = compareNetns(pid, namespace);
  // It may have exited between the reads: then /proc/<pid>/ns/net was gone.
  if (netns === undefined) return undefined;
  return { pid, commandLine, netns };
}

/**
 * Whether process `pid` is the haproxy `neutron-l3-agent` runs as a router's metadata proxy
 * (`haproxy -f <state_path>/ns-metadata-proxy/<router id>.conf`, daemonized) and lives in the router's
 * namespace: what a neutron-l3-agent this agent replaces may leave behind.
 */
export function isNeutronHaproxy(pid: number, namespace: string, configFile: string): boolean {
  if (!processAlive(pid)) return false;
  const argv = readCommandLine(pid);
  const f = argv.indexOf("-f");
  if (basename(argv[0] ?? "") !== "haproxy" || f < 0 || argv[f + 1] !== configFile) return false;
  return compareNetns(pid, namespace) === "same";
}

/** True while the process exists and is not a zombie. */
export function processAlive(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return false;
  }
  // `pid (comm) S ...`: comm may hold spaces and parentheses, the state follows the last `)`.
  const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  return state !== "Z" && state !== "X" && state !== "x";
}

function readCommandLine(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").slice(0, -1);
  } catch {
    return [];
  }
}

/** `[node, script, --flag, value, ...]` → the flags, or undefined when `script` is not our proxy. */
export function parseProxyCommandLine(argv: readonly string[]): ProxyCommandLine | undefined {
  const script = argv[1];
  if (script === undefined || basename(script) !== METADATA_PROXY_SCRIPT_NAME) return undefined;
  const flag = (name: string) => {
    const i = argv.indexOf(`--${name}`, 2);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  return { script, routerId: flag("router-id"), namespace: flag("namespace"), port: flag("port"), upstream: flag("upstream"), pidFile: flag("pid-file") };
}

function compareNetns(pid: number, namespace: string): NetnsMatch | undefined {
  let own;
  try {
    own = statSync(`/proc/${pid}/ns/net`);
  } catch {
    return undefined;
  }
  let router;
  try {
    router = statSync(`/run/netns/${namespace}`);
  } catch {
    return "gone";
  }
  return own.dev === router.dev && own.ino === router.ino ? "same" : "other";
}

/** The pid a pid file names, or undefined (no file, or not a pid). */
export function readPidFile(path: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
  const pid = Number(text.trim());
  return Number.isInteger(pid) && pid > 1 ? pid : undefined;
}
