/**
 * The ipsets behind remote-group rules (`enable_ipset`), managed as Neutron's `IpsetManager` does,
 * through the runner (`ipset` with argument arrays; a restore script on stdin):
 *
 * - A set a rule will name is created (`create -exist`) and filled **before** the iptables apply that
 *   adds the rule, so the restore never names a missing set.
 * - Membership changes build a fresh `<name>-n` (create, flush, add…) in one `ipset restore`, then
 *   `ipset swap` it in and destroy the old contents: the set a live rule matches changes atomically.
 * - A set no rule names is destroyed **after** the apply that removed its last rule (the kernel refuses
 *   to destroy a set that is in use); a refusal is kept and retried after the next apply.
 *
 * Names and members come from validated input only (ids of safe characters, canonical addresses).
 */
import { CommandError, silentLogger, type CoreLogger, type IpsetRunner } from "@chainwarden/core";
import { formatCidr, formatIp, parseIpPrefix } from "./ip-address.js";
import { IPSET_PREFIX, IPSET_SWAP_SUFFIX } from "./neutron-constants.js";
import type { IpsetUse } from "./iptables-firewall-driver.js";
import { IpsetError } from "./ipset-error.js";

/** Sets this agent owns: Neutron's naming (`NIPv4…`, `NIPv6…`), never the swap sets of another writer. */
const OURS = new RegExp(`^${IPSET_PREFIX}IPv[46]`);

/** Options of `IpsetManager`: the runner, the namespace (the host's when undefined) and a logger. */
export interface IpsetManagerOptions {
  readonly runner: IpsetRunner;
  readonly namespace?: string | undefined;
  readonly logger?: CoreLogger;
}

/**
 * The remote-group ipsets of one namespace, as Neutron's `IpsetManager` keeps them: created and filled before the apply that names them,
 * members swapped in atomically, destroyed after the apply that drops their last rule. It touches only sets of Neutron's naming (`NIPv4…`, `NIPv6…`).
 */
export class IpsetManager {
  private readonly runner: IpsetRunner;
  private readonly namespace: string | undefined;
  private readonly logger: CoreLogger;
  /** Set name → members as last written (sanitized, sorted, joined). */
  private readonly known = new Map<string, string>();
  private adopted = false;

  constructor(options: IpsetManagerOptions) {
    this.runner = options.runner;
    this.namespace = options.namespace;
    this.logger = options.logger ?? silentLogger;
  }

  /** Names of the sets this manager knows to exist. */
  get sets(): ReadonlySet<string> {
    return new Set(this.known.keys());
  }

  /**
   * Makes every wanted set exist with exactly its members. Run before the apply that uses them.
   * Returns the names that were created or changed. A set that cannot be made does not stop the
   * others: every set is tried, then an `IpsetError` names the ones that failed.
   */
  async ensure(wanted: ReadonlyMap<string, IpsetUse>): Promise<string[]> {
    await this.adoptExisting();
    const changed: string[] = [];
    const failures = new Map<string, Error>();
    for (const use of wanted.values()) {
      const members = sanitize(use.members);
      const key = members.join(",");
      if (this.known.get(use.name) === key) continue;
      const family = use.ethertype === "IPv4" ? "inet" : "inet6";
      try {
        if (!this.known.has(use.name)) await this.run(["create", "-exist", use.name, "hash:net", "family", family]);
        await this.refresh(use.name, family, members);
      } catch (err) {
        failures.set(use.name, err instanceof Error ? err : new Error(String(err)));
        continue;
      }
      this.known.set(use.name, key);
      changed.push(use.name);
    }
    if (failures.size > 0) throw new IpsetError(failures, { namespace: this.namespace });
    return changed;
  }

  /**
   * What `ensure` and `destroyUnused` would do, without doing it (`plan`): sets to create and sets
   * of ours to destroy, read with `ipset list -n`.
   */
  async planChanges(wanted: ReadonlyMap<string, IpsetUse>, keep: ReadonlySet<string> = new Set()): Promise<{ create: string[]; destroy: string[] }> {
    const r = await this.runner.exec("ipset", ["list", "-n"], { namespace: this.namespace, reject: false });
    const existing = r.exitCode === 0 ? new Set(r.stdout.split("\n").map((l) => l.trim()).filter((n) => OURS.test(n))) : new Set<string>();
    return {
      create: [...wanted.keys()].filter((name) => !existing.has(name)),
      destroy: [...existing].filter((name) => !wanted.has(name) && !keep.has(name)),
    };
  }

  /**
   * Destroys the sets no rule names any more. Run after the apply. `keep`: sets that rules taken
   * over from the kernel name (their members are the kernel's). Returns the names destroyed.
   */
  async destroyUnused(wanted: ReadonlyMap<string, IpsetUse>, keep: ReadonlySet<string> = new Set()): Promise<string[]> {
    const destroyed: string[] = [];
    for (const name of [...this.known.keys()]) {
      if (wanted.has(name) || keep.has(name)) continue;
      const r = await this.runner.exec("ipset", ["destroy", name], { namespace: this.namespace, reject: false });
      if (r.exitCode === 0 || /does not exist/.test(r.stderr)) {
        this.known.delete(name);
        destroyed.push(name);
      } else {
        // Still named by a rule somewhere (or busy): try again after the next apply.
        this.logger.warn({ namespace: this.namespace, ipset: name, stderr: r.stderr.trim() }, "ipset not destroyed; will retry");
      }
    }
    return destroyed;
  }

  /** Sets of ours left by an earlier run become known, so they are refreshed or destroyed. */
  private async adoptExisting(): Promise<void> {
    if (this.adopted) return;
    const r = await this.runner.exec("ipset", ["list", "-n"], { namespace: this.namespace, reject: false });
    if (r.exitCode !== 0) throw this.failed(["list", "-n"], r.exitCode, r.stderr);
    for (const name of r.stdout.split("\n").map((l) => l.trim())) {
      // Unknown content: a key no member list has, so a wanted set is refreshed and an unwanted one
      // (a swap set a crash left behind included) is destroyed after the next apply.
      if (OURS.test(name) && !this.known.has(name)) this.known.set(name, "\u0000adopted");
    }
    this.adopted = true;
  }

  private async refresh(name: string, family: string, members: readonly string[]): Promise<void> {
    const swap = `${name}${IPSET_SWAP_SUFFIX}`;
    // `flush` empties a swap set a crash may have left with old members (create -exist keeps them).
    const lines = [`create ${swap} hash:net family ${family}`, `flush ${swap}`, ...members.map((m) => `add ${swap} ${m}`)];
    await this.run(["restore", "-exist"], `${lines.join("\n")}\n`);
    await this.run(["swap", swap, name]);
    await this.run(["destroy", swap]);
  }

  private async run(args: string[], input?: string): Promise<void> {
    const r = await this.runner.exec("ipset", args, { namespace: this.namespace, reject: false, ...(input !== undefined ? { input } : {}) });
    if (r.exitCode !== 0) throw this.failed(args, r.exitCode, r.stderr);
  }

  private failed(args: readonly string[], exitCode: number, stderr: string): CommandError {
    return new CommandError(["ipset", ...args], exitCode, stderr, this.namespace === undefined ? {} : { namespace: this.namespace });
  }
}

/**
 * Members as `hash:net` takes them (Neutron's `_sanitize_addresses`): a /0 is not allowed, so it
 * becomes two /1s; duplicates go; sorted for a stable comparison.
 */
export function sanitize(members: readonly string[]): string[] {
  const out = new Set<string>();
  for (const m of members) {
    const p = parseIpPrefix(m);
    if (!p) continue;
    if (p.prefixLength === 0) {
      if (p.version === 4) out.add("0.0.0.0/1").add("128.0.0.0/1");
      else out.add("::/1").add("8000::/1");
    } else {
      out.add(p.bare ? formatIp(p) : formatCidr(p));
    }
  }
  return [...out].sort();
}

