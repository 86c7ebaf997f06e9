import type { ApplyEvent, ApplyObserver } from "@chainwarden/agent";
import type { Logger } from "pino";
import type { FloatingIpStatus, L3PluginApi, RouterDict } from "./l3-plugin-api.js";

export interface FloatingIpStatusesOptions {
  api: Pick<L3PluginApi, "updateFloatingipStatuses">;
  /** The routers as the server last sent them, by id. */
  routers(): ReadonlyMap<string, RouterDict>;
  logger: Logger;
}

/**
 * Tells neutron-server what became of each router's floating IPs once its namespace was applied,
 * as Neutron's l3 agent does after processing a router: ACTIVE when the rules are in, ERROR when the
 * apply failed, DOWN for one that left the router. Only changes are sent: against the status the
 * server's router dict carries, and against what was sent before. A held router (invalid input, or a
 * failure waiting for its retry) reports nothing: its kernel state is kept, not what was asked.
 */
export class FloatingIpStatuses implements ApplyObserver {
  /** Per router: what we last told the server (or it told us) of each floating IP. */
  private readonly known = new Map<string, Map<string, FloatingIpStatus>>();

  constructor(private readonly options: FloatingIpStatusesOptions) {}

  async onApply(event: ApplyEvent): Promise<void> {
    const held = new Set(event.held ?? []);
    const routers = this.options.routers();
    for (const resource of event.resources) {
      if (!resource.startsWith("router/") || held.has(resource)) continue;
      const id = resource.slice("router/".length);
      const statuses = this.statusesFor(id, routers.get(id), event.error === undefined);
      if (Object.keys(statuses).length === 0) continue;
      try {
        await this.options.api.updateFloatingipStatuses(id, statuses);
        const known = this.known.get(id) ?? new Map<string, FloatingIpStatus>();
        for (const [fip, status] of Object.entries(statuses)) {
          // A floating IP reported DOWN has left the router: nothing more to say about it.
          if (status === "DOWN") known.delete(fip);
          else known.set(fip, status);
        }
        if (known.size > 0) this.known.set(id, known);
        else this.known.delete(id);
      } catch (err) {
        // The next apply of the router sends them again (nothing was recorded as sent).
        this.options.logger.warn({ err, resource }, "could not report floating IP statuses to neutron-server");
      }
    }
  }

  private statusesFor(routerId: string, router: RouterDict | undefined, applied: boolean): Record<string, FloatingIpStatus> {
    const out: Record<string, FloatingIpStatus> = {};
    const known = this.known.get(routerId) ?? new Map<string, FloatingIpStatus>();
    const now = new Set<string>();
    const fips = router && Array.isArray(router._floatingips) ? (router._floatingips as unknown[]) : [];
    for (const fip of fips) {
      const { id, status } = (fip ?? {}) as { id?: unknown; status?: unknown };
      if (typeof id !== "string") continue;
      now.add(id);
      const want: FloatingIpStatus = applied ? "ACTIVE" : "ERROR";
      const last = known.get(id) ?? (typeof status === "string" ? status : undefined);
      if (last !== want) out[id] = want;
    }
    for (const id of known.keys()) if (!now.has(id)) out[id] = "DOWN";
    return out;
  }
}
