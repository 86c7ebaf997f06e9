import { execFileSync } from "node:child_process";
import { mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Problem } from "./agent-errors.js";
import { AgentMetrics } from "./agent-metrics.js";
import type { StateDocument, StateSink } from "./extension-points.js";
import { FileStateSource, mergeStateDocuments, parseStateText, type FileStateSourceOptions } from "./file-state-source.js";
import { serveMetrics, type MetricsServer } from "./metrics-server.js";
import { defaultStateFileWorkerScript } from "./state-file-reader.js";

const logger = pino({ level: "silent" });

class RecordingSink implements StateSink {
  readonly updates: { document: StateDocument; origin: string }[] = [];
  readonly problems: Problem[] = [];
  update(document: StateDocument, origin: string): void {
    this.updates.push({ document, origin });
  }
  problem(problem: Problem): void {
    this.problems.push(problem);
  }
  get last(): StateDocument | undefined {
    return this.updates.at(-1)?.document;
  }
}

async function until(check: () => boolean, timeoutMs = 3_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error("condition not reached in time");
    await sleep(10);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Every behaviour holds whether a file is parsed inline or in the worker thread (offThreadBytes: 0).
describe.each([
  { mode: "parsed inline", offThreadBytes: undefined },
  { mode: "parsed in the worker thread", offThreadBytes: 0 },
])("FileStateSource ($mode)", ({ offThreadBytes }) => {
  let dir: string;
  let source: FileStateSource | undefined;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "cw-state-"));
  });
  afterEach(async () => {
    await source?.stop();
    source = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  async function startOn(path: string, debounceMs = 30): Promise<RecordingSink> {
    const sink = new RecordingSink();
    source = new FileStateSource({ path, logger, debounceMs, ...(offThreadBytes !== undefined ? { offThreadBytes } : {}) });
    await source.start(sink);
    return sink;
  }

  describe("a single file", () => {
    it("delivers the first document before start() resolves, then each change", async () => {
      const file = join(dir, "state.yaml");
      writeFileSync(file, "routers:\n  - id: r1\n");
      const sink = await startOn(file);
      expect(sink.updates).toEqual([{ document: { routers: [{ id: "r1" }] }, origin: file }]);

      writeFileSync(file, "routers:\n  - id: r1\n  - id: r2\n");
      await until(() => sink.updates.length === 2);
      expect(sink.last).toEqual({ routers: [{ id: "r1" }, { id: "r2" }] });
      expect(sink.problems).toEqual([]);
    });

    it("parses JSON files too", async () => {
      const file = join(dir, "state.json");
      writeFileSync(file, JSON.stringify({ devices: { p1: { mac: "fa:16:3e:00:00:01" } } }));
      const sink = await startOn(file);
      expect(sink.last).toEqual({ devices: { p1: { mac: "fa:16:3e:00:00:01" } } });
    });

    it("does not deliver a rewrite with the same content", async () => {
      const file = join(dir, "state.yaml");
      writeFileSync(file, "a: 1\n");
      const sink = await startOn(file);
      writeFileSync(file, "a: 1\n");
      writeFileSync(file, "a:   1 # same value, other text\n");
      await sleep(200);
      expect(sink.updates).toHaveLength(1);
    });

    it("coalesces a burst of writes into one delivery of the final content", async () => {
      const file = join(dir, "state.yaml");
      writeFileSync(file, "n: 0\n");
      const sink = await startOn(file, 100);
      for (let i = 1; i <= 20; i++) writeFileSync(file, `n: ${i}\n`);
      await until(() => sink.updates.length >= 2);
      await sleep(300);
      expect(sink.updates.map((u) => u.document)).toEqual([{ n: 0 }, { n: 20 }]);
    });

    it("sees an editor's atomic replace (write a temporary file, rename it over)", async () => {
      const file = join(dir, "state.yaml");
      writeFileSync(file, "v: 1\n");
      const sink = await startOn(file);
      const tmp = join(dir, ".state.yaml.tmp");
      writeFileSync(tmp, "v: 2\n");
      renameSync(tmp, file);
      await until(() => sink.updates.length === 2);
      expect(sink.last).toEqual({ v: 2 });
      // And again: the watcher survives the replaced inode.
      writeFileSync(tmp, "v: 3\n");
      renameSync(tmp, file);
      await until(() => sink.updates.length === 3);
      expect(sink.last).toEqual({ v: 3 });
    });

    it("reports a file that does not parse with its position, and keeps the last good state", async () => {
      const file = join(dir, "state.yaml");
      writeFileSync(file, "routers:\n  - id: r1\n");
      const sink = await startOn(file);

      writeFileSync(file, "routers:\n  - id: r1\n   bad: [\n");
      await until(() => sink.problems.length === 1);
      expect(sink.problems[0]).toMatchObject({ source: file, path: "" });
      expect(sink.problems[0]!.message).toMatch(/line 3, column \d+/);
      expect(sink.updates).toHaveLength(1);

      // Not a mapping at the top level: also a problem, nothing delivered.
      writeFileSync(file, "- id: r1\n");
      await until(() => sink.problems.length === 2);
      expect(sink.problems[1]!.message).toMatch(/expected a mapping at the top level, found a list at line 1, column 1/);
      expect(sink.updates).toHaveLength(1);

      // Fixed: delivered again.
      writeFileSync(file, "routers:\n  - id: r2\n");
      await until(() => sink.updates.length === 2);
      expect(sink.last).toEqual({ routers: [{ id: "r2" }] });
    });

    it("reports a duplicate key in JSON with its line", async () => {
      const file = join(dir, "state.json");
      writeFileSync(file, '{\n  "a": 1,\n  "a": 2\n}\n');
      const sink = await startOn(file);
      expect(sink.updates).toEqual([]);
      expect(sink.problems).toHaveLength(1);
      expect(sink.problems[0]!.message).toBe("cannot parse at line 3, column 3: Map keys must be unique");
    });

    it("treats deleting the file as a problem and keeps the state; recreating it delivers again", async () => {
      const file = join(dir, "state.yaml");
      writeFileSync(file, "v: 1\n");
      const sink = await startOn(file);
      unlinkSync(file);
      await until(() => sink.problems.length === 1);
      expect(sink.problems[0]).toMatchObject({ source: file, message: expect.stringMatching(/deleted/) });
      expect(sink.updates).toHaveLength(1);

      writeFileSync(file, "v: 2\n");
      await until(() => sink.updates.length === 2);
      expect(sink.last).toEqual({ v: 2 });
      expect(sink.problems).toHaveLength(1);
    });

    it("reports a missing file at start and picks it up once it appears", async () => {
      const file = join(dir, "later.yaml");
      const sink = await startOn(file);
      expect(sink.problems).toEqual([{ source: file, path: "", message: "state file does not exist" }]);
      writeFileSync(file, "v: 1\n");
      await until(() => sink.updates.length === 1);
      expect(sink.last).toEqual({ v: 1 });
    });

    it("stops watching on stop()", async () => {
      const file = join(dir, "state.yaml");
      writeFileSync(file, "v: 1\n");
      const sink = await startOn(file);
      await source!.stop();
      writeFileSync(file, "v: 2\n");
      await sleep(200);
      expect(sink.updates).toHaveLength(1);
    });

    it("also works with the polling fallback on", async () => {
      const file = join(dir, "state.yaml");
      writeFileSync(file, "v: 1\n");
      const sink = new RecordingSink();
      source = new FileStateSource({ path: file, logger, debounceMs: 10, pollMs: 50, ...(offThreadBytes !== undefined ? { offThreadBytes } : {}) });
      await source.start(sink);
      writeFileSync(file, "v: 2\n");
      await until(() => sink.updates.length === 2);
      expect(sink.last).toEqual({ v: 2 });
    });
  });

  describe("a directory", () => {
    it("merges its files in name order: lists concatenated, mappings shallow-merged", async () => {
      writeFileSync(join(dir, "20-b.json"), JSON.stringify({ routers: [{ id: "r2" }], devices: { p2: { id: "p2" } } }));
      writeFileSync(join(dir, "10-a.yaml"), "routers:\n  - id: r1\ndevices:\n  p1: { id: p1 }\n");
      writeFileSync(join(dir, "30-c.yml"), "security_groups:\n  sg1: []\n");
      writeFileSync(join(dir, "notes.txt"), "not state");
      writeFileSync(join(dir, ".hidden.yaml"), "routers: [{ id: hidden }]\n");
      const sink = await startOn(dir);
      expect(sink.updates).toEqual([
        {
          document: {
            routers: [{ id: "r1" }, { id: "r2" }],
            devices: { p1: { id: "p1" }, p2: { id: "p2" } },
            security_groups: { sg1: [] },
          },
          origin: dir,
        },
      ]);
      expect(sink.problems).toEqual([]);
    });

    it("reports the same key in two files' mappings, naming both; the later file wins", async () => {
      const a = join(dir, "a.yaml");
      const b = join(dir, "b.yaml");
      writeFileSync(a, "devices:\n  p1: { v: 1 }\n");
      writeFileSync(b, "devices:\n  p1: { v: 2 }\n");
      const sink = await startOn(dir);
      expect(sink.last).toEqual({ devices: { p1: { v: 2 } } });
      expect(sink.problems).toHaveLength(1);
      expect(sink.problems[0]).toMatchObject({ source: b, path: "devices.p1" });
      expect(sink.problems[0]!.message).toContain(a);
      expect(sink.problems[0]!.message).toContain(b);
    });

    it("sees added, changed and deleted files; a deleted file's contribution goes", async () => {
      writeFileSync(join(dir, "a.yaml"), "routers: [{ id: r1 }]\n");
      const sink = await startOn(dir);
      writeFileSync(join(dir, "b.yaml"), "routers: [{ id: r2 }]\n");
      await until(() => sink.updates.length === 2);
      expect(sink.last).toEqual({ routers: [{ id: "r1" }, { id: "r2" }] });

      unlinkSync(join(dir, "a.yaml"));
      await until(() => sink.updates.length === 3);
      expect(sink.last).toEqual({ routers: [{ id: "r2" }] });
      expect(sink.problems).toEqual([]);
    });

    it("a broken file keeps its last good content and does not block the other files", async () => {
      const a = join(dir, "a.yaml");
      const b = join(dir, "b.yaml");
      writeFileSync(a, "routers: [{ id: r1 }]\n");
      writeFileSync(b, "routers: [{ id: r2 }]\n");
      const sink = await startOn(dir);

      writeFileSync(a, "routers: [{ id: r1 }\n");
      await until(() => sink.problems.length === 1);
      expect(sink.problems[0]).toMatchObject({ source: a, path: "" });
      expect(sink.problems[0]!.message).toMatch(/line \d+, column \d+/);
      await sleep(100);
      expect(sink.updates).toHaveLength(1);

      writeFileSync(b, "routers: [{ id: r3 }]\n");
      await until(() => sink.updates.length === 2);
      expect(sink.last).toEqual({ routers: [{ id: "r1" }, { id: "r3" }] });
      expect(sink.problems).toHaveLength(1);
    });

    it("skips a FIFO named like a state file without opening it (an open would wait for a writer)", async () => {
      writeFileSync(join(dir, "a.yaml"), "routers: [{ id: r1 }]\n");
      execFileSync("mkfifo", [join(dir, "b.yaml")]);
      const sink = await startOn(dir);
      expect(sink.updates).toEqual([{ document: { routers: [{ id: "r1" }] }, origin: dir }]);
      expect(sink.problems).toEqual([]);
    });

    it("an empty directory is an empty document", async () => {
      const sink = await startOn(dir);
      expect(sink.updates).toEqual([{ document: {}, origin: dir }]);
    });
  });
});

describe("FileStateSource: bounded cost of input", () => {
  let dir: string;
  let source: FileStateSource | undefined;
  let server: MetricsServer | undefined;
  /** What the source logged at warn and above (a thrown error used to be logged, with its stack). */
  let logged: string[];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "cw-state-"));
    logged = [];
  });
  afterEach(async () => {
    await source?.stop();
    source = undefined;
    await server?.close();
    server = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  async function startOn(path: string, options: Partial<FileStateSourceOptions> = {}): Promise<RecordingSink> {
    const sink = new RecordingSink();
    const recording = pino({ level: "warn" }, { write: (line: string) => void logged.push(line) });
    source = new FileStateSource({ path, logger: recording, debounceMs: 30, ...options });
    await source.start(sink);
    return sink;
  }

  /** Events in the watched directory for a second (as a log file written beside the state would make). */
  async function churnFor(ms: number): Promise<void> {
    const end = Date.now() + ms;
    for (let i = 0; Date.now() < end; i++) {
      writeFileSync(join(dir, "agent.log"), `line ${i}\n`);
      await sleep(20);
    }
  }

  it("an alias cycle is one problem with its position, not an error logged on every event", async () => {
    const file = join(dir, "state.yaml");
    writeFileSync(file, "a: &a [*a]\n");
    const sink = await startOn(file);
    expect(sink.problems).toEqual([
      { source: file, path: "", message: "cannot parse at line 1, column 8: alias *a is inside the node that &a names (which starts at line 1, column 7): an alias cycle" },
    ]);
    await churnFor(1_000);
    expect(sink.problems).toHaveLength(1);
    expect(sink.updates).toEqual([]);
    expect(logged).toEqual([]);
  });

  it("an alias cycle in one file of a directory: a problem, the other files still delivered", async () => {
    writeFileSync(join(dir, "a.yaml"), "routers: [{ id: r1 }]\n");
    writeFileSync(join(dir, "b.yaml"), "devices: &d { p1: { self: *d } }\n");
    const sink = await startOn(dir);
    expect(sink.updates).toEqual([{ document: { routers: [{ id: "r1" }] }, origin: dir }]);
    expect(sink.problems).toHaveLength(1);
    expect(sink.problems[0]).toEqual({
      source: join(dir, "b.yaml"),
      path: "",
      message: "cannot parse at line 1, column 27: alias *d is inside the node that &d names (which starts at line 1, column 13): an alias cycle",
    });
    await churnFor(500);
    expect(sink.problems).toHaveLength(1);
    expect(logged).toEqual([]);
  });

  it("an alias bomb is a problem at the alias that crosses the limit; the last good state stays", async () => {
    const file = join(dir, "state.yaml");
    writeFileSync(file, "routers: [{ id: r1 }]\n");
    const sink = await startOn(file);
    const lol = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n';
    const levels = "bcdefg".split("").map((x, i) => `${x}: &${x} [${Array(9).fill(`*${"abcdefg"[i]}`).join(",")}]\n`);
    writeFileSync(file, lol + levels.join(""));
    await until(() => sink.problems.length === 1);
    expect(sink.problems[0]).toEqual({
      source: file,
      path: "",
      message: "cannot parse at line 7, column 8: the aliases stand for more than 1000000 nodes when expanded (an alias bomb?)",
    });
    await sleep(200);
    expect(sink.updates).toHaveLength(1);
    expect(sink.last).toEqual({ routers: [{ id: "r1" }] });
  });

  it("a file over state_max_bytes is a problem naming it, its size and the limit; the last good state stays", async () => {
    const file = join(dir, "state.yaml");
    writeFileSync(file, "routers: [{ id: r1 }]\n");
    const sink = await startOn(file, { maxBytes: 1_000 });
    const big = `routers: [{ id: r2 }]\n# ${"x".repeat(2_000)}\n`;
    writeFileSync(file, big);
    await until(() => sink.problems.length === 1);
    expect(sink.problems[0]).toEqual({
      source: file,
      path: "",
      message: `state file ${file} is ${big.length} bytes, over the limit of 1000 bytes (state_max_bytes); it is not read; the last good state stays in force`,
    });
    // Written again, still too large: not reported again.
    writeFileSync(file, big);
    await churnFor(300);
    expect(sink.problems).toHaveLength(1);
    expect(sink.updates).toHaveLength(1);
    expect(sink.last).toEqual({ routers: [{ id: "r1" }] });
    // Small enough again: read.
    writeFileSync(file, "routers: [{ id: r3 }]\n");
    await until(() => sink.updates.length === 2);
    expect(sink.last).toEqual({ routers: [{ id: "r3" }] });
  });

  it("a file of a directory over the limit keeps its last good content", async () => {
    const a = join(dir, "a.yaml");
    writeFileSync(a, "routers: [{ id: r1 }]\n");
    writeFileSync(join(dir, "b.yaml"), "routers: [{ id: r2 }]\n");
    const sink = await startOn(dir, { maxBytes: 1_000 });
    const big = `routers: [{ id: r9 }]\n# ${"x".repeat(2_000)}\n`;
    writeFileSync(a, big);
    await until(() => sink.problems.length === 1);
    expect(sink.problems[0]).toEqual({
      source: a,
      path: "",
      message: `state file ${a} is ${big.length} bytes, over the limit of 1000 bytes (state_max_bytes); it is not read; its last good content stays in force`,
    });
    writeFileSync(join(dir, "b.yaml"), "routers: [{ id: r3 }]\n");
    await until(() => sink.updates.length === 2);
    expect(sink.last).toEqual({ routers: [{ id: "r1" }, { id: "r3" }] });
  });

  it("a .json file with a syntax error is a problem with line and column (it is JSON, not YAML)", async () => {
    const file = join(dir, "state.json");
    writeFileSync(file, '{\n  "routers": [\n    {"id": "r1"}\n  ]\n}\n');
    const sink = await startOn(file);
    // A trailing comma: the YAML parser took it.
    writeFileSync(file, '{\n  "routers": [\n    {"id": "r1"},\n    {"id": "r2"},\n  ]\n}\n');
    await until(() => sink.problems.length === 1);
    expect(sink.problems[0]).toEqual({ source: file, path: "", message: "cannot parse at line 5, column 3: expected a value, found ']'" });
    expect(sink.updates).toHaveLength(1);
  });

  it("the same document parsed inline or in the worker is the same state: no second delivery", async () => {
    const file = join(dir, "state.yaml");
    writeFileSync(file, "routers: [{ id: r1 }]\n");
    const sink = await startOn(file, { offThreadBytes: 200 });
    // Over 200 bytes now (parsed in the worker), the same document.
    writeFileSync(file, `routers: [{ id: r1 }]\n# ${"x".repeat(300)}\n`);
    await churnFor(300);
    writeFileSync(file, `routers: [{ id: r2 }]\n# ${"x".repeat(300)}\n`);
    await until(() => sink.updates.length === 2);
    expect(sink.updates.map((u) => u.document)).toEqual([{ routers: [{ id: "r1" }] }, { routers: [{ id: "r2" }] }]);
  });

  it("a worker thread that dies is a problem, reported once", async () => {
    const script = join(dir, "dying-worker.mjs");
    writeFileSync(script, "process.exit(7);\n");
    const file = join(dir, "state.yaml");
    writeFileSync(file, "routers: [{ id: r1 }]\n");
    const sink = await startOn(file, { offThreadBytes: 0, workerScript: script });
    expect(sink.problems).toEqual([{ source: file, path: "", message: "cannot parse: the parser's worker thread exited (code 7); the last good state stays in force" }]);
    await churnFor(300);
    expect(sink.problems).toHaveLength(1);
    expect(sink.updates).toEqual([]);
  });

  describe("a multi-megabyte file", () => {
    // ~2 MB of YAML: 12,000 ports. Parsed on the event loop, this held it for seconds.
    const PORTS = 12_000;
    function writeLargeState(file: string): void {
      const lines = ["devices:"];
      for (let i = 0; i < PORTS; i++) {
        lines.push(
          `  port-${i}:`,
          `    mac_address: "fa:16:3e:00:${(i >> 8).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}"`,
          `    fixed_ips: ["10.0.${i >> 8}.${i & 255}"]`,
          `    security_groups: [sg-${i % 50}]`,
          "    device_owner: compute:nova",
          "    admin_state_up: true",
        );
      }
      writeFileSync(file, lines.join("\n") + "\n");
    }

    function getMetrics(port: number): Promise<number> {
      return new Promise((resolve, reject) => {
        const req = request({ host: "127.0.0.1", port, path: "/metrics" }, (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        });
        req.on("error", reject);
        req.end();
      });
    }

    it("is parsed off the event loop: /metrics keeps answering until the document is delivered", async () => {
      expect(defaultStateFileWorkerScript(), "build @chainwarden/agent first: the worker runs from dist").toBeDefined();
      const file = join(dir, "state.yaml");
      writeLargeState(file);
      const silent = pino({ level: "silent" });
      server = await serveMetrics(new AgentMetrics(), "127.0.0.1:0", silent);
      const port = server.port;
      const answered: number[] = [];
      let asking = true;
      const asker = (async () => {
        while (asking) {
          expect(await getMetrics(port)).toBe(200);
          answered.push(performance.now());
        }
      })();
      await until(() => answered.length > 0);

      const began = performance.now();
      const sink = await startOn(file);
      const delivered = performance.now();
      asking = false;
      await asker;

      expect(sink.updates).toHaveLength(1);
      const devices = sink.last!.devices as Record<string, Record<string, unknown>>;
      expect(Object.keys(devices)).toHaveLength(PORTS);
      expect(devices["port-4242"]).toEqual({ mac_address: "fa:16:3e:00:10:92", fixed_ips: ["10.0.16.146"], security_groups: ["sg-42"], device_owner: "compute:nova", admin_state_up: true });
      // Answered in the second half of the read, not only before the parse began: the loop was free
      // while the file was parsed. (No absolute time: only the order of events.)
      const midway = began + (delivered - began) / 2;
      expect(answered.filter((t) => t > midway && t < delivered).length).toBeGreaterThan(0);
    });

    it("stop() during the parse abandons it: nothing is delivered", async () => {
      const file = join(dir, "state.yaml");
      writeLargeState(file);
      const sink = new RecordingSink();
      source = new FileStateSource({ path: file, logger });
      const starting = source.start(sink);
      await sleep(50);
      await source.stop();
      await starting;
      expect(sink.updates).toEqual([]);
      expect(sink.problems).toEqual([]);
    });
  });
});

describe("parseStateText", () => {
  it("reports what and where", () => {
    expect(parseStateText("a: 1\n  b: 2\n", "f.yaml")).toEqual({
      problem: { source: "f.yaml", path: "", message: expect.stringMatching(/^cannot parse at line 1, column \d+: /) },
    });
    expect(parseStateText("", "f.yaml")).toMatchObject({ problem: { message: expect.stringMatching(/empty/) } });
    expect(parseStateText("\n\n42\n", "f.yaml")).toMatchObject({ problem: { message: "expected a mapping at the top level, found a number at line 3, column 1" } });
  });

  it("keeps __proto__ as a plain key", () => {
    const r = parseStateText("__proto__: { polluted: true }\n", "f.yaml");
    expect("document" in r && Object.getPrototypeOf(r.document)).toBe(Object.prototype);
    const merged = mergeStateDocuments([{ file: "a", document: (r as { document: StateDocument }).document }]);
    expect(Object.getPrototypeOf(merged.document)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
