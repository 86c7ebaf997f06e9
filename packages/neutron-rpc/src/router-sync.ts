import { ProgressLog } from "@chainwarden/agent";
import type { Logger } from "pino";
import type { L3PluginApi, RouterDict } from "./l3-plugin-api.js";
import { isRpcTimeout } from "./rpc-transport.js";

/** Neutron's bounds for `sync_routers` chunks: halve on a timeout, grow back after a success. */
export const SYNC_ROUTERS_MAX_CHUNK_SIZE = 256;
export const SYNC_ROUTERS_MIN_CHUNK_SIZE = 32;

export interface RouterSyncOptions {
  api: Pick<L3PluginApi, "getRouterIds" | "syncRouters">;
  /**
   * Every router this host has, after each change. Called only with a complete set: after a full
   * sync succeeded, and after each batch of updates on top of one.
   */
  publish(routers: readonly RouterDict[], why: string): void;
  logger: Logger;
  /** Wait before retrying a failed sync (grows to `maxRetryMs`). */
  retryMs?: number;
  maxRetryMs?: number;
}

type Pending = "update" | "delete";

/**
 * This host's routers as neutron-server schedules them, kept in step the way Neutron's l3 agent does:
 * a full sync (`get_router_ids`, then `sync_routers` in chunks) at start, after a reconnect or when
 * the server asks; single routers fetched again when the server casts that they changed; removed
 * when it casts that they are gone, or when a full sync no longer has them.
 *
 * One thing runs at a time, in the order it was asked for; changes that arrive meanwhile are merged
 * (the last word on a router wins). A router leaves only on a complete answer: a full sync of which
 * every chunk arrived, a `sync_routers` for its id that does not return it, or the server's own
 * cast. A failed fetch keeps what we have and retries with backoff.
 */
export class RouterSync {
  private readonly routers = new Map<string, RouterDict>();
  private readonly pending = new Map<string, Pending>();
  private fullSyncReason: string | undefined;
  private chunkSize = SYNC_ROUTERS_MAX_CHUNK_SIZE;
  private running: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private stopped = false;
  private fullSyncs = 0;

  constructor(private readonly options: RouterSyncOptions) {}

  /** Whether a full sync has completed (before that, nothing is published). */
  get synced(): boolean {
    return this.fullSyncs > 0;
  }

  /** The routers now, by id. */
  get current(): ReadonlyMap<string, RouterDict> {
    return this.routers;
  }

  /** The chunk size the next full sync starts with. */
  get syncChunkSize(): number {
    return this.chunkSize;
  }

  /** Asks for a full sync (start, reconnect, an agent revived or updated by the server). */
  fullSync(reason: string): void {
    this.fullSyncReason ??= reason;
    this.kick();
  }

  /** `routers_updated` / `router_added_to_agent`: fetch these again. */
  updated(ids: readonly string[]): void {
    for (const id of ids) this.pending.set(id, "update");
    this.kick();
  }

  /** `router_deleted` / `router_removed_from_agent`. */
  removed(id: string): void {
    this.pending.set(id, "delete");
    this.kick();
  }

  /** Resolves when nothing is queued or running (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    await this.idle();
  }

  private kick(): void {
    if (this.stopped || this.running || this.retryTimer) return;
    if (this.fullSyncReason === undefined && (this.pending.size === 0 || !this.synced)) return;
    this.running = this.drain().finally(() => {
      this.running = undefined;
      this.kick();
    });
  }

  private async drain(): Promise<void> {
    try {
      if (this.fullSyncReason !== undefined) {
        const reason = this.fullSyncReason;
        this.fullSyncReason = undefined;
        await this.runFullSync(reason).catch((err: unknown) => {
          this.fullSyncReason ??= reason;
          throw err;
        });
      } else {
        const batch = new Map(this.pending);
        this.pending.clear();
        await this.runUpdates(batch).catch((err: unknown) => {
          // Later words on a router win over the failed batch's.
          for (const [id, what] of batch) if (!this.pending.has(id)) this.pending.set(id, what);
          throw err;
        });
      }
      this.failures = 0;
    } catch (err) {
      this.failures++;
      const delay = Math.min((this.options.retryMs ?? 1000) * 2 ** (this.failures - 1), this.options.maxRetryMs ?? 60_000);
      this.options.logger.warn({ err, retryInMs: delay }, "syncing routers with neutron-server failed; what the host has stays, retrying");
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.kick();
      }, delay);
      this.retryTimer.unref?.();
    }
  }

  private async runFullSync(reason: string): Promise<void> {
    const started = Date.now();
    // What was asked before it starts, the full sync answers; what arrives while it runs comes after.
    const covered = new Map(this.pending);
    this.pending.clear();
    let ids: string[];
    try {
      ids = await this.options.api.getRouterIds();
    } catch (err) {
      for (const [id, what] of covered) if (!this.pending.has(id)) this.pending.set(id, what);
      throw err;
    }
    const fetched = new Map<string, RouterDict>();
    // Thousands of routers take a while: at most one line a second (none for a quick sync).
    const progress = new ProgressLog({
      total: ids.length,
      log: (done, total) => this.options.logger.info({ reason, done, total, progress: `${done}/${total}` }, "full sync of routers progress"),
    });
    try {
      for (let i = 0; i < ids.length; ) {
        const chunk = ids.slice(i, i + this.chunkSize);
        let routers: RouterDict[];
        try {
          routers = await this.options.api.syncRouters(chunk);
        } catch (err) {
          if (isRpcTimeout(err) && this.chunkSize > SYNC_ROUTERS_MIN_CHUNK_SIZE) {
            this.chunkSize = Math.max(Math.floor(this.chunkSize / 2), SYNC_ROUTERS_MIN_CHUNK_SIZE);
            this.options.logger.warn({ chunkSize: this.chunkSize }, "sync_routers timed out; asking for fewer routers at a time");
            continue;
          }
          throw err;
        }
        for (const router of routers) if (typeof router?.id === "string") fetched.set(router.id, router);
        i += chunk.length;
        progress.step(chunk.length);
      }
    } finally {
      progress.finish();
    }
    if (this.chunkSize < SYNC_ROUTERS_MAX_CHUNK_SIZE) this.chunkSize = Math.min(this.chunkSize + SYNC_ROUTERS_MIN_CHUNK_SIZE, SYNC_ROUTERS_MAX_CHUNK_SIZE);
    const before = new Set(this.routers.keys());
    this.routers.clear();
    for (const [id, router] of fetched) this.routers.set(id, router);
    // A change cast during the sync may predate what was fetched; fetching it once more is cheap and right.
    this.fullSyncs++;
    const gone = [...before].filter((id) => !fetched.has(id));
    this.options.logger.info({ reason, routers: fetched.size, removed: gone.length, ms: Date.now() - started }, "full sync of routers from neutron-server");
    this.options.publish([...this.routers.values()], `full sync (${reason})`);
  }

  private async runUpdates(batch: ReadonlyMap<string, Pending>): Promise<void> {
    const update = [...batch].filter(([, what]) => what === "update").map(([id]) => id);
    const fetched = new Map<string, RouterDict>();
    for (let i = 0; i < update.length; i += this.chunkSize) {
      for (const router of await this.options.api.syncRouters(update.slice(i, i + this.chunkSize))) {
        if (typeof router?.id === "string") fetched.set(router.id, router);
      }
    }
    for (const [id, what] of batch) {
      // Not returned for its own id: no longer this host's (deleted, or moved to another agent).
      if (what === "delete" || !fetched.has(id)) this.routers.delete(id);
    }
    // Related routers the server sends along are taken too, as Neutron's agent does.
    for (const [id, router] of fetched) this.routers.set(id, router);
    this.options.publish([...this.routers.values()], `${update.length} updated, ${batch.size - update.length} removed`);
  }
}
