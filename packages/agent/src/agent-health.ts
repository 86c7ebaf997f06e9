import type { StateSourceHealth } from "./extension-points.js";
import type { LoopHealth } from "./reconcile-loop.js";

/** The body of `/healthz` and `/readyz`: whether, why not (one line per reason), and the facts checked. */
export interface HealthReport {
  readonly ok: boolean;
  /** Empty when ok. */
  readonly reasons: readonly string[];
  readonly [fact: string]: unknown;
}

/** What the health endpoints are asked (`serveMetrics`' `health`). */
export interface HealthChecks {
  /** `/healthz`: alive and not stuck. */
  live(): HealthReport;
  /** `/readyz`: synced and every state source delivering. */
  ready(): HealthReport;
}

/** What the agent shows of a run for its health. */
export interface HealthView {
  /** The agent's phase: its sources starting, running (first sync included), stopping. */
  readonly phase: "starting" | "running" | "stopping";
  readonly loop: LoopHealth;
  /** Every state source of the run, with what it says of itself (undefined: it has no `health`). */
  readonly sources: readonly { readonly name: string; readonly health: StateSourceHealth | undefined; readonly started: boolean }[];
}

/**
 * `/healthz`: the agent is alive and its reconcile loop is not stuck.
 *
 * - **Alive**: the endpoint is answered by the agent's one JavaScript thread, the one that runs the
 *   reconcile loop, so an answer at all shows the event loop turns; a blocked event loop gives no
 *   answer, and the probe's own timeout fails it. (Its lag is `nodejs_eventloop_lag_seconds` on
 *   `/metrics`.)
 * - **Stuck**: a namespace run — one pass of the handlers over one namespace and its
 *   iptables-restore — has been in flight for longer than `stuck_after_seconds` (default 300). Every
 *   run ends in a bounded time when the host answers (each restore waits at most
 *   `lock_wait_seconds` for the xtables lock per attempt), so one that has not is waiting on
 *   something that will not come back (a hung tool, a handler awaiting forever): it keeps a worker
 *   slot, its namespace never applies again, and with `max_parallel_namespaces` such runs nothing
 *   applies at all. Work waiting for a retry is not stuck (it is failing, and says so in the logs
 *   and `chainwarden_retries_total`); neither is a long full pass whose runs each finish.
 *
 * 503 when stuck, with the namespace and how long it has run; 200 otherwise, also while the agent
 * starts (its sources may wait minutes for neutron-server) or stops.
 */
export function liveness(view: HealthView, stuckAfterSeconds: number): HealthReport {
  const reasons: string[] = [];
  const oldest = view.loop.oldestRun;
  if (oldest && oldest.seconds > stuckAfterSeconds) {
    reasons.push(`stuck: the run of namespace ${oldest.namespace ?? "(host)"} has been in flight for ${Math.round(oldest.seconds)} s (stuck_after_seconds: ${stuckAfterSeconds})`);
  }
  return {
    ok: reasons.length === 0,
    reasons,
    phase: view.phase,
    loop: view.loop.state,
    runs: view.loop.running,
    oldestRunSeconds: oldest ? round(oldest.seconds) : null,
    stuckAfterSeconds,
  };
}

/**
 * `/readyz`: the agent has done its first full sync and every state source delivers.
 *
 * - **First full sync done**: `start`'s full pass over a desired state has finished (namespaces
 *   that failed count: they are retried, and reported on `/metrics` and in the logs); when that pass
 *   had no state yet (neutron-server answered late, the state file was invalid), every namespace the
 *   first state read since touches has finished a run.
 * - **Every state source ready**: each says it has `delivered` a complete state (a file read, a full
 *   sync from neutron-server) and is not disconnected (`connected: false`: the RPC sources while the
 *   message broker is away — casts sent meanwhile are lost until the full sync after the reconnect).
 *   A source that does not report health is ready once started.
 *
 * 503 with the reasons otherwise, also while the agent stops.
 */
export function readiness(view: HealthView): HealthReport {
  const reasons: string[] = [];
  const { loop } = view;
  if (view.phase === "stopping") reasons.push("the agent is stopping");
  else if (view.phase === "starting") reasons.push("the agent is starting its state sources");
  else if (!loop.synced) {
    if (!loop.startPassDone) reasons.push("the initial full sync has not finished");
    else if (!loop.stateRead) reasons.push("no desired state was read yet");
    else if (loop.firstStatePending > 0) reasons.push(`the first desired state is being applied: ${loop.firstStatePending} namespaces left`);
    else reasons.push("the first full sync has not finished");
  }
  const sources = view.sources.map((s) => {
    const h = s.health;
    const delivered = h ? h.delivered : s.started;
    if (!delivered || h?.connected === false) {
      const what = [!delivered ? "nothing delivered yet" : undefined, h?.connected === false ? "not connected" : undefined].filter(Boolean).join(", ");
      reasons.push(`state source ${s.name}: ${h?.detail ?? what}`);
    }
    return { name: s.name, delivered, ...(h?.connected !== undefined ? { connected: h.connected } : {}) };
  });
  return { ok: reasons.length === 0, reasons, phase: view.phase, synced: loop.synced, stateRead: loop.stateRead, sources };
}

function round(seconds: number): number {
  return Math.round(seconds * 1000) / 1000;
}
