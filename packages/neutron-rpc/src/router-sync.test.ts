import { ChainwardenError } from "@chainwarden/core";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import type { RouterDict } from "./l3-plugin-api.js";
import { RouterSync, SYNC_ROUTERS_MAX_CHUNK_SIZE, SYNC_ROUTERS_MIN_CHUNK_SIZE } from "./router-sync.js";

/**
 * The l3 plugin's side as the sync sees it: routers scheduled to this host. `sync_routers` answers
 * with the ids it has among those asked (the real server's behaviour, proven by the end-to-end test
 * against neutron-server); `trouble` makes the next calls fail as a broker or server can.
 */
class L3Server {
  readonly routers = new Map<string, RouterDict>();
  trouble: (ids: readonly string[] | undefined) => Error | undefined = () => undefined;
  chunks: number[] = [];

  add(id: string, extra: Record<string, unknown> = {}): void {
    this.routers.set(id, { id, ...extra });
  }

  async getRouterIds(): Promise<string[]> {
    const err = this.trouble(undefined);
    if (err) throw err;
    return [...this.routers.keys()];
  }

  async syncRouters(ids: readonly string[]): Promise<RouterDict[]> {
    const err = this.trouble(ids);
    if (err) throw err;
    this.chunks.push(ids.length);
    return ids.filter((id) => this.routers.has(id)).map((id) => structuredClone(this.routers.get(id)!));
  }
}

function setup() {
  const server = new L3Server();
  const published: { ids: string[]; why: string }[] = [];
  const sync = new RouterSync({
    api: server,
    logger: pino({ level: "silent" }),
    publish: (routers, why) => published.push({ ids: routers.map((r) => r.id as string).sort(), why }),
    retryMs: 5,
    maxRetryMs: 20,
  });
  return { server, published, sync };
}

const timeout = () => new ChainwardenError("RPC_TIMEOUT" as never, "sync_routers timed out");

describe("RouterSync", () => {
  it("publishes nothing before a full sync; the full sync delivers every router of the host", async () => {
    const { server, published, sync } = setup();
    server.add("r1");
    server.add("r2");
    sync.updated(["r1"]);
    await sync.idle();
    expect(published).toEqual([]);
    sync.fullSync("start");
    await sync.idle();
    expect(published).toEqual([{ ids: ["r1", "r2"], why: "full sync (start)" }]);
    expect(sync.synced).toBe(true);
  });

  it("fetches updated routers, drops one the server no longer returns for its id, and removes deleted ones", async () => {
    const { server, published, sync } = setup();
    server.add("r1");
    server.add("r2");
    sync.fullSync("start");
    await sync.idle();
    server.add("r3", { name: "new" });
    server.routers.delete("r2");
    sync.updated(["r3", "r2"]);
    await sync.idle();
    expect(published.at(-1)!.ids).toEqual(["r1", "r3"]);
    sync.removed("r1");
    await sync.idle();
    expect(published.at(-1)!.ids).toEqual(["r3"]);
  });

  it("merges what arrives while it works: the last word on a router wins", async () => {
    const { server, published, sync } = setup();
    server.add("r1");
    sync.fullSync("start");
    sync.removed("r1");
    sync.updated(["r1"]);
    await sync.idle();
    expect(published.at(-1)!.ids).toEqual(["r1"]);
  });

  it("a failed full sync changes nothing and is retried; a router leaves only on a complete answer", async () => {
    const { server, published, sync } = setup();
    server.add("r1");
    server.add("r2");
    sync.fullSync("start");
    await sync.idle();
    server.routers.delete("r2");
    let failures = 1;
    server.trouble = (ids) => (ids && failures-- > 0 ? new Error("connection lost") : undefined);
    sync.fullSync("reconnected");
    await sync.idle();
    expect(published).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 50));
    await sync.idle();
    expect(published.at(-1)).toEqual({ ids: ["r1"], why: "full sync (reconnected)" });
  });

  it("a failed update keeps the routers as they were and retries them", async () => {
    const { server, published, sync } = setup();
    server.add("r1");
    sync.fullSync("start");
    await sync.idle();
    server.routers.delete("r1");
    let failures = 1;
    server.trouble = () => (failures-- > 0 ? new Error("timed out") : undefined);
    sync.updated(["r1"]);
    await sync.idle();
    expect(published).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 50));
    await sync.idle();
    expect(published.at(-1)!.ids).toEqual([]);
  });

  it("asks for fewer routers at a time after a timeout, down to Neutron's minimum, and grows back", async () => {
    const { server, published, sync } = setup();
    for (let i = 0; i < 300; i++) server.add(`r${String(i).padStart(3, "0")}`);
    let timeouts = 1;
    server.trouble = (ids) => (ids && ids.length > 128 && timeouts-- > 0 ? timeout() : undefined);
    sync.fullSync("start");
    await sync.idle();
    expect(server.chunks).toEqual([128, 128, 44]);
    expect(published.at(-1)!.ids).toHaveLength(300);
    expect(sync.syncChunkSize).toBe(128 + SYNC_ROUTERS_MIN_CHUNK_SIZE);
    expect(SYNC_ROUTERS_MAX_CHUNK_SIZE).toBe(256);
    await sync.stop();
  });

  it("a long full sync logs routers fetched / total at info, at most once a second", async () => {
    const server = new L3Server();
    for (let i = 0; i < 1000; i++) server.add(`r${i}`);
    const lines: { level: number; time: number; msg: string; done?: number; total?: number; progress?: string; reason?: string }[] = [];
    const sync = new RouterSync({
      api: {
        getRouterIds: () => server.getRouterIds(),
        // 4 chunks of 256, 350 ms each: about 1.4 s.
        syncRouters: async (ids) => {
          await new Promise((r) => setTimeout(r, 350));
          return server.syncRouters(ids);
        },
      },
      logger: pino({ level: "info" }, { write: (m: string) => void lines.push(JSON.parse(m) as (typeof lines)[number]) }),
      publish: () => undefined,
    });
    const started = Date.now();
    sync.fullSync("start");
    await sync.idle();
    const progress = lines.filter((l) => l.msg === "full sync of routers progress");
    expect(progress).toHaveLength(1);
    expect(progress[0]).toMatchObject({ level: 30, reason: "start", total: 1000, progress: `${String(progress[0]!.done)}/1000` });
    // 2 of 4 chunks at the first second (3 under load); never all of them.
    expect([512, 768]).toContain(progress[0]!.done);
    expect(progress[0]!.time - started).toBeGreaterThanOrEqual(990);
    expect(lines.at(-1)).toMatchObject({ msg: "full sync of routers from neutron-server", routers: 1000 });
  });
});

