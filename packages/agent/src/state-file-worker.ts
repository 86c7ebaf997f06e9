import { createHash } from "node:crypto";
import { parentPort } from "node:worker_threads";
import type { Problem } from "./agent-errors.js";
import { parseStateText, readStateFileBytes, type StateFileBytes, type StateFileLimits } from "./state-file-parser.js";
import { documentBatches, type Placement } from "./state-file-transfer.js";

/**
 * The worker thread that reads and parses large state files for `StateFileReader`, so the main
 * thread's event loop keeps serving (the metrics endpoint, the reconcile loop's timers) while a
 * multi-megabyte file is parsed. One request at a time:
 *
 *   main → { type: "read", file, knownHash, limits }
 *   ← { type: "bytes", bytes }        missing, not a file, unreadable, too large, or unchanged: done
 *   ← { type: "hashed", hash }        the content is new; parsing starts (a crash now belongs to it)
 *   ← { type: "problem", problem }    it does not parse: done
 *   ← { type: "digest", digest }      it parsed: the SHA-256 of the document's JSON (what
 *                                     `digestStateDocument` gives, computed here, off the loop)
 *   ← { type: "batch", batch, last }  a piece of the document; the main thread answers { type: "more" }
 *                                     for the next one, after a turn of its own event loop
 *   ← { type: "failed", message }     the parser threw (a bug, or V8's stack ran out): done
 */

export type WorkerRequest = { type: "read"; file: string; knownHash: string | undefined; limits: StateFileLimits } | { type: "more" };

export type WorkerReply =
  | { type: "bytes"; bytes: Exclude<StateFileBytes, { kind: "read" }> }
  | { type: "hashed"; hash: string }
  | { type: "problem"; problem: Problem }
  | { type: "digest"; digest: string }
  | { type: "batch"; batch: Placement[]; last: boolean }
  | { type: "failed"; message: string };

if (!parentPort) throw new Error("state-file-worker.js runs in a worker thread (started by StateFileReader)");
const port = parentPort;

let pending: Iterator<Placement[]> | undefined;
/** The batch after the one in flight, computed ahead to know whether that one is the last. */
let ahead: IteratorResult<Placement[]> | undefined;

function sendNext(): void {
  if (!pending || !ahead) return;
  const current = ahead;
  ahead = pending.next();
  const last = ahead.done === true;
  if (last) pending = ahead = undefined;
  port.postMessage({ type: "batch", batch: current.done ? [] : current.value, last } satisfies WorkerReply);
}

async function read(file: string, knownHash: string | undefined, limits: StateFileLimits): Promise<void> {
  const bytes = await readStateFileBytes(file, knownHash, limits.maxBytes);
  if (bytes.kind !== "read") {
    port.postMessage({ type: "bytes", bytes } satisfies WorkerReply);
    return;
  }
  port.postMessage({ type: "hashed", hash: bytes.hash } satisfies WorkerReply);
  const parsed = parseStateText(bytes.text, file, limits);
  if ("problem" in parsed) {
    port.postMessage({ type: "problem", problem: parsed.problem } satisfies WorkerReply);
    return;
  }
  port.postMessage({ type: "digest", digest: createHash("sha256").update(JSON.stringify(parsed.document)).digest("base64") } satisfies WorkerReply);
  pending = documentBatches(parsed.document);
  ahead = pending.next();
  sendNext();
}

port.on("message", (message: WorkerRequest) => {
  if (message.type === "more") sendNext();
  else {
    read(message.file, message.knownHash, message.limits).catch((err: unknown) => {
      pending = ahead = undefined;
      port.postMessage({ type: "failed", message: err instanceof Error ? err.message : String(err) } satisfies WorkerReply);
    });
  }
});
