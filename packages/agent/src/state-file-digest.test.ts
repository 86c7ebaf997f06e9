import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { digestStateDocument } from "./state-file-digest.js";

describe("digestStateDocument", () => {
  it("is the SHA-256 of the document's JSON", async () => {
    const docs = [
      {},
      { routers: [{ id: "r1" }, { id: "r2", n: [1, null] }], devices: { p1: { mac: "x" }, p2: {} }, n: 1, s: "x", nothing: null, empty: [], none: {} },
      JSON.parse('{"__proto__": {"a": 1}, "10": [true]}') as Record<string, unknown>,
    ];
    for (const doc of docs) {
      expect(await digestStateDocument(doc)).toBe(createHash("sha256").update(JSON.stringify(doc)).digest("base64"));
    }
  });

  it("gives the loop a turn when the work takes longer than a slice", async () => {
    const devices: Record<string, unknown> = {};
    for (let i = 0; i < 20_000; i++) devices[`p${i}`] = { fixed_ips: [`10.0.${i >> 8}.${i & 255}`] };
    let turns = 0;
    const counting = setInterval(() => turns++, 0);
    // A slice of 0 ms: a turn every 64 entries.
    const digest = await digestStateDocument({ devices }, 0);
    clearInterval(counting);
    expect(turns).toBeGreaterThan(0);
    expect(digest).toBe(createHash("sha256").update(JSON.stringify({ devices })).digest("base64"));
  });
});
