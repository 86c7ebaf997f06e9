import { describe, expect, it } from "vitest";
import { DocumentAssembler, documentBatches } from "./state-file-transfer.js";

const sample = () => {
  const devices: Record<string, unknown> = {};
  for (let i = 0; i < 50; i++) devices[`p${i}`] = { mac: `fa:16:3e:00:00:${i}`, fixed_ips: [`10.0.0.${i}`], security_groups: ["sg1"] };
  return JSON.parse(JSON.stringify({ devices, routers: Array.from({ length: 30 }, (_, i) => ({ id: `r${i}`, ports: [1, 2, 3] })), "10": "numeric-looking key", n: 1 })) as Record<string, unknown>;
};

describe("documentBatches / DocumentAssembler", () => {
  it("rebuild the document, key order included, from batches of at most maxNodes nodes", () => {
    const doc = sample();
    const batches = [...documentBatches(doc, 40)];
    expect(batches.length).toBeGreaterThan(5);
    const assembler = new DocumentAssembler();
    for (const b of batches) assembler.add(structuredClone(b));
    expect(assembler.document).toEqual(doc);
    expect(JSON.stringify(assembler.document)).toBe(JSON.stringify(doc));
  });

  it("sends a small document in one batch", () => {
    const doc = { a: [1, 2], b: { c: "d" } };
    expect([...documentBatches(doc)]).toEqual([[[[], doc]]]);
  });

  it("keeps __proto__ a plain key when it places a container's children one by one", () => {
    const doc = JSON.parse(`{"__proto__": {${Array.from({ length: 20 }, (_, i) => `"k${i}": ${i}`).join(",")}}}`) as Record<string, unknown>;
    const assembler = new DocumentAssembler();
    for (const b of documentBatches(doc, 5)) assembler.add(structuredClone(b));
    expect(Object.getPrototypeOf(assembler.document)).toBe(Object.prototype);
    expect(JSON.stringify(assembler.document)).toBe(JSON.stringify(doc));
    expect(({} as Record<string, unknown>).k1).toBeUndefined();
  });
});
