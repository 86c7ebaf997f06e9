import type { StateDocument } from "./extension-points.js";

/**
 * Moving a parsed document from the parser's worker thread to the main thread without stalling the
 * main thread's event loop.
 *
 * A message between threads is deserialized on the receiving thread in one piece, and Node delivers
 * every message already queued in one turn of the loop; a 50 MB document cloned whole stalls the
 * loop for ~0.9 s. So the worker cuts the document into batches of at most `maxNodes` nodes and sends
 * the next only when the main thread asks for it, after a turn of its loop: the loop is then never
 * held longer than one batch takes to deserialize and place (a median of ~0.5 ms for 4,096 nodes
 * here; larger batches met the young generation's collections more often: 16,384 took ~17 ms).
 *
 * A batch is a list of `[path, value]` placements in document order. A subtree small enough goes
 * whole; a larger container is placed empty and its children follow, so key order (and with it the
 * merge order and the document's digest) is the original's.
 */

export type Placement = [path: (string | number)[], value: unknown];

export const BATCH_NODES = 4_096;

/** The document's placements, in batches of at most `maxNodes` nodes (a single scalar or small subtree may exceed nothing). */
export function* documentBatches(document: StateDocument, maxNodes = BATCH_NODES): Generator<Placement[]> {
  let batch: Placement[] = [];
  let cost = 0;
  function* place(path: (string | number)[], value: unknown): Generator<Placement[]> {
    const size = typeof value === "object" && value !== null ? countNodes(value, maxNodes) : 1;
    if (size <= maxNodes) {
      if (cost + size > maxNodes && batch.length > 0) {
        yield batch;
        batch = [];
        cost = 0;
      }
      batch.push([path, value]);
      cost += size;
      return;
    }
    const array = Array.isArray(value);
    batch.push([path, array ? [] : {}]);
    cost += 1;
    if (array) for (let i = 0; i < value.length; i++) yield* place([...path, i], value[i]);
    else for (const key of Object.keys(value as object)) yield* place([...path, key], (value as Record<string, unknown>)[key]);
  }
  yield* place([], document);
  if (batch.length > 0) yield batch;
}

/** Nodes in `value` (itself included), counting stops past `limit`. */
function countNodes(value: unknown, limit: number): number {
  let count = 0;
  const stack: unknown[] = [value];
  while (stack.length > 0 && count <= limit) {
    const v = stack.pop();
    count++;
    if (Array.isArray(v)) {
      for (const x of v) stack.push(x);
    } else if (typeof v === "object" && v !== null) {
      for (const x of Object.values(v)) stack.push(x);
    }
  }
  return count;
}

/** Rebuilds a document from its batches, in order. */
export class DocumentAssembler {
  private root: unknown;

  add(batch: readonly Placement[]): void {
    for (const [path, value] of batch) {
      if (path.length === 0) {
        this.root = value;
        continue;
      }
      let parent = this.root as Record<string | number, unknown>;
      for (let i = 0; i < path.length - 1; i++) parent = parent[path[i]!] as Record<string | number, unknown>;
      const key = path[path.length - 1]!;
      // defineProperty: `__proto__` is a legal key and must stay a plain own property.
      Object.defineProperty(parent, key, { value, enumerable: true, writable: true, configurable: true });
    }
  }

  get document(): StateDocument {
    return this.root as StateDocument;
  }
}
