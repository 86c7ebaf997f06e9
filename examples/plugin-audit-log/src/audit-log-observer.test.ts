import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ApplyEvent } from "@chainwarden/agent";
import type { FamilyApplyResult } from "@chainwarden/core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AuditLogObserver, auditRecord } from "./audit-log-observer.js";

function family(family: 4 | 6, lines: number): FamilyApplyResult {
  return {
    family,
    namespace: "ns1",
    input: "",
    lines,
    tables: lines ? ["filter"] : [],
    changes: [],
    full: false,
    sent: lines > 0,
    lockRetries: 0,
    durationMs: 1,
  };
}

const applied: ApplyEvent = {
  namespace: "ns1",
  resources: ["chain_set/web"],
  result: { families: [family(4, 3), family(6, 0)], sent: true, lines: 3, deferred: false },
  durationMs: 12.34567,
  full: true,
};

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "audit-log-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("auditRecord", () => {
  it("records the namespace, resources, lines sent per family and the duration", () => {
    expect(auditRecord(applied, new Date("2026-01-02T03:04:05Z"))).toEqual({
      time: "2026-01-02T03:04:05.000Z",
      namespace: "ns1",
      resources: ["chain_set/web"],
      full: true,
      families: [
        { family: 4, sent: true, lines: 3, tables: ["filter"] },
        { family: 6, sent: false, lines: 0, tables: [] },
      ],
      lines_sent: 3,
      duration_ms: 12.346,
      error: null,
    });
  });

  it("records a failed apply with its error and nothing sent", () => {
    const r = auditRecord({ namespace: undefined, resources: ["chain_set/x"], error: new Error("restore failed"), durationMs: 2, full: false });
    expect(r).toMatchObject({ namespace: null, families: [], lines_sent: 0, error: "restore failed" });
  });
});

describe("AuditLogObserver", () => {
  it("appends one JSON line per apply, in order", async () => {
    const path = join(dir, "audit.jsonl");
    const observer = new AuditLogObserver(path);
    await Promise.all([1, 2, 3].map((n) => observer.onApply({ ...applied, resources: [`chain_set/s${n}`] })));
    const lines = readFileSync(path, "utf8").trimEnd().split("\n").map((l) => JSON.parse(l) as { resources: string[] });
    expect(lines.map((l) => l.resources[0])).toEqual(["chain_set/s1", "chain_set/s2", "chain_set/s3"]);
  });

  it("rejects when the file cannot be written, and keeps writing afterwards", async () => {
    const observer = new AuditLogObserver(join(dir, "missing-dir", "audit.jsonl"));
    await expect(observer.onApply(applied)).rejects.toThrow(/ENOENT/);
    const ok = new AuditLogObserver(join(dir, "ok.jsonl"));
    await ok.onApply(applied);
    expect(readFileSync(join(dir, "ok.jsonl"), "utf8")).toContain('"lines_sent":3');
  });
});
