import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "./free-port.js";
import { OsloPeer, OsloPeerError } from "./oslo-peer.js";
import { PostgresCluster } from "./postgres-cluster.js";

const SERVER = "/usr/bin/neutron-server";
const PYTHON = "/usr/bin/python3";
const DB_MANAGE = "/usr/bin/neutron-db-manage";
// Beside the compiled file and the source alike: dist/ and src/ are siblings.
const NEUTRON_SCHEMA = fileURLToPath(new URL("../src/python/neutron_schema.py", import.meta.url));
const EXEC_WITH_PARENT = fileURLToPath(new URL("../src/python/exec_with_parent.py", import.meta.url));

/** The physical network of the flat and VLAN type drivers: the one an external network is on. */
export const LAB_PHYSICAL_NETWORK = "physnet-ext";

/** A config file as sections of keys; a value `null` removes a key the lab would write. */
export type NeutronConfig = Record<string, Record<string, string | number | boolean | null>>;

export interface NeutronServerLabOptions {
  /** oslo.messaging's URL of the broker, e.g. `RabbitMqLab.transportUrl`. */
  transportUrl: string;
  /**
   * Seconds without a report before the server shows an agent dead (`agent_down_time`, Neutron's
   * default 75). A test that wants an agent dead quickly sets a few seconds; the agents it starts must
   * then report at least twice as often (`report_interval`), or they flap.
   */
  agentDownTime?: number;
  /** DEBUG lines in the server's log (Neutron's own: whom it notifies of what, the sync data it returns, ...). Default true. */
  debug?: boolean;
  /** Merged over the lab's neutron.conf, section by section (e.g. `{ DEFAULT: { router_auto_schedule: false } }`). */
  config?: NeutronConfig;
  /** How long the schema, the API and the RPC consumers may take before the start counts as failed. */
  startTimeoutMs?: number;
}

/**
 * A real neutron-server for one test file: Debian's python3-neutron (Zed) as a child process in its
 * own process group, with every file (config, state and lock paths, log, and the PostgreSQL cluster of
 * its database, see {@link PostgresCluster}) in its own temporary directory, the API on a free
 * loopback port without authentication (`auth_strategy = noauth`: every request is an admin of
 * project `fake_project_id`), ML2 with the Linux bridge mechanism driver (flat, VLAN and VXLAN;
 * physical network {@link LAB_PHYSICAL_NETWORK}) and the router service plugin, on the broker it is
 * given. `start()` resolves once the API answers and the RPC workers
 * consume `q-plugin`, `q-l3-plugin` and `q-reports-plugin`, so an agent's first message is not lost.
 * `stop()` kills the group and removes the directory.
 */
export class NeutronServerLab {
  readonly dir: string;
  port = 0;
  readonly physicalNetwork = LAB_PHYSICAL_NETWORK;
  /** How long each step of the start took, in ms (schema, API, RPC), for a test's log. */
  readonly timings: Record<string, number> = {};
  private child: ChildProcess | undefined;
  private database: Promise<PostgresCluster> | undefined;
  private exit: string | undefined;
  private output = "";
  // Ends a schema script still waiting for a cluster that failed.
  private readonly aborter = new AbortController();

  private constructor(private readonly options: NeutronServerLabOptions) {
    this.dir = mkdtempSync(join(tmpdir(), "cw-neutron-"));
    // The cluster's system user must reach its directory inside this one (mkdtemp makes it 0700).
    chmodSync(this.dir, 0o711);
  }

  /** Writes the config, creates the database, starts the server and waits for its API and RPC. */
  static async start(options: NeutronServerLabOptions): Promise<NeutronServerLab> {
    const lab = new NeutronServerLab(options);
    let peer: Promise<OsloPeer> | undefined;
    try {
      lab.port = await freePort();
      // Python's imports take seconds: the peer that checks RPC at the end starts now.
      peer = OsloPeer.start(options.transportUrl);
      peer.catch(() => undefined);
      const deadline = Date.now() + (options.startTimeoutMs ?? 90_000);
      let t = Date.now();
      // The cluster boots while Python imports Neutron for the schema (seconds each); the schema
      // script waits for the cluster's socket.
      lab.database = PostgresCluster.start(join(lab.dir, "postgres"), deadline);
      lab.database.catch(() => undefined);
      lab.writeConfig();
      await Promise.all([lab.database, lab.createDatabase(deadline)]);
      lab.timings.database = Date.now() - t;
      t = Date.now();
      lab.spawnServer();
      // neutron-server never reads the migration stamp: it is written while the server boots.
      const stamp = lab.stampDatabase(deadline);
      stamp.catch(() => undefined);
      await lab.waitForApi(deadline);
      await stamp;
      lab.timings.api = Date.now() - t;
      t = Date.now();
      await lab.waitForRpc(await peer, deadline);
      lab.timings.rpc = Date.now() - t;
      return lab;
    } catch (error) {
      const log = lab.logTail();
      await lab.stop();
      throw new Error(`neutron-server did not start (in ${lab.dir}, now removed): ${(error as Error).message}\n${log}`, { cause: error });
    } finally {
      await peer?.then((p) => p.close()).catch(() => undefined);
    }
  }

  /** `http://127.0.0.1:<port>` (the API is under `/v2.0`). */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get configFile(): string {
    return join(this.dir, "neutron.conf");
  }

  get logFile(): string {
    return join(this.dir, "server.log");
  }

  /** The server's whole log. */
  log(): string {
    try {
      return readFileSync(this.logFile, "utf8");
    } catch {
      return this.output;
    }
  }

  /**
   * For an error message: the log's last ERROR and CRITICAL lines (the cause is often not among the
   * last lines of a DEBUG log), then its last lines, and what the server wrote before its log was open.
   */
  logTail(lines = 25): string {
    const log = safeRead(this.logFile).split("\n");
    const errors = log.filter((line) => / (ERROR|CRITICAL) /.test(line)).slice(-15);
    return [
      ...(errors.length ? ["--- errors ---", ...errors] : []),
      "--- last lines ---",
      ...log.slice(-lines),
      ...(this.output ? ["--- output ---", this.output] : []),
    ].join("\n");
  }

  private writeConfig(): void {
    const dir = this.dir;
    for (const sub of ["state", "lock", "conf.d"]) mkdirSync(join(dir, sub));
    const lab: NeutronConfig = {
      DEFAULT: {
        host: "neutron-server-lab",
        bind_host: "127.0.0.1",
        bind_port: this.port,
        auth_strategy: "noauth",
        core_plugin: "ml2",
        // FWaaS would add `firewall_v2` here and a [service_providers] driver; neutron-fwaas is not
        // packaged in Debian 12, so a lab with FWaaS would need it from elsewhere.
        service_plugins: "router",
        transport_url: this.options.transportUrl,
        // The API in the main process. Neutron forks at least one RPC worker whatever rpc_workers
        // says (it consumes q-plugin and q-l3-plugin, and with rpc_state_report_workers = 0 the state
        // reports too, instead of a third process); the router plugin adds a worker of its own that
        // consumes q-l3-plugin as well.
        api_workers: 0,
        rpc_workers: 1,
        rpc_state_report_workers: 0,
        agent_down_time: this.options.agentDownTime ?? 75,
        state_path: join(dir, "state"),
        api_paste_config: "/etc/neutron/api-paste.ini",
        log_file: join(dir, "server.log"),
        use_stderr: false,
        debug: this.options.debug ?? true,
        // No Nova here: a port's change must not wait for one.
        notify_nova_on_port_status_changes: false,
        notify_nova_on_port_data_changes: false,
      },
      database: { connection: PostgresCluster.url(join(dir, "postgres")) },
      oslo_concurrency: { lock_path: join(dir, "lock") },
      // Zed refuses the Linux bridge mechanism driver without it (the server exits at start).
      experimental: { linuxbridge: true },
      ml2: {
        type_drivers: "flat,vlan,vxlan",
        tenant_network_types: "vxlan",
        mechanism_drivers: "linuxbridge",
        extension_drivers: "port_security",
      },
      ml2_type_flat: { flat_networks: LAB_PHYSICAL_NETWORK },
      ml2_type_vlan: { network_vlan_ranges: LAB_PHYSICAL_NETWORK },
      ml2_type_vxlan: { vni_ranges: "1000:1999" },
      securitygroup: { enable_security_group: true },
    };
    writeFileSync(this.configFile, renderIni(mergeConfig(lab, this.options.config ?? {})));
  }

  // The options every Neutron command of the lab gets: an empty --config-dir replaces oslo.config's
  // default ones (/etc/neutron/neutron.conf.d and the like), so nothing of the host's is read.
  private configArgs(): string[] {
    return ["--config-file", this.configFile, "--config-dir", join(this.dir, "conf.d")];
  }

  private async createDatabase(deadline: number): Promise<void> {
    const url = PostgresCluster.url(join(this.dir, "postgres"));
    const result = await run(PYTHON, [NEUTRON_SCHEMA, url], this.dir, deadline - Date.now(), this.aborter.signal);
    if (result.code !== 0) throw new Error(`creating the schema failed (${result.code}):\n${result.output.slice(-3000)}`);
  }

  // `upgrade heads` would run every migration; the tables are already those of the heads.
  private async stampDatabase(deadline: number): Promise<void> {
    const result = await run(DB_MANAGE, [...this.configArgs(), "stamp", "heads"], this.dir, deadline - Date.now(), this.aborter.signal);
    if (result.code !== 0) throw new Error(`neutron-db-manage stamp heads failed (${result.code}):\n${result.output.slice(-3000)}`);
  }

  private spawnServer(): void {
    // Its own process group: stop() ends the API process and the workers it forked at once.
    // Killed with the test runner too, should it die before its afterAll (exec_with_parent.py).
    const child = spawn(PYTHON, [EXEC_WITH_PARENT, SERVER, ...this.configArgs()], { cwd: this.dir, detached: true, stdio: ["ignore", "pipe", "pipe"], env: serverEnv(this.dir) });
    this.child = child;
    const keep = (d: string) => (this.output = (this.output + d).slice(-4000));
    child.stdout!.setEncoding("utf8").on("data", keep);
    child.stderr!.setEncoding("utf8").on("data", keep);
    child.on("exit", (code, signal) => (this.exit = `neutron-server exited (${signal ?? code})`));
    child.on("error", (e) => (this.exit = `neutron-server could not be run: ${e.message}`));
  }

  private async waitForApi(deadline: number): Promise<void> {
    for (;;) {
      if (this.exit) throw new Error(this.exit);
      try {
        const response = await fetch(`${this.url}/v2.0/networks?limit=1`, { signal: AbortSignal.timeout(2000) });
        await response.arrayBuffer();
        if (response.ok) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`the API did not answer on ${this.url}`);
      await sleep(250);
    }
  }

  // The API listens before the RPC workers are forked; a message sent to a queue nobody declared yet
  // is dropped, so the server counts as up only once each topic answers a call that changes nothing.
  private async waitForRpc(peer: OsloPeer, deadline: number): Promise<void> {
    const probes = [
      { topic: "q-reports-plugin", method: "has_alive_neutron_server", version: "1.2", args: {} },
      { topic: "q-plugin", method: "security_group_info_for_devices", version: "1.3", args: { devices: [] } },
      { topic: "q-l3-plugin", method: "get_service_plugin_list", version: "1.3", args: {} },
    ];
    for (const probe of probes) {
      for (;;) {
        if (this.exit) throw new Error(this.exit);
        try {
          await peer.call({ ...probe, timeout: 2 });
          break;
        } catch (error) {
          // An error the server sent back still proves that it consumes the topic.
          if (error instanceof OsloPeerError && error.type === "RemoteError") break;
          if (Date.now() > deadline) throw new Error(`no RPC answer on ${probe.topic}: ${(error as Error).message}`);
          await sleep(200);
        }
      }
    }
  }

  /** Kills the server's process group and removes the directory. Safe to call twice. */
  async stop(): Promise<void> {
    this.aborter.abort();
    const child = this.child;
    this.child = undefined;
    if (child?.pid) {
      const pgid = child.pid;
      const exited = child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise<void>((resolve) => child.once("exit", () => resolve()));
      signalGroup(pgid, "SIGTERM");
      // The workers get a moment to close their broker connections; nothing here needs keeping.
      await Promise.race([exited, sleep(3000)]);
      signalGroup(pgid, "SIGKILL");
      await exited;
      // Forked workers outlive the parent by a moment; bounded, because a reaped-late zombie still
      // answers signal 0.
      const until = Date.now() + 5000;
      while (groupAlive(pgid) && Date.now() < until) await sleep(50);
    }
    // After the server: its connections end first, and PostgreSQL's fast shutdown is quick.
    const database = this.database;
    this.database = undefined;
    await database?.then((cluster) => cluster.stop()).catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function serverEnv(dir: string): NodeJS.ProcessEnv {
  return { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", HOME: dir, LC_ALL: "C.UTF-8" };
}

function mergeConfig(base: NeutronConfig, over: NeutronConfig): NeutronConfig {
  const merged: NeutronConfig = {};
  for (const section of new Set([...Object.keys(base), ...Object.keys(over)])) {
    merged[section] = { ...base[section], ...over[section] };
  }
  return merged;
}

function renderIni(config: NeutronConfig): string {
  const out: string[] = [];
  for (const [section, keys] of Object.entries(config)) {
    out.push(`[${section}]`);
    for (const [key, value] of Object.entries(keys)) {
      if (value !== null) out.push(`${key} = ${String(value)}`);
    }
    out.push("");
  }
  return out.join("\n");
}

function run(command: string, args: string[], cwd: string, timeoutMs: number, signal: AbortSignal): Promise<{ code: number | string; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd, env: serverEnv(cwd), stdio: ["ignore", "pipe", "pipe"], timeout: Math.max(timeoutMs, 1000), killSignal: "SIGKILL", signal });
    let output = "";
    child.stdout!.setEncoding("utf8").on("data", (d: string) => (output += d));
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (output += d));
    child.on("error", (e) => resolve({ code: e.message, output }));
    child.on("close", (code, signal) => resolve({ code: code ?? signal ?? "?", output }));
  });
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // already gone
  }
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

function safeRead(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
