import type { IpRunner, WatchedCommand } from "@chainwarden/core";
import type { Logger } from "pino";

/** A Neutron port's tap on a Linux bridge host: `tap` and the port id's first 11 characters. */
export const TAP_DEVICE = /^tap[0-9a-f]{8}-[0-9a-f]{2}$/;

/** The tap device Neutron names for a port id. */
export function tapName(portId: string): string {
  return `tap${portId.slice(0, 11)}`;
}

export interface TapDevicesOptions {
  runner: IpRunner;
  /** The namespace holding the bridges (undefined: this process's own). */
  namespace?: string;
  /** Called with what appeared and what went, after the first listing and after each change. */
  onChange(added: readonly string[], removed: readonly string[]): void;
  /** Poll this often when the runner cannot watch the link monitor (and as a safety net when it can). */
  pollMs?: number;
  logger: Logger;
}

/**
 * The tap devices on the host, as Neutron's Linux bridge agent sees them (its device monitor): the
 * link monitor only says *that* something changed — its lines are not trusted for *what* (a port
 * leaving its bridge prints `Deleted` while the device stays) — and each change re-lists the devices.
 */
export class TapDevices {
  private current = new Set<string>();
  private watched: WatchedCommand | undefined;
  /** The monitor started last (an end reported for an older one changes nothing). */
  private monitorRun: object | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;
  private listing: Promise<void> | undefined;
  private again = false;
  private stopped = false;

  constructor(private readonly options: TapDevicesOptions) {}

  get devices(): ReadonlySet<string> {
    return this.current;
  }

  /** Lists the devices (reporting them as added) and starts watching. */
  async start(): Promise<void> {
    await this.watch();
    await this.relist();
    this.timer = setInterval(() => void this.relist(), this.options.pollMs ?? 10_000);
    this.timer.unref?.();
  }

  stop(): void {
    this.stopped = true;
    this.watched?.stop();
    this.watched = undefined;
    clearInterval(this.timer);
    clearTimeout(this.restartTimer);
  }

  /** Whether the link monitor runs (false while it waits to be started again, or without one). */
  get watching(): boolean {
    return this.watched !== undefined;
  }

  /**
   * Starts the link monitor. One that ends on its own is started again after a back-off (1 s,
   * doubling up to a minute; a monitor that printed a line starts over at 1 s), listing the
   * devices meanwhile at every poll, so taps that come and go while it is away are still seen.
   */
  private async watch(): Promise<void> {
    const { runner, namespace, logger } = this.options;
    if (!runner.watch || this.stopped) return;
    const run: { command?: WatchedCommand } = {};
    const ended = (err: Error) => {
      if (this.stopped || this.monitorRun !== run) return;
      this.monitorRun = undefined;
      this.watched = undefined;
      this.failures++;
      const retryInMs = Math.min(1000 * 2 ** (this.failures - 1), 60_000);
      logger.warn({ err, namespace: namespace ?? null, retryInMs }, "the link monitor ended; listing the tap devices at each poll until it runs again");
      void this.relist();
      this.restartTimer = setTimeout(() => void this.watch(), retryInMs);
      this.restartTimer.unref?.();
    };
    this.monitorRun = run;
    try {
      run.command = runner.watch("ip", ["-o", "monitor", "link"], {
        namespace,
        onLine: () => {
          this.failures = 0;
          void this.relist();
        },
        onExit: ended,
      });
      if (this.monitorRun === run) this.watched = run.command;
      await run.command.started;
    } catch (err) {
      ended(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    // Devices that came or went while the monitor was away.
    if (this.failures > 0 && this.monitorRun === run) await this.relist();
  }

  /** Lists again (coalesced: one listing at a time, one more if asked meanwhile). */
  relist(): Promise<void> {
    if (this.listing) {
      this.again = true;
      return this.listing;
    }
    this.listing = this.list().finally(() => {
      this.listing = undefined;
      if (this.again && !this.stopped) {
        this.again = false;
        void this.relist();
      }
    });
    return this.listing;
  }

  private async list(): Promise<void> {
    const { runner, namespace, logger } = this.options;
    let names: string[];
    try {
      names = runner.listLinks ? await runner.listLinks(namespace) : parseLinkNames((await runner.exec("ip", ["-o", "link", "show"], { namespace })).stdout);
    } catch (err) {
      // Not knowing is not "none": keep the devices we know.
      logger.warn({ err }, "could not list the tap devices; keeping the ones known");
      return;
    }
    if (this.stopped) return;
    const next = new Set(names.filter((n) => TAP_DEVICE.test(n)));
    const added = [...next].filter((n) => !this.current.has(n));
    const removed = [...this.current].filter((n) => !next.has(n));
    this.current = next;
    if (added.length > 0 || removed.length > 0) this.options.onChange(added, removed);
  }
}

/** Device names from `ip -o link show` (`2: tapX@if3: <...>`). */
export function parseLinkNames(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split("\n")) {
    const m = /^\d+:\s+([^:@\s]+)[@:]/.exec(line);
    if (m) out.push(m[1]!);
  }
  return out;
}
