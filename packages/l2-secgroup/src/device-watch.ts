/**
 * The device events of one namespace, from `ip -o monitor link` (`IpRunner.watch`), so a port
 * is filtered as soon as its tap appears and unfiltered as soon as it goes, instead of at the next
 * poll (Neutron's agent only polls, every `polling_interval` = 2 s, and a port waits that long).
 *
 * The poll stays, as the safety net: a device that appears between the monitor's start and its
 * subscription, or while a monitor that died is not yet started again, is found by the next poll.
 * A monitor that ends on its own is started again on the next `ensure`, after a back-off that
 * doubles with each end not preceded by an event (up to a minute), so a monitor that cannot run
 * costs one attempt and one warning per back-off, not one per poll.
 */
import { silentLogger, type CoreLogger, type IpRunner, type WatchedCommand } from "@chainwarden/core";

/** One line of `ip -o monitor link`: a device added or changed (`deleted` false), or deleted. */
export interface LinkEvent {
  readonly name: string;
  readonly deleted: boolean;
}

// `5: tap1@peer0: <BROADCAST,...> mtu ...`, `Deleted 5: tap1@NONE: <...>`, `4: br0: <...>`.
const LINK_EVENT = /^(Deleted )?\d+:\s+([^:@\s]+)(?:@[^:\s]*)?:\s/;
// A device's own line (the kernel's AF_UNSPEC link message) always has its group after its state;
// the bridge's view of a port (AF_BRIDGE: `mtu 1450 master br0 state forwarding ...`) never does.
const DEVICE_LINE = / state \S+ (?:mode \S+ )?group \S+/;

/**
 * The event of one monitor line; undefined for anything else (continuation text, other objects).
 * A port that leaves its bridge is printed by the bridge as `Deleted N: tap1: ... master br0 ...`
 * though the device stays: that line is no event (when the device itself goes, its own `Deleted`
 * line follows).
 */
export function parseLinkEvent(line: string): LinkEvent | undefined {
  const m = LINK_EVENT.exec(line);
  if (!m) return undefined;
  const deleted = m[1] !== undefined;
  if (deleted && !DEVICE_LINE.test(line.split("\\")[0]!)) return undefined;
  return { name: m[2]!, deleted };
}

const FIRST_RETRY_MS = 1_000;
const MAX_RETRY_MS = 60_000;

/** Options of `DeviceWatch`: the runner and namespace to watch (the host's when undefined), a logger, and where events go. */
export interface DeviceWatchOptions {
  readonly runner: IpRunner;
  readonly namespace: string | undefined;
  readonly logger?: CoreLogger;
  /** Called for every device added, changed or deleted, in the monitor's order, synchronously from its output handler: it must not throw. */
  readonly onEvent: (event: LinkEvent) => void;
}

/**
 * The device monitor of one namespace (`ip -o monitor link`): reports taps as they come and go, so ports are filtered without waiting
 * for the poll. Best effort: it never throws, and a monitor that ends is restarted by a later `ensure` after a growing back-off.
 */
export class DeviceWatch {
  private readonly runner: IpRunner;
  private readonly namespace: string | undefined;
  private readonly logger: CoreLogger;
  private readonly onEvent: (event: LinkEvent) => void;
  /** The monitor started last, while it runs. */
  private current: { command?: WatchedCommand } | undefined;
  private failures = 0;
  private nextTry = 0;

  constructor(options: DeviceWatchOptions) {
    this.runner = options.runner;
    this.namespace = options.namespace;
    this.logger = options.logger ?? silentLogger;
    this.onEvent = options.onEvent;
  }

  /** Whether the runner can watch at all (the fake hosts and `ExecaRunner` can). */
  get supported(): boolean {
    return this.runner.watch !== undefined;
  }

  get running(): boolean {
    return this.current !== undefined;
  }

  /**
   * Starts the monitor unless it runs (or failed less than its back-off ago), and waits until the
   * process runs. Never throws: without a monitor the poll still finds every device.
   */
  async ensure(): Promise<void> {
    if (this.current || !this.runner.watch || Date.now() < this.nextTry) return;
    // This start's identity: an end reported for an earlier monitor, or one reported while `watch`
    // is still being called, finds it (or not) and never touches another's state.
    const run: { command?: WatchedCommand } = {};
    this.current = run;
    try {
      run.command = this.runner.watch("ip", ["-o", "monitor", "link"], {
        namespace: this.namespace,
        onLine: (line) => {
          // A monitor that reports is a monitor that works: the back-off starts over.
          this.failures = 0;
          const event = parseLinkEvent(line);
          if (event) this.onEvent(event);
        },
        onExit: (err) => this.ended(run, err),
      });
      await run.command.started;
      if (this.current === run) this.logger.debug({ namespace: this.namespace ?? null }, "device monitor started");
    } catch (err) {
      // A runner that threw; one whose start failed has reported it through onExit already.
      this.ended(run, err instanceof Error ? err : new Error(String(err)));
    }
  }

  private ended(run: { command?: WatchedCommand }, err: Error): void {
    if (this.current !== run) return;
    this.current = undefined;
    this.failures++;
    const backoffMs = Math.min(FIRST_RETRY_MS * 2 ** (this.failures - 1), MAX_RETRY_MS);
    this.nextTry = Date.now() + backoffMs;
    this.logger.warn({ err, namespace: this.namespace ?? null, failures: this.failures, retryInMs: backoffMs }, "device monitor ended; devices are found by polling until it runs again");
  }

  /** Stops the running monitor, if any, without counting it as a failure; a later `ensure` starts a new one. */
  stop(): void {
    const run = this.current;
    this.current = undefined;
    run?.command?.stop();
  }
}
