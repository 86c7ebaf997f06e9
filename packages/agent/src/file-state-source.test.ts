import { mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Problem } from "./agent-errors.js";
import type { StateDocument, StateSink } from "./extension-points.js";
import { FileStateSource, mergeStateDocuments, parseStateText } from "./file-state-source.js";

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

describe("FileStateSource", () => {
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
    source = new FileStateSource({ path, logger, debounceMs });
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
      source = new FileStateSource({ path: file, logger, debounceMs: 10, pollMs: 50 });
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

    it("an empty directory is an empty document", async () => {
      const sink = await startOn(dir);
      expect(sink.updates).toEqual([{ document: {}, origin: dir }]);
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
