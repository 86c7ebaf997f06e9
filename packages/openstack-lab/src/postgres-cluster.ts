import { spawn, type ChildProcess } from "node:child_process";
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const PYTHON = "/usr/bin/python3";
const EXEC_WITH_PARENT = fileURLToPath(new URL("../src/python/exec_with_parent.py", import.meta.url));
const USER = "neutron";

/**
 * A private PostgreSQL cluster for NeutronServerLab's database, in a directory of the lab: Debian's
 * postgresql (the newest /usr/lib/postgresql/<version>), reachable only through a Unix socket in that
 * directory (no TCP port), durability off. Root cannot run PostgreSQL, so as root the cluster runs as
 * the `postgres` system user. Why not SQLite: neutron-server's API process and its forked RPC worker
 * write the same file, and SQLite answers "database is locked" to a transaction that must wait for the
 * other process (a port update of sync_routers, a subnet create), so the lab's requests failed.
 */
export class PostgresCluster {
  private child: ChildProcess | undefined;
  private exit: string | undefined;
  private output = "";
  private readonly bin: string;
  private readonly owner: { uid: number; gid: number } | undefined;

  private constructor(readonly dir: string) {
    this.bin = postgresBin();
    this.owner = process.getuid?.() === 0 ? systemUser("postgres") : undefined;
  }

  /** SQLAlchemy's URL of the `postgres` database, as user `neutron`, of a cluster in `dir` (known before it starts). */
  static url(dir: string): string {
    return `postgresql+psycopg2://${USER}@/postgres?host=${dir}`;
  }

  /** Creates the cluster in `dir` (which must not exist) and starts it; resolves once it accepts connections. */
  static async start(dir: string, deadline: number): Promise<PostgresCluster> {
    const cluster = new PostgresCluster(dir);
    try {
      mkdirSync(dir);
      if (cluster.owner) chownSync(dir, cluster.owner.uid, cluster.owner.gid);
      await cluster.initdb(deadline);
      cluster.spawnPostgres();
      await cluster.waitReady(deadline);
      return cluster;
    } catch (error) {
      await cluster.stop();
      throw error;
    }
  }

  private spawnOptions() {
    return { cwd: this.dir, env: { PATH: "/usr/bin:/bin", LC_ALL: "C.UTF-8", HOME: this.dir }, ...(this.owner ?? {}) };
  }

  private initdb(deadline: number): Promise<void> {
    const args = ["-D", join(this.dir, "data"), "-A", "trust", "-U", USER, "-E", "UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions"];
    return new Promise((resolve, reject) => {
      const child = spawn(join(this.bin, "initdb"), args, { ...this.spawnOptions(), stdio: ["ignore", "pipe", "pipe"], timeout: Math.max(deadline - Date.now(), 1000), killSignal: "SIGKILL" });
      let output = "";
      child.stdout!.setEncoding("utf8").on("data", (d: string) => (output += d));
      child.stderr!.setEncoding("utf8").on("data", (d: string) => (output += d));
      child.on("error", (e) => reject(new Error(`initdb could not be run: ${e.message}`)));
      child.on("close", (code, signal) => (code === 0 ? resolve() : reject(new Error(`initdb failed (${signal ?? code}):\n${output.slice(-2000)}`))));
    });
  }

  private spawnPostgres(): void {
    const settings = {
      listen_addresses: "",
      unix_socket_directories: this.dir,
      // A test's database: nothing to keep after a crash.
      fsync: "off",
      synchronous_commit: "off",
      full_page_writes: "off",
      // Its dynamic shared memory in the data directory, not /dev/shm, so nothing outlives the directory.
      dynamic_shared_memory_type: "mmap",
      max_connections: "200",
    };
    const args = ["-D", join(this.dir, "data"), ...Object.entries(settings).flatMap(([key, value]) => ["-c", `${key}=${value}`])];
    // SIGINT is PostgreSQL's fast shutdown: it ends its backends and frees its shared memory.
    const child = spawn(PYTHON, [EXEC_WITH_PARENT, "--signal", "SIGINT", join(this.bin, "postgres"), ...args], {
      ...this.spawnOptions(),
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    const keep = (d: string) => (this.output = (this.output + d).slice(-4000));
    child.stdout!.setEncoding("utf8").on("data", keep);
    child.stderr!.setEncoding("utf8").on("data", keep);
    child.on("exit", (code, signal) => (this.exit = `postgres exited (${signal ?? code}):\n${this.output}`));
    child.on("error", (e) => (this.exit = `postgres could not be run: ${e.message}`));
  }

  // postmaster.pid's 8th line says "ready" once the cluster accepts connections.
  private async waitReady(deadline: number): Promise<void> {
    const pidFile = join(this.dir, "data", "postmaster.pid");
    for (;;) {
      if (this.exit) throw new Error(this.exit);
      if (existsSync(pidFile) && readFileSync(pidFile, "utf8").split("\n")[7]?.trim() === "ready") return;
      if (Date.now() > deadline) throw new Error(`postgres not ready:\n${this.output}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** A fast shutdown (SIGINT), then SIGKILL to the group if it takes more than 10 s. Safe to call twice. */
  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    signalGroup(child.pid, "SIGINT");
    const timer = setTimeout(() => signalGroup(child.pid!, "SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
    signalGroup(child.pid, "SIGKILL");
  }
}

function postgresBin(): string {
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root) ? readdirSync(root).filter((v) => existsSync(join(root, v, "bin", "postgres"))) : [];
  versions.sort((a, b) => Number(b) - Number(a));
  if (!versions[0]) throw new Error("NeutronServerLab needs PostgreSQL (Debian's postgresql package: /usr/lib/postgresql/<version>/bin/postgres)");
  return join(root, versions[0], "bin");
}

function systemUser(name: string): { uid: number; gid: number } {
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith(`${name}:`));
  if (!line) throw new Error(`no user ${name} (Debian's postgresql package creates it)`);
  const [, , uid, gid] = line.split(":");
  return { uid: Number(uid), gid: Number(gid) };
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // already gone
  }
}
