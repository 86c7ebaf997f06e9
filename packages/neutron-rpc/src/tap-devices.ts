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
    const { runner, namespace, logger } = this.options;
    if (runner.watch) {
      this.watched = runner.watch("ip", ["-o", "monitor", "link"], {
        namespace,
        onLine: () => this.relist(),
        onExit: (err) => {
          if (!this.stopped) logger.warn({ err }, "the link monitor ended; polling for tap devices");
        },
      });
      await this.watched.started.catch(() => undefined);
    }
    await this.relist();
    this.timer = setInterval(() => void this.relist(), this.options.pollMs ?? 10_000);
    this.timer.unref?.();
  }

  stop(): void {
    this.stopped = true;
    this.watched?.stop();
    clearInterval(this.timer);
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
