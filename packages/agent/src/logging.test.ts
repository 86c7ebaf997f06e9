import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger } from "./logging.js";

function capture() {
  const lines: Record<string, unknown>[] = [];
  return { lines, destination: { write: (msg: string) => void lines.push(JSON.parse(msg) as Record<string, unknown>) } };
}

describe("createLogger", () => {
  it("writes JSON lines at or above its level, with the agent's name", () => {
    const { lines, destination } = capture();
    const logger = createLogger({ level: "warn", name: "l3-agent", destination });
    logger.info({ namespace: "qrouter-1" }, "namespace applied");
    logger.warn({ namespace: "qrouter-1" }, "namespace apply retried");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 40, name: "l3-agent", namespace: "qrouter-1", msg: "namespace apply retried" });
  });

  it("passes debug through at level debug, and nothing at silent", () => {
    const debug = capture();
    createLogger({ level: "debug", name: "a", destination: debug.destination }).debug({}, "x");
    expect(debug.lines).toHaveLength(1);
    const silent = capture();
    createLogger({ level: "silent", name: "a", destination: silent.destination }).fatal({}, "x");
    expect(silent.lines).toHaveLength(0);
  });

  it("child loggers carry their bindings (the agent gives each plugin { plugin })", () => {
    const { lines, destination } = capture();
    createLogger({ level: "info", name: "a", destination }).child({ plugin: "l3-nat" }).info({ router: "r1" }, "router added");
    expect(lines[0]).toMatchObject({ plugin: "l3-nat", router: "r1", msg: "router added" });
  });

  it("log_time: epoch milliseconds by default (pino's), ISO 8601 UTC text with iso", () => {
    const epoch = capture();
    createLogger({ level: "info", name: "a", destination: epoch.destination }).info({}, "x");
    expect(typeof epoch.lines[0]!.time).toBe("number");
    const iso = capture();
    createLogger({ level: "info", name: "a", time: "iso", destination: iso.destination }).info({}, "x");
    expect(iso.lines[0]!.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(Math.abs(Date.parse(iso.lines[0]!.time as string) - Date.now())).toBeLessThan(5_000);
  });

  it("log_format pretty: pino-pretty's text (not JSON), with the ISO time when asked", async () => {
    const chunks: string[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        chunks.push(chunk.toString());
        done();
      },
    });
    const logger = createLogger({ level: "info", name: "l3-agent", format: "pretty", time: "iso", destination });
    logger.info({ namespace: "qrouter-1" }, "namespace applied");
    await new Promise((r) => setTimeout(r, 50));
    const text = chunks.join("");
    expect(text).toMatch(/^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] INFO \(l3-agent\/\d+\): namespace applied\n/);
    expect(text).toContain('namespace: "qrouter-1"');
    expect(() => JSON.parse(text)).toThrow();
  });

  it("log_format json with a destination writes JSON even when asked auto", () => {
    const { lines, destination } = capture();
    createLogger({ level: "info", name: "a", format: "auto", destination }).info({}, "x");
    expect(lines).toHaveLength(1);
  });
});

