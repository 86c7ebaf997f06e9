import { createHash } from "node:crypto";
import type { StateDocument } from "./extension-points.js";

const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * A digest of the document's JSON, to tell whether a newly read document differs from the one last
 * delivered. It hashes exactly what `JSON.stringify(document)` would produce, but piece by piece
 * (each entry of the top-level lists and mappings on its own) and hands the event loop a turn
 * whenever a piece of work took more than `sliceMs`: a 50 MB document takes ~0.3 s to serialize,
 * which the loop must not spend in one go (the metrics endpoint is served on this thread). A file
 * parsed in the worker thread comes with its digest computed there; this is for small files and a
 * directory's merged document.
 */
export async function digestStateDocument(document: StateDocument, sliceMs = 8): Promise<string> {
  const hash = createHash("sha256");
  let since = performance.now();
  let pieces = 0;
  const json = (v: unknown) => JSON.stringify(v) ?? "null";
  hash.update("{");
  let firstKey = true;
  for (const [key, value] of Object.entries(document)) {
    if (value === undefined || typeof value === "function" || typeof value === "symbol") continue;
    hash.update(`${firstKey ? "" : ","}${JSON.stringify(key)}:`);
    firstKey = false;
    if (Array.isArray(value)) {
      hash.update("[");
      for (let i = 0; i < value.length; i++) {
        hash.update(`${i === 0 ? "" : ","}${json(value[i])}`);
        if ((++pieces & 63) === 0 && performance.now() - since > sliceMs) {
          await yieldToLoop();
          since = performance.now();
        }
      }
      hash.update("]");
    } else if (typeof value === "object" && value !== null && !("toJSON" in value)) {
      hash.update("{");
      let first = true;
      // Object.keys, not entries: for 118,000 ports 26 ms in one go instead of ~110 ms.
      const record = value as Record<string, unknown>;
      for (const k of Object.keys(record)) {
        const v = record[k];
        if (v === undefined || typeof v === "function" || typeof v === "symbol") continue;
        hash.update(`${first ? "" : ","}${JSON.stringify(k)}:${json(v)}`);
        first = false;
        if ((++pieces & 63) === 0 && performance.now() - since > sliceMs) {
          await yieldToLoop();
          since = performance.now();
        }
      }
      hash.update("}");
    } else {
      hash.update(json(value));
    }
  }
  hash.update("}");
  return hash.digest("base64");
}
