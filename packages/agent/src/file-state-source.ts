import { watch, type FSWatcher } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import type { Logger } from "pino";
import type { Problem } from "./agent-errors.js";
import type { StateDocument, StateSink, StateSource, StateSourceHealth } from "./extension-points.js";
import { digestStateDocument } from "./state-file-digest.js";
import { DEFAULT_STATE_FILE_LIMITS, isPlainObject, tooLargeMessage, type StateFileLimits } from "./state-file-parser.js";
import { StateFileReader, type StateFileRead, type StateFileReaderOptions } from "./state-file-reader.js";

export { parseStateText } from "./state-file-parser.js";

/** Where a `FileStateSource` reads and how: the path, its logger, and the limits and timing of its reads. */
export interface FileStateSourceOptions {
  /** A JSON or YAML file, or a directory of `*.json`, `*.yaml`, `*.yml` files. */
  path: string;
  logger: Logger;
  /** Quiet time after the last file-system event before the files are read again. Default 50. */
  debounceMs?: number;
  /**
   * Also re-read every this many ms, for file systems where `fs.watch` sees nothing (NFS, some
   * container mounts). Off unless set.
   */
  pollMs?: number;
  /** The largest state file read, in bytes (config `state_max_bytes`). Default 64 MiB. */
  maxBytes?: number;
  /** Nesting depth and YAML alias limits (see `StateFileLimits`); tests lower them. */
  limits?: Partial<Omit<StateFileLimits, "maxBytes">>;
  /** Files of at least this many bytes are parsed in a worker thread. Default 16 KiB. */
  offThreadBytes?: number;
  /** The parser worker's script (tests). Default: `state-file-worker.js` of this package's build. */
  workerScript?: string;
}

const STATE_FILE = /\.(?:json|ya?ml)$/i;
/** How often a watcher that could not be (re)established is tried again. */
const REWATCH_MS = 1_000;

/** What one file last contributed. */
interface FileEntry {
  /**
   * What was last read: the SHA-256 of its bytes, or `too-large:SIZE` (undefined: could not be
   * read). A file is parsed again, and a problem with it reported again, only when this changes.
   */
  seen: string | undefined;
  /** The last document that parsed, kept while the file is broken. */
  good: StateDocument | undefined;
  /** `good`'s digest when the worker thread computed it (`digestStateDocument` otherwise). */
  digest: string | undefined;
  /** Counts changes of `good`: the directory's merge is redone only when one of these moved. */
  version: number;
}

/** A newly read document, and its digest when known. */
interface ReadResult {
  document: StateDocument;
  digest: string | undefined;
}

/**
 * The default state source: one JSON/YAML file, or a directory of them, watched for changes.
 *
 * - A file is parsed as JSON (`*.json`, or a first non-space character `{`; YAML if that fails) or
 *   YAML, with bounded cost (`state-file-parser.ts`): at most `maxBytes` (config `state_max_bytes`,
 *   64 MiB) per file, nesting at most 64 deep, in YAML at most 10,000 aliases standing for at most
 *   1,000,000 nodes, and no alias cycles. Its top level must be a mapping. Files of `offThreadBytes`
 *   (16 KiB) and more are read and parsed in a worker thread and their document handed over in
 *   pieces, so the event loop (the metrics endpoint, the reconcile loop) is never held by a parse.
 * - A directory's files (`*.json|*.yaml|*.yml`, dotfiles skipped) are read in name order and merged
 *   key by key: arrays are concatenated, mappings shallow-merged. The same key in the mappings of two
 *   files (or a key whose values cannot be merged) is reported as a problem naming both files; the
 *   later file wins.
 * - Watching: a single file is watched through its parent directory, so editors that write a new
 *   file and rename it over the old one, and atomic replaces, are seen; a directory is watched
 *   itself. Events are debounced (`debounceMs`); `pollMs` adds a polling fallback (a poll while a
 *   read is pending is dropped). Every trigger re-reads the files, and only files whose bytes
 *   changed (SHA-256) are parsed again; a problem with a file is reported again only when it changes.
 * - Delivery: `sink.update(document, path)` only when the merged document differs from the one
 *   last delivered (compared by a digest of its JSON: computed by the worker for a file parsed
 *   there, otherwise on the loop in slices). A file that does not
 *   parse (or whose top level is not a mapping, or that breaks a limit) is reported once per content
 *   with `sink.problem` (file, line and column) and nothing else happens: the last good state stays
 *   in force. In a directory, a broken file keeps contributing its last good content, so one bad
 *   file neither blocks edits to the others nor deletes what it described; a file that never parsed
 *   contributes nothing. A file deleted from a directory removes its contribution; a deleted single
 *   file (or a deleted directory) is a problem, and the state is kept.
 */
export class FileStateSource implements StateSource {
  readonly name = "file";
  readonly path: string;
  private readonly logger: Logger;
  private readonly debounceMs: number;
  private readonly pollMs: number | undefined;

  private sink: StateSink | undefined;
  private isDirectory = false;
  private watcher: FSWatcher | undefined;
  private rewatchTimer: NodeJS.Timeout | undefined;
  private debounceTimer: NodeJS.Timeout | undefined;
  private firstEventAt: number | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private stopped = false;

  private readonly files = new Map<string, FileEntry>();
  private readonly readerOptions: StateFileReaderOptions;
  /** Closed by stop(), a new one at start(). */
  private reader: StateFileReader;
  private readonly maxBytes: number;
  /** Digest of the last delivered document. */
  private delivered: string | undefined;
  /** The files and `good` versions the directory's last merge was made of. */
  private merged: string | undefined;
  /** The "missing" problem was reported and nothing was read since. */
  private missingReported = false;
  private reading: Promise<void> | undefined;
  private readAgain = false;

  constructor(options: FileStateSourceOptions) {
    this.path = resolve(options.path);
    this.logger = options.logger;
    this.debounceMs = options.debounceMs ?? 50;
    this.pollMs = options.pollMs;
    this.maxBytes = options.maxBytes ?? DEFAULT_STATE_FILE_LIMITS.maxBytes;
    this.readerOptions = {
      limits: { ...DEFAULT_STATE_FILE_LIMITS, ...options.limits, maxBytes: this.maxBytes },
      logger: this.logger,
      ...(options.offThreadBytes !== undefined ? { offThreadBytes: options.offThreadBytes } : {}),
      ...(options.workerScript !== undefined ? { workerScript: options.workerScript } : {}),
    };
    this.reader = new StateFileReader(this.readerOptions);
  }

  async start(sink: StateSink): Promise<void> {
    if (this.sink) throw new Error("FileStateSource already started");
    this.sink = sink;
    this.stopped = false;
    this.reader = new StateFileReader(this.readerOptions);
    try {
      this.isDirectory = (await stat(this.path)).isDirectory();
    } catch {
      // Missing now: treated as a file; the first read reports it and the watcher waits for it.
      this.isDirectory = false;
    }
    // Watch before the first read so that a change made while reading is not missed.
    this.ensureWatcher();
    if (this.pollMs !== undefined && this.pollMs > 0) {
      // A poll while a read is pending or running is dropped, not queued: a pass over large files
      // may take longer than the interval, and polls must not chain reads back to back.
      this.pollTimer = setInterval(() => {
        if (!this.reading && !this.debounceTimer) this.trigger();
      }, this.pollMs);
    }
    await this.read();
  }

  /** Delivered once a document was read and handed over (a file that never parsed is not). */
  health(): StateSourceHealth {
    return this.delivered !== undefined ? { delivered: true } : { delivered: false, detail: `no valid state read from ${this.path} yet` };
  }

  /** Stops watching (and polling); the last state read stays in force. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.watcher?.close();
    this.watcher = undefined;
    for (const t of [this.rewatchTimer, this.debounceTimer]) if (t) clearTimeout(t);
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.rewatchTimer = this.debounceTimer = this.pollTimer = undefined;
    // A parse in flight is abandoned, not waited for.
    this.reader.close();
    await this.reading;
    this.sink = undefined;
  }

  // ---- watching --------------------------------------------------------------------------------

  private ensureWatcher(): void {
    if (this.stopped || this.watcher) return;
    const dir = this.isDirectory ? this.path : dirname(this.path);
    try {
      const w = watch(dir, { persistent: true }, () => this.trigger());
      w.on("error", (err) => {
        this.logger.warn({ path: dir, err }, "state watcher failed; watching again");
        w.close();
        if (this.watcher === w) this.watcher = undefined;
        this.scheduleRewatch();
        this.trigger();
      });
      this.watcher = w;
    } catch (err) {
      this.logger.warn({ path: dir, err }, "cannot watch state path; trying again");
      this.scheduleRewatch();
    }
  }

  private scheduleRewatch(): void {
    if (this.stopped || this.rewatchTimer) return;
    this.rewatchTimer = setTimeout(() => {
      this.rewatchTimer = undefined;
      this.ensureWatcher();
      if (this.watcher) this.trigger();
    }, REWATCH_MS);
  }

  /** Debounced: reads once things have been quiet for `debounceMs` (at most ~20× that after the first event). */
  private trigger(): void {
    if (this.stopped) return;
    const now = Date.now();
    this.firstEventAt ??= now;
    if (this.debounceTimer) clearTimeout(this.debounceTimer);
    const maxWait = Math.max(this.debounceMs * 20, 1_000);
    const delay = Math.max(0, Math.min(this.debounceMs, this.firstEventAt + maxWait - now));
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = undefined;
      this.firstEventAt = undefined;
      void this.read();
    }, delay);
  }

  // ---- reading ---------------------------------------------------------------------------------

  /** One read at a time; a trigger during a read runs one more read after it. */
  private read(): Promise<void> {
    if (this.reading) {
      this.readAgain = true;
      return this.reading;
    }
    const run = async (): Promise<void> => {
      do {
        this.readAgain = false;
        try {
          await this.readOnce();
        } catch (err) {
          this.logger.error({ err, path: this.path }, "reading the state failed");
        }
      } while (this.readAgain && !this.stopped);
    };
    this.reading = run().finally(() => {
      this.reading = undefined;
    });
    return this.reading;
  }

  private async readOnce(): Promise<void> {
    const problems: Problem[] = [];
    const conflicts: Problem[] = [];
    let next: ReadResult | undefined;
    try {
      next = this.isDirectory ? await this.readDirectory(problems, conflicts) : await this.readSingleFile(problems);
    } finally {
      this.reader.release();
    }
    if (this.stopped || !this.sink) return;
    let digest: string | undefined;
    if (next !== undefined) {
      digest = next.digest ?? (await digestStateDocument(next.document));
      if (this.stopped || !this.sink) return;
      // A directory's merge conflicts are reported with the document they produced, not on every event.
      if (digest !== this.delivered) problems.push(...conflicts);
    }
    for (const p of problems) this.sink.problem(p);
    if (next === undefined || digest === this.delivered) return;
    this.delivered = digest;
    this.logger.debug({ path: this.path, files: this.files.size }, "state changed");
    this.sink.update(next.document, this.path);
  }

  /** The file's new document, or undefined when nothing new parsed. */
  private async readSingleFile(problems: Problem[]): Promise<ReadResult | undefined> {
    const entry = this.files.get(this.path);
    const read = await this.reader.read(this.path, entry?.seen);
    if (read.kind === "stopped") return undefined;
    if (read.kind === "missing" || read.kind === "unreadable" || read.kind === "not-a-file") {
      const gone = read.kind === "missing";
      // A missing file is reported once, not on every event in its directory.
      if (gone && this.missingReported) return undefined;
      this.missingReported = gone;
      if (entry) entry.seen = undefined;
      problems.push({
        source: this.path,
        path: "",
        message: gone
          ? this.delivered === undefined
            ? "state file does not exist"
            : "state file was deleted; the last good state stays in force"
          : `cannot read state file: ${read.kind === "unreadable" ? read.message : "not a regular file"}`,
      });
      return undefined;
    }
    this.missingReported = false;
    const current = this.entry(this.path);
    const document = this.take(current, this.path, read, problems, "the last good state stays in force");
    return document && { document, digest: current.digest };
  }

  /**
   * Applies one read to a file's entry: a new good document (returned), or a problem reported once
   * per content (pushed). Undefined when nothing new parsed.
   */
  private take(entry: FileEntry, file: string, read: Exclude<StateFileRead, { kind: "missing" | "unreadable" | "not-a-file" | "stopped" }>, problems: Problem[], kept: string): StateDocument | undefined {
    switch (read.kind) {
      case "unchanged":
        return undefined;
      case "too-large": {
        const seen = `too-large:${read.size}`;
        if (entry.seen !== seen) problems.push({ source: file, path: "", message: `${tooLargeMessage(file, read.size, this.maxBytes)}; ${kept}` });
        entry.seen = seen;
        return undefined;
      }
      case "failed": {
        const seen = read.hash ?? "failed";
        if (entry.seen !== seen) problems.push({ source: file, path: "", message: `cannot parse: ${read.message}; ${kept}` });
        entry.seen = seen;
        return undefined;
      }
      case "parsed":
        entry.seen = read.hash;
        if ("problem" in read.result) {
          problems.push(read.result.problem);
          return undefined;
        }
        entry.good = read.result.document;
        entry.digest = read.digest;
        entry.version++;
        return entry.good;
    }
  }

  /** The directory's merged document, or undefined when no file's contribution changed. */
  private async readDirectory(problems: Problem[], conflicts: Problem[]): Promise<ReadResult | undefined> {
    let names: string[];
    try {
      names = (await readdir(this.path)).filter((n) => STATE_FILE.test(n) && !n.startsWith(".")).sort();
    } catch (err) {
      const gone = (err as NodeJS.ErrnoException).code === "ENOENT";
      if (gone && this.missingReported) return undefined;
      this.missingReported = gone;
      problems.push({
        source: this.path,
        path: "",
        message: gone ? "state directory does not exist (any more); the last good state stays in force" : `cannot read state directory: ${(err as Error).message}`,
      });
      // The watcher went with the directory; watch again once it is back.
      if (gone) {
        this.watcher?.close();
        this.watcher = undefined;
        this.scheduleRewatch();
      }
      return undefined;
    }
    this.missingReported = false;
    const present = new Set<string>();
    for (const name of names) {
      const file = join(this.path, name);
      const read = await this.reader.read(file, this.files.get(file)?.seen);
      if (read.kind === "stopped") return undefined;
      // Deleted between readdir and read: gone, as if not listed.
      if (read.kind === "missing" || read.kind === "not-a-file") continue;
      present.add(file);
      const entry = this.entry(file);
      if (read.kind === "unreadable") {
        if (entry.seen !== undefined) {
          entry.seen = undefined;
          problems.push({ source: file, path: "", message: `cannot read state file: ${read.message}; its last good content stays in force` });
        }
        continue;
      }
      this.take(entry, file, read, problems, "its last good content stays in force");
    }
    for (const file of [...this.files.keys()]) if (!present.has(file)) this.files.delete(file);

    const parts: { file: string; document: StateDocument; digest: string | undefined }[] = [];
    const made: string[] = [];
    for (const file of [...this.files.keys()].sort()) {
      const { good, digest, version } = this.files.get(file)!;
      if (good) parts.push({ file, document: good, digest });
      made.push(`${file}\0${version}`);
    }
    // Nothing any file contributes changed: the merge would be the document already handled.
    const key = made.join("\0");
    if (key === this.merged) return undefined;
    this.merged = key;
    const merged = mergeStateDocuments(parts);
    conflicts.push(...merged.problems);
    // One file's merge is a shallow copy of its document: the same JSON, the same digest.
    return { document: merged.document, digest: parts.length === 1 ? parts[0]!.digest : undefined };
  }

  private entry(file: string): FileEntry {
    let e = this.files.get(file);
    if (!e) this.files.set(file, (e = { seen: undefined, good: undefined, digest: undefined, version: 0 }));
    return e;
  }
}

/**
 * Merges the documents of a directory's files, in the order given: arrays are concatenated,
 * mappings shallow-merged; a key set by two files' mappings, or a top-level key whose values cannot
 * be merged, is a problem naming both files, and the later file's value wins.
 */
export function mergeStateDocuments(parts: readonly { file: string; document: StateDocument }[]): { document: StateDocument; problems: Problem[] } {
  const out: StateDocument = {};
  const from = new Map<string, string>(); // top-level key → file that set it
  const subFrom = new Map<string, Map<string, string>>(); // key → sub-key → file
  const problems: Problem[] = [];
  for (const { file, document } of parts) {
    for (const [key, value] of Object.entries(document)) {
      const prevFile = from.get(key);
      if (prevFile === undefined) {
        setOwn(out, key, Array.isArray(value) ? [...value] : isPlainObject(value) ? { ...value } : value);
        from.set(key, file);
        if (isPlainObject(value)) subFrom.set(key, new Map(Object.keys(value).map((k) => [k, file])));
        continue;
      }
      const prev = out[key];
      if (Array.isArray(prev) && Array.isArray(value)) {
        prev.push(...value);
      } else if (isPlainObject(prev) && isPlainObject(value)) {
        const owners = subFrom.get(key)!;
        for (const [sub, v] of Object.entries(value)) {
          const owner = owners.get(sub);
          if (owner !== undefined) {
            problems.push({
              source: file,
              path: `${key}.${sub}`,
              message: `${key}.${sub} is set in both ${owner} and ${file}; the value from ${file} is used`,
            });
          }
          setOwn(prev, sub, v);
          owners.set(sub, file);
        }
      } else {
        problems.push({
          source: file,
          path: key,
          message: `${key} is set in both ${prevFile} and ${file} and the values cannot be merged (${kindOf(prev)} and ${kindOf(value)}); the value from ${file} is used`,
        });
        setOwn(out, key, value);
        if (isPlainObject(value)) subFrom.set(key, new Map(Object.keys(value).map((k) => [k, file])));
        else subFrom.delete(key);
      }
      from.set(key, file);
    }
  }
  return { document: out, problems };
}

function kindOf(v: unknown): string {
  return Array.isArray(v) ? "a list" : isPlainObject(v) ? "a mapping" : v === null ? "null" : `a ${typeof v}`;
}

/** `obj[key] = value` that also works for `__proto__` (a legal YAML key) without touching prototypes. */
function setOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}
