import { describe, expect, it } from "vitest";
import { RABBIT_DEFAULTS } from "./rabbit-options.js";
import { reconnectDelayMs } from "./reconnect-delay.js";

describe("reconnectDelayMs", () => {
  it("doubles from rabbit_retry_interval, is capped by rabbit_interval_max, and jitters ±20% within the cap", () => {
    const mid = () => 0.5;
    expect([1, 2, 3, 4, 5, 6, 7].map((round) => reconnectDelayMs(round, RABBIT_DEFAULTS, mid))).toEqual([1000, 2000, 4000, 8000, 16000, 25000, 25000]);
    expect(reconnectDelayMs(1, RABBIT_DEFAULTS, () => 0)).toBe(800);
    expect(reconnectDelayMs(1, RABBIT_DEFAULTS, () => 1)).toBe(1200);
    expect(reconnectDelayMs(50, RABBIT_DEFAULTS, () => 1)).toBe(30000);
  });
});
