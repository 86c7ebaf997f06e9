import { watch, type FSWatcher } from "node:fs";
import { readdir, readFile, stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import type { Logger } from "pino";
import { parseDocument } from "yaml";
import type { Problem } from "./agent-errors.js";
import type { StateDocument, StateSink, StateSource } from "./extension-points.js";

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
}

const STATE_FILE = /\.(?:json|ya?ml)$/i;
/** How often a watcher that could not be (re)established is tried again. */
const REWATCH_MS = 1_000;

/** What one file last contributed. */
interface FileEntry {
  /** The raw text last read (undefined: could not be read). */
  text: string | undefined;
  /** The last document that parsed, kept while the file is broken. */
  good: StateDocument | undefined;
}

/**
 * The default state source: one JSON/YAML file, or a directory of them, watched for changes.
 *
 * - A file is parsed with the `yaml` package (JSON is YAML). Its top level must be a mapping.
 * - A directory's files (`*.json|*.yaml|*.yml`, dotfiles skipped) are read in name order and merged
 *   key by key: arrays are concatenated, mappings shallow-merged. The same key in the mappings of two
 *   files (or a key whose values cannot be merged) is reported as a problem naming both files; the
 *   later file wins.
 * - Watching: a single file is watched through its parent directory, so editors that write a new
 *   file and rename it over the old one, and atomic replaces, are seen; a directory is watched
 *   itself. Events are debounced (`debounceMs`); `pollMs` adds a polling fallback. Every trigger
 *   re-reads the files, and only files whose text changed are parsed again.
 * - Delivery: `sink.update(document, path)` only when the merged document differs from the one
 *   last delivered. A file that does not parse (or whose top level is not a mapping) is reported
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
  /** JSON of the last delivered document. */
  private delivered: string | undefined;
  /** The "missing" problem was reported and nothing was read since. */
  private missingReported = false;
  private reading: Promise<void> | undefined;
  private readAgain = false;

  constructor(options: FileStateSourceOptions) {
    this.path = resolve(options.path);
    this.logger = options.logger;
    this.debounceMs = options.debounceMs ?? 50;
    this.pollMs = options.pollMs;
  }

  async start(sink: StateSink): Promise<void> {
    if (this.sink) throw new Error("FileStateSource already started");
    this.sink = sink;
    this.stopped = false;
    try {
      this.isDirectory = (await stat(this.path)).isDirectory();
    } catch {
      // Missing now: treated as a file; the first read reports it and the watcher waits for it.
      this.isDirectory = false;
    }
    // Watch before the first read so that a change made while reading is not missed.
    this.ensureWatcher();
    if (this.pollMs !== undefined && this.pollMs > 0) {
      this.pollTimer = setInterval(() => this.trigger(), this.pollMs);
    }
    await this.read();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.watcher?.close();
    this.watcher = undefined;
    for (const t of [this.rewatchTimer, this.debounceTimer]) if (t) clearTimeout(t);
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.rewatchTimer = this.debounceTimer = this.pollTimer = undefined;
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
    let document: StateDocument | undefined;
    if (this.isDirectory) document = await this.readDirectory(problems);
    else document = await this.readSingleFile(problems);
    if (this.stopped || !this.sink) return;
    for (const p of problems) this.sink.problem(p);
    if (document === undefined) return;
    const json = JSON.stringify(document);
    if (json === this.delivered) return;
    this.delivered = json;
    this.logger.debug({ path: this.path, files: this.files.size }, "state changed");
    this.sink.update(document, this.path);
  }

  private async readSingleFile(problems: Problem[]): Promise<StateDocument | undefined> {
    let text: string;
    try {
      text = await readFile(this.path, "utf8");
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const gone = code === "ENOENT";
      // A missing file is reported once, not on every event in its directory.
      if (gone && this.missingReported) return undefined;
      this.missingReported = gone;
      const entry = this.files.get(this.path);
      if (entry) entry.text = undefined;
      problems.push({
        source: this.path,
        path: "",
        message: gone
          ? this.delivered === undefined
            ? "state file does not exist"
            : "state file was deleted; the last good state stays in force"
          : `cannot read state file: ${(err as Error).message}`,
      });
      return undefined;
    }
    this.missingReported = false;
    const entry = this.entry(this.path);
    if (entry.text === text) return entry.good;
    entry.text = text;
    const parsed = parseStateText(text, this.path);
    if ("problem" in parsed) {
      problems.push(parsed.problem);
      return undefined;
    }
    entry.good = parsed.document;
    return parsed.document;
  }

  private async readDirectory(problems: Problem[]): Promise<StateDocument | undefined> {
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
      let text: string;
      try {
        const s = await stat(file);
        if (!s.isFile()) continue;
        text = await readFile(file, "utf8");
      } catch (err) {
        // Deleted between readdir and read: gone, as if not listed.
        if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
        present.add(file);
        const entry = this.entry(file);
        if (entry.text !== undefined) {
          entry.text = undefined;
          problems.push({ source: file, path: "", message: `cannot read state file: ${(err as Error).message}; its last good content stays in force` });
        }
        continue;
      }
      present.add(file);
      const entry = this.entry(file);
      if (entry.text === text) continue;
      entry.text = text;
      const parsed = parseStateText(text, file);
      if ("problem" in parsed) problems.push(parsed.problem);
      else entry.good = parsed.document;
    }
    for (const file of [...this.files.keys()]) if (!present.has(file)) this.files.delete(file);

    const parts: { file: string; document: StateDocument }[] = [];
    for (const file of [...this.files.keys()].sort()) {
      const good = this.files.get(file)!.good;
      if (good) parts.push({ file, document: good });
    }
    const { document, problems: conflicts } = mergeStateDocuments(parts);
    const json = JSON.stringify(document);
    // Conflicts are reported with the document they produced, not again on every event.
    if (json !== this.delivered) problems.push(...conflicts);
    return document;
  }

  private entry(file: string): FileEntry {
    let e = this.files.get(file);
    if (!e) this.files.set(file, (e = { text: undefined, good: undefined }));
    return e;
  }
}

/** Parses one state file's text: a YAML (or JSON) mapping, or a problem with line and column. */
export function parseStateText(text: string, source: string): { document: StateDocument } | { problem: Problem } {
  const fail = (message: string): { problem: Problem } => ({ problem: { source, path: "", message } });
  if (text.trim() === "") return fail("cannot parse: the file is empty; expected a mapping at the top level (line 1, column 1)");
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  const error = doc.errors[0];
  if (error) {
    const reason = error.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "");
    const pos = error.linePos?.[0];
    const where = pos ? ` at line ${pos.line}, column ${pos.col}` : "";
    const more = doc.errors.length > 1 ? ` (and ${doc.errors.length - 1} more error${doc.errors.length > 2 ? "s" : ""})` : "";
    return fail(`cannot parse${where}: ${reason}${more}`);
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    return fail(`cannot parse at line 1, column 1: ${(err as Error).message}`);
  }
  if (!isPlainObject(value)) {
    const contents = doc.contents;
    const range = contents && "range" in contents ? contents.range : undefined;
    const [line, col] = range ? lineColumn(text, range[0]) : [1, 1];
    const what = value === null ? "nothing" : Array.isArray(value) ? "a list" : `a ${typeof value}`;
    return fail(`expected a mapping at the top level, found ${what} at line ${line}, column ${col}`);
  }
  return { document: value };
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

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function kindOf(v: unknown): string {
  return Array.isArray(v) ? "a list" : isPlainObject(v) ? "a mapping" : v === null ? "null" : `a ${typeof v}`;
}

/** `obj[key] = value` that also works for `__proto__` (a legal YAML key) without touching prototypes. */
function setOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function lineColumn(text: string, offset: number): [number, number] {
  let line = 1;
  let start = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text[i] === "\n") {
      line++;
      start = i + 1;
    }
  }
  return [line, offset - start + 1];
}
