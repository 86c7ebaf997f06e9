import type { RabbitOptions } from "./rabbit-options.js";

/** The share of a delay that is randomised, so that agents losing the same broker do not return in step. */
export const RECONNECT_JITTER = 0.2;

/**
 * How long to wait before the next round of connection attempts, after `round` (1, 2, ...) rounds
 * in which every host failed: `rabbit_retry_interval` multiplied by `rabbit_retry_backoff` per
 * round, capped at `rabbit_interval_max`, spread by ±20% but never above the cap.
 */
export function reconnectDelayMs(round: number, options: Pick<RabbitOptions, "rabbit_retry_interval" | "rabbit_retry_backoff" | "rabbit_interval_max">, random: () => number = Math.random): number {
  const initial = Math.max(0, options.rabbit_retry_interval) * 1000;
  const max = Math.max(initial, options.rabbit_interval_max * 1000);
  const factor = Math.max(1, options.rabbit_retry_backoff);
  // Cap the base below the maximum by the jitter so that the spread delay stays within it.
  const base = Math.min(initial * factor ** Math.max(0, round - 1), max / (1 + RECONNECT_JITTER));
  return Math.round(Math.min(max, base * (1 + RECONNECT_JITTER * (2 * random() - 1))));
}
