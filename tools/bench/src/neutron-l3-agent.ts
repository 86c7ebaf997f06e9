/**
 * Debian's `neutron-l3-agent` (Neutron 21, Zed) for the RPC bench, as root without sudo or rootwrap,
 * everything in the bench's temporary directory:
 *
 * - `[AGENT] root_helper` empty: the commands Neutron runs "as root" (`ip netns exec`, `sysctl`,
 *   `arping`, `iptables-save`/`-restore`, `conntrack`) run as they are; no `root_helper_daemon`.
 * - oslo.privsep (how Neutron 21 does namespaces, links, addresses, routes through pyroute2) would start
 *   its daemons with `sudo privsep-helper`: each context's `helper_command` says `privsep-helper`
 *   directly (`[privsep]`, `[privsep_namespace]`, `[privsep_link]`, `[privsep_conntrack]`, ...).
 * - `state_path`, `[oslo_concurrency] lock_path` in the temporary directory; no metadata proxy
 *   (`enable_metadata_proxy = false`, as our agent runs); `interface_driver = linuxbridge`;
 *   `periodic_fuzzy_delay = 0`, so the first full sync is not delayed by up to 5 s at random.
 *
 * It runs in a network namespace of the bench's own (its veth ends stay there), with a /run/netns of
 * its own (`src/python/private_netns_dir.py`): after its first full sync Neutron's agent deletes every
 * `qrouter-*` namespace on the host that is not one of its routers, and on a shared machine those
 * may be someone else's. Its namespaces appear on the host in `<dir>/netns` (a shared mount), where
 * the bench reads them (`nsenter --net=<dir>/netns/qrouter-<id>`) and unmounts them at the end. Not
 * `ip netns exec`: that gives the process a mount namespace whose mounts do not propagate back, so
 * the namespaces Neutron creates would be invisible from the host. The broker is reached through
 * `broker-relay-main.js` on that namespace's loopback.
 */
import { execFile } from "node:child_process";
import { appendFileSync, mkdirSync, writeFileSync } from "node:fs";
import type { Server } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { Backend } from "@chainwarden/core";
import { BenchProcess, pidsWith } from "./bench-process.js";
import { relayUnixToTcp } from "./broker-relay.js";

const NSENTER = "/usr/bin/nsenter";
const PYTHON = "/usr/bin/python3";
// Beside the compiled file and the source alike: dist/ and src/ are siblings.
const PRIVATE_NETNS_DIR = fileURLToPath(new URL("../src/python/private_netns_dir.py", import.meta.url));
const run = promisify(execFile);
const AGENT = "/usr/bin/neutron-l3-agent";
const RELAY_MAIN = fileURLToPath(new URL("./broker-relay-main.js", import.meta.url));
/** The broker's port on the agent namespace's loopback. */
const RELAY_PORT = 5672;
const PRIVSEP_SECTIONS = ["privsep", "privsep_namespace", "privsep_link", "privsep_conntrack", "privsep_dhcp_release", "privsep_ovs_vsctl"];

export interface NeutronL3AgentOptions {
  host: string;
  /** The iptables the host uses (`iptables-<backend>-save` reads the agent's namespaces). */
  backend: Backend;
  /** The broker's AMQP port on the host's 127.0.0.1. */
  brokerPort: number;
  /** A directory of the bench's own (config, state, locks, the relay's socket). */
  dir: string;
  /** The network namespace the agent runs in (the bench made it). */
  namespace: string;
  reportInterval: number;
  /**
   * `thread_pool_size` of every privsep context (oslo's default: the number of CPUs). Neutron sends
   * each new address 3 × 2 gratuitous ARPs, each an `arping` of one second run in the privsep
   * daemon's pool, which every other privileged call (links, addresses, iptables) queues behind.
   */
  privsepThreads?: number;
  debug?: boolean;
  /** Each end of an iptables apply: the namespace, and when (epoch ms, the log line's own time). */
  onApplied?: (namespace: string, time: number) => void;
  /** Also write every output line here. */
  logFile?: string;
}

/** A log line's time stamp (UTC, see `TZ` below) and the rest. */
const LINE = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d\.\d{3}) \d+ (\w+) (\S+) (.*)$/;
/** The end of a router's processing. */
const FINISHED = /Finished a router update for ([0-9a-f-]{36}),/;
/** The end of an iptables apply in a namespace: `IptablesManager.apply` holds this lock around it. */
const APPLIED = /Releasing lock "iptables-(qrouter-[0-9a-f-]{36})"/;
/**
 * oslo.log's default levels (`DEFAULT_LOG_LEVELS` of oslo.log 5) and lockutils at debug: its
 * "Releasing lock" lines are the only ones that say when an iptables apply ended, and in which
 * namespace, without the cost of debug logs everywhere.
 */
const LOG_LEVELS = [
  "amqp=WARN", "amqplib=WARN", "boto=WARN", "qpid=WARN", "sqlalchemy=WARN", "suds=INFO", "oslo.messaging=INFO", "oslo_messaging=INFO",
  "iso8601=WARN", "requests.packages.urllib3.connectionpool=WARN", "urllib3.connectionpool=WARN", "websocket=WARN",
  "requests.packages.urllib3.util.retry=WARN", "urllib3.util.retry=WARN", "keystonemiddleware=WARN", "routes.middleware=WARN",
  "stevedore=WARN", "taskflow=WARN", "keystoneauth=WARN", "oslo.cache=INFO", "oslo_policy=INFO", "dogpile.core.dogpile=INFO",
  "oslo_concurrency.lockutils=DEBUG",
];

export class NeutronL3Agent {
  /** Router id → when its last update finished (epoch ms). */
  readonly finished = new Map<string, number>();
  /** ERROR and CRITICAL log lines, and tracebacks' last lines. */
  readonly errors: string[] = [];
  /** Epoch ms at spawn. */
  startedAt = 0;
  private process: BenchProcess | undefined;
  private relay: BenchProcess | undefined;
  private socketServer: Server | undefined;
  private mounted = false;
  /** Where the agent's namespaces appear on the host (its /run/netns). */
  readonly netnsDir: string;

  constructor(private readonly options: NeutronL3AgentOptions) {
    this.netnsDir = join(options.dir, "netns");
  }

  /** The nat table of one of its namespaces, as `iptables-save` prints it. */
  async nat(namespace: string): Promise<string> {
    const { stdout } = await run(NSENTER, [`--net=${join(this.netnsDir, namespace)}`, `iptables-${this.options.backend}-save`, "-t", "nat"], { maxBuffer: 64 << 20 });
    return stdout;
  }

  get pid(): number {
    return this.process!.pid;
  }

  /** Its privsep daemons: started by it, they daemonize and leave its process tree. */
  privsepPids(): number[] {
    return pidsWith(`\0--config-file\0${join(this.options.dir, "l3_agent.ini")}\0--privsep_context\0`);
  }

  assertRunning(): void {
    this.process?.assertRunning();
    this.relay?.assertRunning();
  }

  describe(): string {
    return this.process?.describe() ?? "";
  }

  /** Writes the config and starts the relay and the agent. */
  async start(): Promise<void> {
    const { dir, namespace, host } = this.options;
    const socketPath = join(dir, "amqp.sock");
    this.socketServer = await relayUnixToTcp(socketPath, this.options.brokerPort);
    let listening!: () => void;
    const ready = new Promise<void>((resolve) => (listening = resolve));
    this.relay = new BenchProcess("broker relay", NSENTER, [`--net=/run/netns/${namespace}`, process.execPath, RELAY_MAIN, String(RELAY_PORT), socketPath], {
      onLine: (line) => line === "listening" && listening(),
    });
    await Promise.race([ready, this.relay.exited.then(() => this.relay!.assertRunning())]);

    const conf = join(dir, "l3_agent.ini");
    const lines = [
      "# written by the chainwarden RPC bench",
      "[DEFAULT]",
      `host = ${host}`,
      `transport_url = rabbit://guest:guest@127.0.0.1:${RELAY_PORT}/`,
      "control_exchange = neutron",
      `state_path = ${join(dir, "state")}`,
      "interface_driver = linuxbridge",
      "enable_metadata_proxy = false",
      "periodic_fuzzy_delay = 0",
      `debug = ${this.options.debug ? "true" : "false"}`,
      `default_log_levels = ${LOG_LEVELS.join(",")}`,
      "[AGENT]",
      "root_helper =",
      `report_interval = ${this.options.reportInterval}`,
      "[oslo_concurrency]",
      `lock_path = ${join(dir, "lock")}`,
      ...PRIVSEP_SECTIONS.flatMap((s) => [
        `[${s}]`,
        `helper_command = privsep-helper --config-file ${conf}`,
        ...(this.options.privsepThreads ? [`thread_pool_size = ${this.options.privsepThreads}`] : []),
      ]),
      "",
    ];
    writeFileSync(conf, lines.join("\n"));
    mkdirSync(this.netnsDir);
    await run("mount", ["--bind", this.netnsDir, this.netnsDir]);
    this.mounted = true;
    await run("mount", ["--make-shared", this.netnsDir]);
    this.startedAt = Date.now();
    this.process = new BenchProcess("neutron-l3-agent", PYTHON, [PRIVATE_NETNS_DIR, `/run/netns/${namespace}`, this.netnsDir, AGENT, "--config-file", conf], {
      // Log time stamps in UTC, so they read as epoch ms without a time zone.
      env: { ...process.env, TZ: "UTC" },
      onLine: (line) => this.onLine(line),
    });
  }

  private onLine(line: string): void {
    if (this.options.logFile) appendFileSync(this.options.logFile, `${line}\n`);
    const m = LINE.exec(line);
    if (!m) return;
    const time = Date.parse(`${m[1]}T${m[2]}Z`);
    const [, , , level, , message] = m as unknown as [string, string, string, string, string, string];
    const applied = APPLIED.exec(message);
    if (applied) this.options.onApplied?.(applied[1]!, time);
    const finished = FINISHED.exec(message);
    if (finished) this.finished.set(finished[1]!, time);
    if ((level === "ERROR" || level === "CRITICAL") && this.errors.length < 50) this.errors.push(line.slice(0, 600));
  }

  /** Stops the agent and the relay, and unmounts its namespaces (the kernel frees them). */
  async stop(): Promise<void> {
    await this.process?.stop();
    await this.relay?.stop();
    await new Promise<void>((resolve) => (this.socketServer ? this.socketServer.close(() => resolve()) : resolve()));
    if (this.mounted) {
      await run("umount", ["--recursive", this.netnsDir]);
      this.mounted = false;
    }
  }
}
