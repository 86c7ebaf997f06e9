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
});
