import type { ApplyEvent } from "@chainwarden/agent";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { FloatingIpStatuses } from "./floating-ip-statuses.js";
import type { FloatingIpStatus, RouterDict } from "./l3-plugin-api.js";

/** The server's floating IP table as `update_floatingip_statuses` changes it. */
class FipTable {
  readonly status = new Map<string, string>();
  updates = 0;
  down = false;
  async updateFloatingipStatuses(_router: string, statuses: Record<string, FloatingIpStatus>): Promise<void> {
    if (this.down) throw new Error("no answer");
    this.updates++;
    for (const [id, s] of Object.entries(statuses)) this.status.set(id, s);
  }
}

const router = (id: string, fips: { id: string; status?: string }[]): RouterDict => ({ id, _floatingips: fips });
const applied = (resources: string[], extra: Partial<ApplyEvent> = {}): ApplyEvent => ({ namespace: "qrouter-x", resources, durationMs: 1, full: false, ...extra });

function setup(routers: Map<string, RouterDict>) {
  const table = new FipTable();
  const statuses = new FloatingIpStatuses({ api: table, routers: () => routers, logger: pino({ level: "silent" }) });
  return { table, statuses };
}

describe("FloatingIpStatuses", () => {
  it("ACTIVE once the router applied, only for floating IPs the server does not already show ACTIVE, once", async () => {
    const routers = new Map([["r1", router("r1", [{ id: "f1", status: "DOWN" }, { id: "f2", status: "ACTIVE" }])]]);
    const { table, statuses } = setup(routers);
    await statuses.onApply(applied(["router/r1"]));
    expect(Object.fromEntries(table.status)).toEqual({ f1: "ACTIVE" });
    await statuses.onApply(applied(["router/r1"]));
    expect(table.updates).toBe(1);
  });

  it("ERROR when the apply failed; DOWN for one that left the router or went with it", async () => {
    const routers = new Map([["r1", router("r1", [{ id: "f1" }, { id: "f2" }])]]);
    const { table, statuses } = setup(routers);
    await statuses.onApply(applied(["router/r1"], { error: new Error("restore failed") }));
    expect(Object.fromEntries(table.status)).toEqual({ f1: "ERROR", f2: "ERROR" });
    await statuses.onApply(applied(["router/r1"]));
    expect(Object.fromEntries(table.status)).toEqual({ f1: "ACTIVE", f2: "ACTIVE" });
    routers.set("r1", router("r1", [{ id: "f1", status: "ACTIVE" }]));
    await statuses.onApply(applied(["router/r1"]));
    expect(table.status.get("f2")).toBe("DOWN");
    routers.delete("r1");
    await statuses.onApply(applied(["router/r1"]));
    expect(table.status.get("f1")).toBe("DOWN");
  });

  it("says nothing of a held router, nor of other kinds; a report that did not arrive is sent again", async () => {
    const routers = new Map([["r1", router("r1", [{ id: "f1" }])]]);
    const { table, statuses } = setup(routers);
    await statuses.onApply(applied(["router/r1", "firewall_group/g1"], { held: ["router/r1"] }));
    expect(table.updates).toBe(0);
    table.down = true;
    await statuses.onApply(applied(["router/r1"]));
    table.down = false;
    await statuses.onApply(applied(["router/r1"]));
    expect(Object.fromEntries(table.status)).toEqual({ f1: "ACTIVE" });
  });
});
