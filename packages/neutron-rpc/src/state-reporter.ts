import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import type { RpcTransport } from "./rpc-transport.js";

/** Neutron's topic for agent heartbeats (`neutron_lib.agent.topics.REPORTS`). */
export const REPORTS_TOPIC = "q-reports-plugin";

/** What the agent says about itself: the `agent_state` of `report_state`, without the per-report keys. */
export interface AgentState {
  binary: string;
  host: string;
  topic: string;
  agent_type: string;
  availability_zone?: string;
  configurations: Record<string, unknown>;
}

export interface StateReporterOptions {
  rpc: RpcTransport;
  state: AgentState;
  /** Counts that change (routers, floating IPs, ...), merged into `configurations` at each report. */
  counts?: () => Record<string, unknown>;
  /** Neutron `[AGENT] report_interval`; 0 sends no heartbeats (the server then shows the agent dead). */
  intervalMs: number;
  /** The server answered that it had taken the agent for dead: resync everything. */
  onRevived?: () => void;
  logger: Logger;
}

/**
 * The heartbeat Neutron's agents send (`PluginReportStateAPI.report_state`, a call so the server's
 * answer is read): the server shows the agent alive in `/v2.0/agents` while heartbeats arrive within
 * its `agent_down_time`, and schedules routers only to agents that are alive. The first report
 * carries `start_flag`, until one was delivered.
 */
export class StateReporter {
  private timer: NodeJS.Timeout | undefined;
  private started = false;
  private delivered = false;
  private failing = false;
  private inFlight: Promise<void> | undefined;

  constructor(private readonly options: StateReporterOptions) {}

  /** Sends the first report now and then one every interval. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    await this.report();
    if (this.options.intervalMs > 0) {
      this.timer = setInterval(() => void this.report(), this.options.intervalMs);
      this.timer.unref?.();
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.inFlight;
  }

  /** One report; overlapping ones are skipped (a slow server must not pile them up). */
  report(): Promise<void> {
    this.inFlight ??= this.send().finally(() => (this.inFlight = undefined));
    return this.inFlight;
  }

  private async send(): Promise<void> {
    const { state, counts, rpc, logger } = this.options;
    const agentState: Record<string, unknown> = {
      ...state,
      configurations: { ...state.configurations, ...counts?.() },
      uuid: randomUUID(),
    };
    if (!this.delivered) agentState.start_flag = true;
    try {
      const answer = await rpc.call(
        { topic: REPORTS_TOPIC, version: "1.2" },
        "report_state",
        { agent_state: { agent_state: agentState }, time: neutronTime(new Date()) },
        // As Neutron's agent: a report not answered within an interval is a failed one.
        { timeoutMs: Math.max(this.options.intervalMs, 1000) },
      );
      this.delivered = true;
      if (this.failing) logger.info("reported state to neutron-server after a previous failure");
      this.failing = false;
      if (answer === "revived") {
        logger.info("neutron-server had taken this agent for dead: full sync");
        this.options.onRevived?.();
      }
    } catch (err) {
      if (!this.failing) logger.warn({ err }, "reporting state to neutron-server failed (the server shows the agent dead after agent_down_time)");
      this.failing = true;
    }
  }
}

/** `datetime.utcnow().strftime('%Y-%m-%dT%H:%M:%S.%f')`, as Neutron's agents send `time`. */
export function neutronTime(date: Date): string {
  return `${date.toISOString().slice(0, 23)}000`;
}
