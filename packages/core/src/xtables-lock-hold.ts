import { closeSync, constants, openSync, readFileSync, statSync } from "node:fs";
import { execa } from "execa";
import { CommandError, XtablesLockError } from "./errors.js";
import type { XtablesLockHold } from "./iptables-runner.js";
import { XTABLES_LOCK_HELD } from "./xtables-lock-message.js";

/**
 * Takes the xtables lock file `path` for this process, as the legacy tools take it (`flock(2)`,
 * exclusive, on the file), and keeps it until `release`.
 *
 * Node cannot call flock(2) itself, so `flock -w N 3` does it on a descriptor this process opened
 * and hands down: a flock lock belongs to the open file description, which the child shares, so the
 * lock stays held by our descriptor when flock exits, and goes when we close it (or when this
 * process dies: the kernel closes it). Our descriptors are close-on-exec, so no other command we
 * start inherits the lock, except the restores run under the hold: they are handed the descriptor
 * (`lockDescriptor`), so the lock stays held while any of them runs, even should this process die
 * first and leave them running (else another iptables user could rewrite their table meanwhile).
 */
export async function takeXtablesLock(path: string, waitSeconds: number, env: Record<string, string>): Promise<XtablesLockHold> {
  // As the tools open it: created if missing, mode 0600.
  const fd = openSync(path, constants.O_RDONLY | constants.O_CREAT, 0o600);
  let held = false;
  try {
    const argv = ["flock", "-w", String(waitSeconds), "3"];
    // execa hands a descriptor number in `stdio` to spawn() as it is (its types do not list one there).
    const r = await execa(argv[0]!, argv.slice(1), { stdio: ["ignore", "ignore", "pipe", fd as unknown as "pipe"], reject: false, env });
    if (r.exitCode === 1) {
      const holder = lockHolder(fd);
      throw new XtablesLockError(`${path} not free after ${waitSeconds}s${holder ? `; held by ${holder}` : ""}`);
    }
    if (r.exitCode !== 0) throw new CommandError(argv, r.exitCode, String(r.stderr ?? r.message ?? ""));
    held = true;
  } finally {
    if (!held) closeSync(fd);
  }
  let released = false;
  const hold: XtablesLockHold = {
    path,
    release: () => {
      if (released) return;
      released = true;
      descriptors.delete(hold);
      closeSync(fd);
    },
  };
  descriptors.set(hold, fd);
  return hold;
}

const descriptors = new WeakMap<XtablesLockHold, number>();

/** The descriptor that holds the lock of a hold `takeXtablesLock` made, while it is not released. */
export function lockDescriptor(hold: XtablesLockHold): number | undefined {
  return descriptors.get(hold);
}

/**
 * Who holds the flock on the file open at `fd`, from /proc/locks ("pid 1234 (kube-proxy)"); undefined
 * when it cannot be told (the holder in another pid namespace, /proc not mounted).
 */
function lockHolder(fd: number): string | undefined {
  try {
    const file = lockFileId(`/proc/self/fd/${fd}`);
    for (const line of readFileSync("/proc/locks", "utf8").split("\n")) {
      // "1: FLOCK  ADVISORY  WRITE 1234 fe:00:16637955 0 EOF" (a waiter's line has "->" after "1:")
      const f = line.trim().split(/\s+/);
      if (f[1] !== "FLOCK" || f[5] !== file) continue;
      const pid = f[4]!;
      let comm = "";
      try {
        comm = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
      } catch {
        // Gone, or not ours to see.
      }
      return `pid ${pid}${comm ? ` (${comm})` : ""}`;
    }
  } catch {
    // No /proc: the error says what it can.
  }
  return undefined;
}

/**
 * Whether `command args`, started now (host namespace) while this process holds the lock file
 * `path`, waits for that lock: it reports the lock held (releases that do not wait), or it queues
 * for the file in /proc/locks (releases that wait by default, as 1.8.9 does). It is stopped then.
 * False when it ends without a word about the lock: it takes another file.
 */
export async function waitsForLock(command: string, args: readonly string[], path: string, env: Record<string, string>): Promise<boolean> {
  const file = lockFileId(path);
  const child = execa(command, args, { stdin: "ignore", reject: false, env, timeout: 2000 });
  let ended = false;
  void child.finally(() => (ended = true));
  const deadline = Date.now() + 1000;
  try {
    while (!ended && Date.now() < deadline) {
      if (child.pid !== undefined && queuedFor(file, child.pid)) return true;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    if (!ended) return false;
    const r = await child;
    return XTABLES_LOCK_HELD.test(String(r.stderr ?? ""));
  } finally {
    if (!ended) {
      child.kill("SIGKILL");
      await child.catch(() => undefined);
    }
  }
}

/** Whether process `pid` waits for a flock on `file` ("1: -> FLOCK ADVISORY WRITE pid fe:00:16637955 ..."). */
function queuedFor(file: string, pid: number): boolean {
  for (const line of readFileSync("/proc/locks", "utf8").split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f[1] === "->" && f[2] === "FLOCK" && f[5] === String(pid) && f[6] === file) return true;
  }
  return false;
}

/**
 * A file as /proc/locks names it: `major:minor:inode`, the device's numbers in hex (at least two
 * digits) from the kernel's `s_dev`, decoded here from `st_dev` as glibc's `major()`/`minor()` do.
 */
function lockFileId(path: string): string {
  const { dev, ino } = statSync(path, { bigint: true });
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return `${major.toString(16).padStart(2, "0")}:${minor.toString(16).padStart(2, "0")}:${ino}`;
}
