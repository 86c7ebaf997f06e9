import { randomBytes } from "node:crypto";
import { closeSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { execa, type Options, type ResultPromise } from "execa";
import { BackendUnavailableError, CommandError, NamespaceGoneError, SaveError, XtablesLockError } from "./errors.js";
import { FifoInput } from "./fifo-input.js";
import { classifyRestoreFailure } from "./restore-failure.js";
import type { HostRunner } from "./host-runner.js";
import { SpawnHelper } from "./spawn-helper.js";
import { type AuxCommand, type ExecOptions, type ExecResult, PREPARED_INPUT, type PreparedCommand, type PrepareOptions, type WatchedCommand, type WatchOptions } from "./command-runner.js";
import { parseIptablesVersion, type Backend, type BackendChoice, type IptablesVersion, type RestoreOptions, type RestoreStream, type SaveOptions, type Target, type XtablesLockHold } from "./iptables-runner.js";
import type { SpawnedProcess, SpawnOptions } from "./process-runner.js";
import { lockDescriptor, takeXtablesLock, waitsForLock } from "./xtables-lock-hold.js";
import { XTABLES_LOCK_HELD } from "./xtables-lock-message.js";

/** Options of `ExecaRunner`; every one has a default, so `{}` gives the production runner. */
export interface ExecaRunnerOptions {
  /** Which iptables flavour to run (`auto`, the default: whichever `iptables` on the host is). */
  backend?: BackendChoice;
  /** Extra environment for every command (e.g. `XTABLES_LOCKFILE` in tests). */
  env?: Record<string, string>;
  /** Seconds iptables-restore waits for the xtables lock (`-w N`); default 5. */
  lockWaitSeconds?: number;
  /**
   * Start commands from a small helper process rather than from this one (default true): Node's
   * fork() costs grow with this process's memory, see `SpawnHelper`. `false` runs them directly.
   */
  spawnHelper?: boolean;
}

/**
 * Inputs larger than this go to a command directly: copying megabytes over the helper's IPC channel
 * costs more than the fork it saves (a cold restore of 100k rules is ~10 MB and takes seconds anyway).
 */
const HELPER_INPUT_LIMIT = 1 << 20;

const NAMESPACE_GONE = /Cannot open network namespace "[^"]*": No such file or directory/;

/**
 * The production runner of every tool (`HostRunner`: iptables, ip, ipset, conntrack, node) with
 * execa (argument arrays, never a shell), inside `ip netns exec NS` when a namespace is named.
 */
export class ExecaRunner implements HostRunner {
  private readonly choice: BackendChoice;
  private readonly env: Record<string, string>;
  private readonly lockWaitSeconds: number;
  private resolved: Promise<Backend> | undefined;
  private versionInfo: Promise<IptablesVersion> | undefined;
  private readonly helper: SpawnHelper | undefined;
  private holdWorks: Promise<boolean> | undefined;
  /** Why `holdXtablesLock` gives nothing with these tools (for the log). */
  holdRefusal: string | undefined;

  constructor(options: ExecaRunnerOptions = {}) {
    this.choice = options.backend ?? "auto";
    this.env = { LC_ALL: "C", FORCE_COLOR: "0", ...options.env };
    this.lockWaitSeconds = options.lockWaitSeconds ?? 5;
    this.helper = options.spawnHelper === false ? undefined : new SpawnHelper();
  }

  /** The helper process's pid while it runs (CPU accounting in benchmarks, tests). */
  get helperPid(): number | undefined {
    return this.helper?.pid;
  }

  /** Stops the spawn helper (it is restarted on the next command); it never holds the process open anyway. */
  async close(): Promise<void> {
    await this.helper?.stop();
  }

  backend(): Promise<Backend> {
    this.resolved ??= this.choice === "auto" ? this.detectBackend() : Promise.resolve(this.choice);
    return this.resolved;
  }

  async version(): Promise<IptablesVersion> {
    this.versionInfo ??= (async () => {
      const backend = await this.backend();
      const r = await this.run(undefined, [binary(backend, 4, "")], ["--version"]);
      if (r.exitCode !== 0) throw new BackendUnavailableError(`${binary(backend, 4, "")} --version failed: ${r.stderr.trim()}`);
      return parseIptablesVersion(r.stdout || r.stderr, backend);
    })();
    return this.versionInfo;
  }

  async save(target: Target, options: SaveOptions = {}): Promise<string> {
    const backend = await this.backend();
    const args: string[] = [];
    if (options.table) args.push("-t", options.table);
    if (options.counters) args.push("-c");
    // Directly: its output is the whole table (megabytes at scale), and saves are rare (adoption, verify).
    const r = await this.run(target.namespace, [binary(backend, target.family, "-save")], args, undefined, { direct: true });
    if (r.exitCode !== 0) {
      if (target.namespace !== undefined && NAMESPACE_GONE.test(r.stderr)) throw new NamespaceGoneError(target.namespace, r.stderr);
      throw new SaveError(r.stderr, { namespace: target.namespace });
    }
    return r.stdout;
  }

  async restore(target: Target, input: string, options: RestoreOptions = {}): Promise<void> {
    const [file, ...args] = await this.restoreCommand(target, options);
    // Under a hold, directly: the tool is handed the lock's descriptor (see `takeXtablesLock`).
    const lockFd = options.underHold && lockDescriptor(options.underHold);
    const r = await this.run(target.namespace, [file!], args, input, { env: this.restoreEnv(target, options), ...(lockFd !== undefined ? { direct: true, lockFd } : {}) });
    if (r.exitCode === 0) return;
    throw classifyRestoreFailure(target, input, { exitCode: r.exitCode, stderr: r.stderr });
  }

  restoreStream(target: Target, options: RestoreOptions = {}): RestoreStream {
    const written: string[] = [];
    let child: ResultPromise<{ stdin: "pipe"; reject: false; stripFinalNewline: false }> | undefined;
    const started = (async () => {
      const [file, ...args] = await this.restoreCommand(target, options);
      const argv = this.argv(target.namespace, file!, args);
      const lockFd = options.underHold && lockDescriptor(options.underHold);
      // Under a hold the tool is handed the lock's descriptor too (see `takeXtablesLock`).
      const stdio = lockFd !== undefined ? { stdio: ["pipe", "pipe", "pipe", lockFd as unknown as "pipe"] as ["pipe", "pipe", "pipe", "pipe"] } : { stdin: "pipe" as const };
      const running = execa(argv[0]!, argv.slice(1), { ...stdio, reject: false, env: this.restoreEnv(target, options), stripFinalNewline: false }) as NonNullable<typeof child>;
      child = running;
      // A tool that exits early (a bad line) closes the pipe: its exit says why, not EPIPE.
      running.stdin.on("error", () => undefined);
      for (const text of written) running.stdin.write(text);
      return argv;
    })();
    // Keep an early failure (no backend) for end().
    started.catch(() => undefined);
    return {
      write: (text) => {
        written.push(text);
        if (child) child.stdin.write(text);
      },
      end: async () => {
        const argv = await started;
        child!.stdin.end();
        let r;
        try {
          r = await child!;
        } catch (err) {
          throw new CommandError(argv, undefined, err instanceof Error ? err.message : String(err), { cause: err, namespace: target.namespace });
        }
        if (r.failed && r.exitCode === undefined) throw new CommandError(argv, undefined, r.message ?? "could not run", { cause: r, namespace: target.namespace });
        if (r.exitCode === 0) return;
        throw classifyRestoreFailure(target, written.join(""), { exitCode: r.exitCode ?? -1, stderr: String(r.stderr ?? "") });
      },
    };
  }

  async holdXtablesLock(options: { waitSeconds?: number } = {}): Promise<XtablesLockHold | undefined> {
    if ((await this.backend()) !== "legacy") return undefined;
    if (this.holdWorks && !(await this.holdWorks)) return undefined;
    let hold: XtablesLockHold;
    try {
      hold = await takeXtablesLock(this.hostLockPath(), options.waitSeconds ?? this.lockWaitSeconds, this.env);
    } catch (err) {
      if (err instanceof XtablesLockError) throw err;
      // No flock(1), or the lock file cannot be opened: never asked again.
      this.holdRefusal = err instanceof Error ? err.message : String(err);
      this.holdWorks = Promise.resolve(false);
      return undefined;
    }
    // Asked once, with the lock held (what the question needs).
    this.holdWorks ??= this.checkHold(hold);
    if (await this.holdWorks) return hold;
    hold.release();
    return undefined;
  }

  /** The lock file the tools take when left to themselves. */
  private hostLockPath(): string {
    return this.env["XTABLES_LOCKFILE"] ?? process.env["XTABLES_LOCKFILE"] ?? "/run/xtables.lock";
  }

  /** Under a hold, the family's own lock file beside the host's (see `holdXtablesLock`). */
  private restoreEnv(target: Target, options: RestoreOptions): Record<string, string> {
    if (!options.underHold) return this.env;
    return { ...this.env, XTABLES_LOCKFILE: join(dirname(options.underHold.path), `chainwarden-xtables-v${target.family}.lock`) };
  }

  /**
   * Whether a hold does what `holdXtablesLock` promises with these tools, asked of the tools once,
   * while `hold` is held: a tool left to itself must wait for it (so it is the file they use; a build
   * may name another), and a tool pointed at a file of its own must not (`XTABLES_LOCKFILE` is
   * honoured; older releases ignore it and would wait for us). `-t` names a table that does not
   * exist, so neither touches a table; both take the lock first.
   */
  private async checkHold(hold: XtablesLockHold): Promise<boolean> {
    try {
      const tool = binary("legacy", 4, "");
      const probe = ["-t", "chainwarden-probe", "-S"];
      if (!(await waitsForLock(tool, probe, hold.path, this.env))) {
        this.holdRefusal = `${tool} does not take ${hold.path}`;
        return false;
      }
      const own = { ...this.env, XTABLES_LOCKFILE: join(dirname(hold.path), "chainwarden-xtables-v4.lock") };
      const r = await this.run(undefined, [tool], ["-w", "1", ...probe], undefined, { env: own });
      if (XTABLES_LOCK_HELD.test(r.stderr)) {
        this.holdRefusal = `${tool} does not honour XTABLES_LOCKFILE`;
        return false;
      }
      return true;
    } catch (err) {
      this.holdRefusal = err instanceof Error ? err.message : String(err);
      return false;
    }
  }

  async exec(command: AuxCommand, args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    const file = await this.auxBinary(command);
    return checkExit(await this.run(options.namespace, [file], args, options.input), [file, ...args], options);
  }

  prepare(command: AuxCommand, args: readonly string[], options: PrepareOptions = {}): PreparedCommand {
    if (!args.includes(PREPARED_INPUT)) throw new CommandError([command, ...args], undefined, "prepare() needs PREPARED_INPUT among the arguments: the command reads its input from it");
    let state: "waiting" | "run" | "cancelled" = "waiting";
    const started = (async () => {
      const file = await this.auxBinary(command);
      const input = await FifoInput.create(async (path) => {
        const r = await this.run(undefined, ["mkfifo"], ["-m", "600", path]);
        if (r.exitCode !== 0) throw new CommandError(["mkfifo", "-m", "600", path], r.exitCode, r.stderr);
      });
      // Started like any other command (from the spawn helper: no fork of this process on the
      // caller's path); it needs no stdin of ours, as it reads the FIFO by name.
      let done = false;
      const result = this.run(options.namespace, [file], args.map((a) => (a === PREPARED_INPUT ? input.path : a))).finally(() => {
        done = true;
        input.close();
      });
      result.catch(() => undefined);
      const running = () => !done;
      // The FIFO's name goes as soon as the command has it open.
      input.connect(running).catch(() => undefined);
      return { file, input, result, running };
    })();
    started.catch(() => undefined);
    // Cancelled or expired: the command reads an empty input and ends, having done nothing.
    const cancel = () => {
      if (state !== "waiting") return;
      state = "cancelled";
      clearTimeout(expiry);
      void started.then(({ input, running }) => input.writeAndClose("", running)).catch(() => undefined);
    };
    const expiry = setTimeout(cancel, options.expireMs ?? 30_000);
    expiry.unref();
    return {
      run: async (text) => {
        if (state !== "waiting") throw new CommandError([command, ...args], undefined, state === "run" ? "prepared command run twice" : "prepared command was cancelled (or expired) before it was run", { namespace: options.namespace });
        state = "run";
        clearTimeout(expiry);
        // Not started (no FIFO could be made): no exit status, so callers can tell it from the command failing.
        const { file, input, result, running } = await started.catch((err: unknown) => {
          throw new CommandError([command, ...args], undefined, `could not be started: ${err instanceof Error ? err.message : String(err)}`, { cause: err, namespace: options.namespace });
        });
        // false: the command ended before taking its input; its exit says why.
        await input.writeAndClose(text, running);
        return checkExit(await result, [file, ...args], options);
      },
      cancel,
      get waiting() {
        return state === "waiting";
      },
    };
  }

  watch(command: AuxCommand, args: readonly string[], options: WatchOptions): WatchedCommand {
    let argv = [command, ...args];
    let child: ResultPromise<{ stdin: "ignore"; stdout: "pipe"; stderr: "pipe"; buffer: false; reject: false }> | undefined;
    let done = false;
    const end = (err: Error) => {
      if (done) return;
      done = true;
      options.onExit?.(err);
    };
    const started = (async () => {
      const file = await this.auxBinary(command);
      argv = this.argv(options.namespace, file, args);
      if (done) return;
      // Not from the spawn helper, which runs commands to their end: this one runs for days. Killed
      // when this process exits (execa's cleanup), and by SIGPIPE at its next line should this
      // process be killed outright.
      const c = execa(argv[0]!, argv.slice(1), { stdin: "ignore", stdout: "pipe", stderr: "pipe", buffer: false, reject: false, cleanup: true, env: this.env });
      child = c;
      let stderr = "";
      c.stderr.setEncoding("utf8");
      c.stderr.on("data", (d: string) => void (stderr = (stderr + d).slice(-4096)));
      createInterface({ input: c.stdout, crlfDelay: Infinity }).on("line", (line) => {
        if (!done) options.onLine(line);
      });
      const exited = c.then((r) => {
        const namespace = options.namespace;
        if (r.signal) return new CommandError(argv, undefined, `killed by ${r.signal}${stderr ? `: ${stderr}` : ""}`, { namespace });
        if (r.exitCode === undefined) return new CommandError(argv, undefined, stderr || (r.message ?? "could not be started"), { cause: r, namespace });
        if (namespace !== undefined && NAMESPACE_GONE.test(stderr)) return new NamespaceGoneError(namespace, stderr);
        return new CommandError(argv, r.exitCode, stderr || "ended", { namespace });
      });
      void exited.then(end);
      await new Promise<void>((resolve, reject) => {
        c.once("spawn", () => resolve());
        void exited.then(reject);
      });
    })();
    started.catch((err: unknown) => end(err instanceof Error ? err : new Error(String(err))));
    return {
      started,
      stop: () => {
        done = true;
        child?.kill("SIGTERM");
      },
    };
  }

  async listLinks(namespace?: string): Promise<string[]> {
    // This process's own network namespace: /proc/self/net/dev lists it whatever /sys is mounted
    // from. Another: `ip netns exec` mounts that namespace's /sys for the command it runs.
    if (namespace === undefined) {
      return readFileSync("/proc/self/net/dev", "utf8")
        .split("\n")
        .slice(2)
        .map((l) => l.slice(0, l.indexOf(":")).trim())
        .filter(Boolean);
    }
    const args = ["-1", "/sys/class/net"];
    const r = checkExit(await this.run(namespace, ["ls"], args), ["ls", ...args], { namespace });
    return r.stdout.split("\n").filter(Boolean);
  }

  spawn(command: "node", args: readonly string[], options: SpawnOptions = {}): SpawnedProcess {
    if (command !== "node") throw new CommandError([command, ...args], undefined, "only node may be spawned as a long-lived process");
    const argv = options.namespace === undefined ? [process.execPath, ...args] : ["ip", "netns", "exec", options.namespace, process.execPath, ...args];
    if (options.detached) {
      // setsid (detached), no pipe to this process, no cleanup: the daemon lives on when we exit.
      const log = openSync(options.detached.logFile, "a", 0o640);
      try {
        const child = execa(argv[0]!, argv.slice(1), {
          stdin: "ignore",
          // execa hands a descriptor number to spawn() as it is (its types only list 3–9).
          stdout: log as 3,
          stderr: log as 3,
          detached: true,
          buffer: false,
          reject: false,
          cleanup: false,
          env: { ...this.env, ...options.env },
        });
        child.unref();
        return child;
      } finally {
        // The child holds its own copy.
        closeSync(log);
      }
    }
    // No buffering (it runs for days), no rejection (its exit is the caller's business), and no
    // kill-on-exit: the callers tie the child's life to a stdin pipe instead.
    return execa(argv[0]!, argv.slice(1), {
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
      buffer: false,
      reject: false,
      cleanup: false,
      env: { ...this.env, ...options.env },
    });
  }

  /**
   * `auto` picks the backend the host already uses: the one whose save output in the host namespace
   * holds more rules (as kube's iptables-wrapper does), nf_tables when neither has any.
   */
  private async detectBackend(): Promise<Backend> {
    const count = async (b: Backend) => {
      try {
        const r = await this.run(undefined, [binary(b, 4, "-save")], []);
        return r.exitCode === 0 ? r.stdout.split("\n").filter((l) => l.startsWith("-A ")).length : -1;
      } catch {
        return -1;
      }
    };
    const [nft, legacy] = await Promise.all([count("nft"), count("legacy")]);
    if (nft < 0 && legacy < 0) throw new BackendUnavailableError("neither iptables-nft-save nor iptables-legacy-save could run");
    return legacy > nft ? "legacy" : "nft";
  }

  /** The binary of an aux command: `iptables`/`ip6tables` follow the backend. */
  private async auxBinary(command: AuxCommand): Promise<string> {
    const backend = command === "iptables" || command === "ip6tables" ? await this.backend() : undefined;
    return backend ? binary(backend, command === "iptables" ? 4 : 6, "") : command;
  }

  /** `iptables-restore -n [-w N]` of the target's family and backend. */
  private async restoreCommand(target: Target, options: RestoreOptions): Promise<string[]> {
    const backend = await this.backend();
    const version = await this.version();
    const command = [binary(backend, target.family, "-restore"), "-n"];
    if (version.supportsWait) command.push("-w", String(options.lockWaitSeconds ?? this.lockWaitSeconds));
    return command;
  }

  private argv(namespace: string | undefined, file: string, args: readonly string[]): string[] {
    // `ip -n NS` enters the namespace itself; `ip netns exec` would also unshare a mount namespace,
    // remount /sys and exec a second program: twice the cost, for every device command of a router.
    return namespace === undefined ? [file, ...args] : file === "ip" ? ["ip", "-n", namespace, ...args] : ["ip", "netns", "exec", namespace, file, ...args];
  }

  private async run(
    namespace: string | undefined,
    file: [string],
    args: readonly string[],
    input?: string,
    options: { direct?: boolean; env?: Record<string, string>; lockFd?: number } = {},
  ): Promise<ExecResult> {
    const argv = this.argv(namespace, file[0], args);
    const env = options.env ?? this.env;
    try {
      if (this.helper && !options.direct && (input === undefined || input.length <= HELPER_INPUT_LIMIT)) {
        return await this.helper.run(argv[0]!, argv.slice(1), env, input);
      }
      // A large input goes in through a file the command reads by itself: piped, it would be
      // written by this process's event loop, which a caller busy computing (the l2 driver
      // programming IPv6 while the IPv4 restore runs) would leave the command waiting for.
      const fd = input !== undefined && input.length > HELPER_INPUT_LIMIT ? inputFd(input) : undefined;
      let running;
      try {
        // execa hands a descriptor number to spawn() as it is (its types only list 3–9).
        const stdin: Options = fd !== undefined ? { stdin: fd as 3 } : input !== undefined ? { input } : { stdin: "ignore" };
        // A held xtables lock's descriptor goes to the command as its fd 3 (see `takeXtablesLock`).
        const stdio: Options =
          options.lockFd === undefined ? stdin : { stdio: [fd !== undefined ? (fd as 3) : input !== undefined ? "pipe" : "ignore", "pipe", "pipe", options.lockFd as 3], ...(fd === undefined && input !== undefined ? { input } : {}) };
        running = execa(argv[0]!, argv.slice(1), { ...stdio, reject: false, env, stripFinalNewline: false });
      } finally {
        // The command holds its own copy of the descriptor once started.
        if (fd !== undefined) closeSync(fd);
      }
      const r = await running;
      if (r.failed && r.exitCode === undefined) throw r;
      return { stdout: String(r.stdout ?? ""), stderr: String(r.stderr ?? ""), exitCode: r.exitCode ?? -1 };
    } catch (err) {
      throw new CommandError(argv, undefined, err instanceof Error ? err.message : String(err), { cause: err, namespace });
    }
  }
}

/** `exec`'s rule for an exit status: non-zero throws (a vanished namespace says so) unless `reject: false`. */
function checkExit(r: ExecResult, command: readonly string[], options: { namespace?: string | undefined; reject?: boolean }): ExecResult {
  if (r.exitCode !== 0 && options.reject !== false) {
    if (options.namespace !== undefined && NAMESPACE_GONE.test(r.stderr)) throw new NamespaceGoneError(options.namespace, r.stderr);
    throw new CommandError(command, r.exitCode, r.stderr, { namespace: options.namespace });
  }
  return r;
}

let inputFiles = 0;

/**
 * `input` in an unlinked temporary file, opened for reading: the file is gone from the directory
 * before any command runs, so nothing is left behind whatever happens next. Undefined (the caller
 * pipes instead) when the temporary directory cannot be written.
 */
function inputFd(input: string): number | undefined {
  const file = join(tmpdir(), `chainwarden-input-${process.pid}-${++inputFiles}-${randomBytes(6).toString("hex")}`);
  try {
    // "wx": never through an existing file or link; 0600: the rules are nobody else's business.
    writeFileSync(file, input, { flag: "wx", mode: 0o600 });
  } catch (err) {
    // A write that failed half-way (a full disk) leaves a file of ours behind; an existing name is not ours.
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") rmSync(file, { force: true });
    return undefined;
  }
  try {
    return openSync(file, "r");
  } catch {
    return undefined;
  } finally {
    rmSync(file, { force: true });
  }
}

function binary(backend: Backend, family: 4 | 6, suffix: "" | "-save" | "-restore"): string {
  return `${family === 4 ? "iptables" : "ip6tables"}-${backend}${suffix}`;
}
