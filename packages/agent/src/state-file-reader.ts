import { existsSync } from "node:fs";
import { stat } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import type { Logger } from "pino";
import { parseStateText, readStateFileBytes, type ParsedStateText, type StateFileBytes, type StateFileLimits } from "./state-file-parser.js";
import { DocumentAssembler } from "./state-file-transfer.js";
import type { WorkerReply, WorkerRequest } from "./state-file-worker.js";

/** What reading one state file gave. */
export type StateFileRead =
  | Exclude<StateFileBytes, { kind: "read" }>
  /** `digest`: the document's `digestStateDocument`, when the worker computed it. */
  | { kind: "parsed"; hash: string; result: ParsedStateText; digest?: string }
  /** The parser's worker died (out of memory, a crash); `hash` when it had read the content. */
  | { kind: "failed"; hash: string | undefined; message: string }
  | { kind: "stopped" };

export interface StateFileReaderOptions {
  limits: StateFileLimits;
  logger: Logger;
  /** Files of at least this many bytes are parsed in a worker thread. Default 16 KiB. */
  offThreadBytes?: number;
  /** The worker's script. Default: `defaultStateFileWorkerScript()`. */
  workerScript?: string;
}

/** A worker unused this long ends (a directory's pass reads its large files one after another). */
const WORKER_IDLE_MS = 2_000;

/**
 * Below this a file is parsed on the calling thread. YAML is the slow case: 64 KiB of it took 46 ms
 * here (JSON: 1 ms), 16 KiB ~10 ms. Starting the worker costs the main thread next to nothing, but
 * adds ~40 ms (and a module load) before the first large file is parsed.
 */
export const OFF_THREAD_BYTES = 16 * 1024;

/**
 * `state-file-worker.js` beside this module: in `dist` when the agent runs built; under vitest (this
 * module in `src`) the built one in `dist`. Undefined when neither exists (not built yet).
 */
export function defaultStateFileWorkerScript(): string | undefined {
  const here = fileURLToPath(import.meta.url);
  const beside = here.replace(/state-file-reader\.[jt]s$/, "state-file-worker.js");
  if (existsSync(beside)) return beside;
  const built = beside.replace(/\/src\/([^/]+)$/, "/dist/$1");
  if (existsSync(built)) return built;
  return undefined;
}

interface InFlight {
  resolve: (read: StateFileRead) => void;
  hash: string | undefined;
  digest: string | undefined;
  assembler: DocumentAssembler | undefined;
}

/**
 * Reads and parses state files for `FileStateSource`: small ones on the calling thread, large ones
 * (`offThreadBytes` and up) in a worker thread, so the event loop is never held by a parse. The
 * worker is started on the first large file and ends 2 s after the source's pass over its files
 * (`release()`; an idle agent holds no parser heap) or at `close()`. A worker that dies (a
 * parse that exhausts its heap ends the worker, not the agent) makes that file's read `failed`.
 */
export class StateFileReader {
  private readonly limits: StateFileLimits;
  private readonly logger: Logger;
  private readonly offThreadBytes: number;
  private readonly workerScript: string | undefined;
  private worker: Worker | undefined;
  private inFlight: InFlight | undefined;
  private closed = false;
  private warnedNoWorker = false;
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(options: StateFileReaderOptions) {
    this.limits = options.limits;
    this.logger = options.logger;
    this.offThreadBytes = options.offThreadBytes ?? OFF_THREAD_BYTES;
    this.workerScript = options.workerScript ?? defaultStateFileWorkerScript();
  }

  /** One read at a time (the source serializes its reads). */
  async read(file: string, knownHash: string | undefined): Promise<StateFileRead> {
    if (this.closed) return { kind: "stopped" };
    if (this.inFlight) throw new Error("StateFileReader.read: a read is in flight");
    let size = 0;
    try {
      const st = await stat(file);
      // Never opened: a FIFO would block the open (and a thread of libuv's pool) until a writer comes.
      if (!st.isFile()) return { kind: "not-a-file" };
      size = st.size;
    } catch {
      // Reported by the read below.
    }
    if (this.closed) return { kind: "stopped" };
    if (size >= this.offThreadBytes && size <= this.limits.maxBytes) {
      if (this.workerScript) return this.readInWorker(this.workerScript, file, knownHash);
      if (!this.warnedNoWorker) {
        this.warnedNoWorker = true;
        this.logger.warn({ file }, "state-file-worker.js not found (package not built?); parsing large state files on the main thread");
      }
    }
    const bytes = await readStateFileBytes(file, knownHash, this.limits.maxBytes);
    if (bytes.kind !== "read") return bytes;
    return { kind: "parsed", hash: bytes.hash, result: parseStateText(bytes.text, file, this.limits) };
  }

  /** The worker (if any) ends after `WORKER_IDLE_MS` without a read: its heap goes with it. */
  release(): void {
    if (!this.worker || this.inFlight) return;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (!this.inFlight) this.endWorker();
    }, WORKER_IDLE_MS);
    this.idleTimer.unref();
  }

  /** Ends the worker now; a read in flight resolves `stopped`. */
  close(): void {
    this.closed = true;
    this.finish({ kind: "stopped" });
    this.endWorker();
  }

  private endWorker(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    const w = this.worker;
    this.worker = undefined;
    if (w) void w.terminate();
  }

  private readInWorker(script: string, file: string, knownHash: string | undefined): Promise<StateFileRead> {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    const worker = (this.worker ??= this.startWorker(script));
    worker.ref();
    return new Promise<StateFileRead>((resolve) => {
      this.inFlight = { resolve, hash: undefined, digest: undefined, assembler: undefined };
      worker.postMessage({ type: "read", file, knownHash, limits: { ...this.limits } } satisfies WorkerRequest);
    });
  }

  private startWorker(script: string): Worker {
    const worker = new Worker(script, { stdout: false, stderr: false });
    worker.on("message", (reply: WorkerReply) => {
      if (this.worker === worker) this.onReply(worker, reply);
    });
    worker.on("error", (err) => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      const oom = (err as NodeJS.ErrnoException).code === "ERR_WORKER_OUT_OF_MEMORY";
      this.finish({ kind: "failed", hash: this.inFlight?.hash, message: oom ? "parsing it ran out of memory" : `the parser failed: ${err.message}` });
    });
    worker.on("exit", (code) => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      this.finish({ kind: "failed", hash: this.inFlight?.hash, message: `the parser's worker thread exited (code ${code})` });
    });
    return worker;
  }

  private onReply(worker: Worker, reply: WorkerReply): void {
    const flight = this.inFlight;
    if (!flight) return;
    switch (reply.type) {
      case "bytes":
        this.finish(reply.bytes);
        return;
      case "hashed":
        flight.hash = reply.hash;
        return;
      case "problem":
        this.finish({ kind: "parsed", hash: flight.hash!, result: { problem: reply.problem } });
        return;
      case "digest":
        flight.digest = reply.digest;
        return;
      case "failed":
        this.finish({ kind: "failed", hash: flight.hash, message: `the parser failed: ${reply.message}` });
        return;
      case "batch": {
        const assembler = (flight.assembler ??= new DocumentAssembler());
        assembler.add(reply.batch);
        if (reply.last) {
          this.finish({ kind: "parsed", hash: flight.hash!, result: { document: assembler.document }, ...(flight.digest ? { digest: flight.digest } : {}) });
          return;
        }
        // The next batch only after a turn of the event loop: what waits (I/O, timers) goes first.
        setImmediate(() => {
          if (this.inFlight === flight && this.worker === worker) worker.postMessage({ type: "more" } satisfies WorkerRequest);
        });
        return;
      }
    }
  }

  private finish(read: StateFileRead): void {
    const flight = this.inFlight;
    if (!flight) return;
    this.inFlight = undefined;
    this.worker?.unref();
    flight.resolve(read);
  }
}
