import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { open } from "node:fs/promises";
import { isAlias, isMap, isPair, isScalar, isSeq, parseDocument, type Document } from "yaml";
import type { Problem } from "./agent-errors.js";
import type { StateDocument } from "./extension-points.js";

/**
 * Parsing one state file with a bounded cost, on whichever thread calls it (the file state source
 * runs it inline for small files and in `state-file-worker` for large ones).
 *
 * - JSON is parsed as JSON: a `*.json` file always (its errors are JSON's, with line and column),
 *   and any other file whose first non-space character is `{` first (YAML when that fails: `{a: 1}` is
 *   a YAML flow mapping). `JSON.parse` is ~100× faster than the YAML parser on the same text and
 *   needs a fraction of its memory. A scan of the text before it finds what `JSON.parse` does not
 *   say or accepts silently: the line and column of a syntax error, a key set twice in one object
 *   (an error, as in YAML), and nesting deeper than `maxDepth`.
 * - YAML is parsed without the `yaml` package's duplicate-key check, which compares every key of a
 *   mapping with every earlier one (a 14 MB file with 40,000 ports took 70 s in it, 5 s without). A
 *   walk of the parsed tree then checks, in one pass and with positions: unique keys (a hash set per
 *   mapping), nesting depth, the number of aliases, what the aliases stand for when expanded (an alias
 *   bomb), and alias cycles (`a: &a [*a]`, an alias inside the node its anchor names). Only then is
 *   the tree turned into plain objects, so neither a cycle nor an expansion ever reaches a consumer.
 * - Every failure is a `Problem` whose message says where (`at line L, column C`) and what.
 */

/** How much of a state file is read. */
export interface StateFileLimits {
  /** The largest file read, in bytes (config `state_max_bytes`). */
  maxBytes: number;
  /** The deepest nesting of mappings and lists, aliases expanded; the top-level mapping is level 1. */
  maxDepth: number;
  /** The most YAML aliases (`*name`) in one file. */
  maxAliases: number;
  /** The most nodes that one file's aliases may stand for in total, each alias counted expanded. */
  maxAliasNodes: number;
}

export const DEFAULT_STATE_FILE_LIMITS: Readonly<StateFileLimits> = Object.freeze({
  maxBytes: 64 * 1024 * 1024,
  maxDepth: 64,
  maxAliases: 10_000,
  maxAliasNodes: 1_000_000,
});

export type ParsedStateText = { document: StateDocument } | { problem: Problem };

/** What reading one file's bytes found. */
export type StateFileBytes =
  | { kind: "missing" }
  | { kind: "not-a-file" }
  | { kind: "unreadable"; message: string }
  | { kind: "too-large"; size: number }
  | { kind: "unchanged"; hash: string }
  | { kind: "read"; hash: string; text: string };

/**
 * Reads a file unless it is larger than `maxBytes` (checked on the open file, and again on what was
 * read, in case it grew in between). `hash` is the SHA-256 of its bytes; `unchanged` when it equals
 * `knownHash`, without decoding them.
 */
export async function readStateFileBytes(file: string, knownHash: string | undefined, maxBytes: number): Promise<StateFileBytes> {
  let handle;
  try {
    // O_NONBLOCK: should the file have been replaced by a FIFO since it was checked, the open does
    // not wait for a writer (and the fstat below refuses it). No effect on regular files.
    handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    return openFailure(err);
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) return { kind: "not-a-file" };
    if (st.size > maxBytes) return { kind: "too-large", size: st.size };
    const bytes = await handle.readFile();
    if (bytes.length > maxBytes) return { kind: "too-large", size: bytes.length };
    const hash = createHash("sha256").update(bytes).digest("base64");
    if (hash === knownHash) return { kind: "unchanged", hash };
    return { kind: "read", hash, text: bytes.toString("utf8") };
  } catch (err) {
    return openFailure(err);
  } finally {
    await handle.close().catch(() => undefined);
  }
}

function openFailure(err: unknown): StateFileBytes {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return { kind: "missing" };
  if (code === "EISDIR") return { kind: "not-a-file" };
  return { kind: "unreadable", message: (err as Error).message };
}

/** The problem for a file over `maxBytes`: names the file, its size and the limit. */
export function tooLargeMessage(file: string, size: number, maxBytes: number): string {
  return `state file ${file} is ${formatBytes(size)}, over the limit of ${formatBytes(maxBytes)} (state_max_bytes); it is not read`;
}

function formatBytes(n: number): string {
  const mib = n / (1024 * 1024);
  if (mib >= 1) return `${Number.isInteger(mib) ? mib : mib.toFixed(1)} MiB (${n} bytes)`;
  return `${n} bytes`;
}

/** Parses one state file's text: a JSON or YAML mapping, or a problem with line and column. */
export function parseStateText(text: string, source: string, limits: Partial<StateFileLimits> = {}): ParsedStateText {
  const lim = { ...DEFAULT_STATE_FILE_LIMITS, ...limits };
  const fail = (message: string): { problem: Problem } => ({ problem: { source, path: "", message } });
  const at = (offset: number, message: string) => {
    const [line, col] = lineColumn(text, offset);
    return fail(`cannot parse at line ${line}, column ${col}: ${message}`);
  };
  if (text.trim() === "") return fail("cannot parse: the file is empty; expected a mapping at the top level (line 1, column 1)");
  const start = firstNonSpace(text);
  const json = /\.json$/i.test(source);
  if (json || text.charCodeAt(start) === 0x7b /* { */) {
    const error = scanJson(text, lim.maxDepth);
    if (!error) {
      let value: unknown;
      try {
        value = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
      } catch (err) {
        // The scan and V8 disagree (should not happen): V8's words, and its position when it gives one.
        const message = (err as Error).message;
        const pos = /at position (\d+)/.exec(message);
        return pos ? at(Number(pos[1]), message.replace(/ in JSON at position \d+.*$/, "")) : fail(`cannot parse: ${message}`);
      }
      return mappingOrProblem(value, text, start, fail);
    }
    if (json || error.final) return at(error.offset, error.message);
    // Not JSON: it may be a YAML flow mapping; YAML's errors are the ones reported then.
  }
  return parseYaml(text, lim, fail, at);
}

function parseYaml(
  text: string,
  lim: StateFileLimits,
  fail: (message: string) => { problem: Problem },
  at: (offset: number, message: string) => { problem: Problem },
): ParsedStateText {
  // uniqueKeys: false — the walk below checks keys in linear time (the package's check is quadratic).
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: false });
  const error = doc.errors[0];
  if (error) {
    const reason = error.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "");
    const pos = error.linePos?.[0];
    const where = pos ? ` at line ${pos.line}, column ${pos.col}` : "";
    const more = doc.errors.length > 1 ? ` (and ${doc.errors.length - 1} more error${doc.errors.length > 2 ? "s" : ""})` : "";
    return fail(`cannot parse${where}: ${reason}${more}`);
  }
  const bad = checkYamlTree(doc, text, lim);
  if (bad) return at(bad.offset, bad.message);
  let value: unknown;
  try {
    // Aliases are checked above (count, expansion, cycles); the package's own alias limit is a cruder one.
    value = doc.toJS({ maxAliasCount: -1 });
  } catch (err) {
    return fail(`cannot parse at line 1, column 1: ${(err as Error).message}`);
  }
  const contents = doc.contents;
  const range = contents && "range" in contents ? contents.range : undefined;
  return mappingOrProblem(value, text, range ? range[0] : firstNonSpace(text), fail);
}

function mappingOrProblem(value: unknown, text: string, offset: number, fail: (message: string) => { problem: Problem }): ParsedStateText {
  if (isPlainObject(value)) return { document: value };
  const [line, col] = lineColumn(text, offset);
  const what = value === null ? "nothing" : Array.isArray(value) ? "a list" : `a ${typeof value}`;
  return fail(`expected a mapping at the top level, found ${what} at line ${line}, column ${col}`);
}

interface Located {
  offset: number;
  message: string;
  /** JSON so far, broken by a rule YAML has too (a key set twice, nesting): no YAML retry. */
  final?: boolean;
}

/** What a node stands for with its aliases expanded. */
interface Extent {
  /** Nodes (scalars, mappings, lists). */
  nodes: number;
  /** Levels of mappings and lists, itself included (0 for a scalar). */
  height: number;
}

const SCALAR: Extent = { nodes: 1, height: 0 };

/**
 * One pass over a parsed YAML tree: unique keys, nesting depth, alias count, alias expansion, alias
 * cycles. An alias names the last node before it (in document order) with that anchor, as the
 * `yaml` package resolves it; it is a cycle exactly when that node is still open, i.e. contains the
 * alias. The recursion is at most `maxDepth` deep: deeper nesting is an error before it is entered.
 */
function checkYamlTree(doc: Document, text: string, lim: StateFileLimits): Located | undefined {
  const lastAnchor = new Map<string, object>();
  const open = new Set<object>();
  const extents = new Map<object, Extent>();
  let aliases = 0;
  let aliasNodes = 0;
  let found: Located | undefined;

  const offsetOf = (node: unknown): number => {
    const range = (node as { range?: [number, number, number] } | null)?.range;
    return range ? range[0] : 0;
  };

  const visit = (node: unknown, depth: number): Extent => {
    if (found || node === null || node === undefined) return SCALAR;
    if (isAlias(node)) {
      if (++aliases > lim.maxAliases) {
        found = { offset: offsetOf(node), message: `more than ${lim.maxAliases} aliases in one file` };
        return SCALAR;
      }
      const target = lastAnchor.get(node.source);
      if (target === undefined) {
        found = { offset: offsetOf(node), message: `alias *${node.source} refers to no anchor &${node.source} before it` };
        return SCALAR;
      }
      if (open.has(target)) {
        const [line, col] = lineColumn(text, offsetOf(target));
        found = {
          offset: offsetOf(node),
          message: `alias *${node.source} is inside the node that &${node.source} names (which starts at line ${line}, column ${col}): an alias cycle`,
        };
        return SCALAR;
      }
      const extent = extents.get(target) ?? SCALAR;
      aliasNodes += extent.nodes;
      if (aliasNodes > lim.maxAliasNodes) {
        found = { offset: offsetOf(node), message: `the aliases stand for more than ${lim.maxAliasNodes} nodes when expanded (an alias bomb?)` };
        return SCALAR;
      }
      if (depth + extent.height > lim.maxDepth) {
        found = { offset: offsetOf(node), message: `nesting deeper than ${lim.maxDepth} levels (through alias *${node.source})` };
        return SCALAR;
      }
      return extent;
    }
    const anchor = (node as { anchor?: string }).anchor;
    if (anchor) {
      lastAnchor.set(anchor, node as object);
      open.add(node as object);
    }
    let extent = SCALAR;
    if (isMap(node) || isSeq(node)) {
      if (depth + 1 > lim.maxDepth) {
        found = { offset: offsetOf(node), message: `nesting deeper than ${lim.maxDepth} levels` };
        return SCALAR;
      }
      let nodes = 1;
      let height = 0;
      const keys = isMap(node) ? new Set<unknown>() : undefined;
      for (const item of node.items as unknown[]) {
        if (isPair(item)) {
          if (keys && isScalar(item.key)) {
            const key = item.key.value;
            if (keys.has(key)) {
              found = { offset: offsetOf(item.key), message: "Map keys must be unique" };
              return SCALAR;
            }
            keys.add(key);
          }
          const k = visit(item.key, depth + 1);
          const v = visit(item.value, depth + 1);
          nodes += k.nodes + v.nodes;
          height = Math.max(height, k.height, v.height);
        } else {
          const e = visit(item, depth + 1);
          nodes += e.nodes;
          height = Math.max(height, e.height);
        }
        if (found) return SCALAR;
      }
      extent = { nodes, height: height + 1 };
    }
    if (anchor) {
      open.delete(node as object);
      extents.set(node as object, extent);
    }
    return extent;
  };

  visit(doc.contents, 0);
  return found;
}

const WS = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

function firstNonSpace(text: string): number {
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  while (i < text.length && (WS(text.charCodeAt(i)) || text.charCodeAt(i) === 0xfeff)) i++;
  return i;
}

// Scanner states.
const VALUE = 0; // a value is expected
const VALUE_OR_CLOSE = 1; // right after `[`
const KEY_OR_CLOSE = 2; // right after `{`
const KEY = 3; // after `,` in an object
const AFTER_VALUE = 4; // `,`, a closing bracket, or the end

/**
 * Checks that `text` is one JSON value (RFC 8259) with unique keys per object and at most `maxDepth`
 * levels of nesting; the first violation with its offset. Linear, no values built (`JSON.parse`
 * builds them afterwards).
 */
export function scanJson(text: string, maxDepth: number): Located | undefined {
  const n = text.length;
  const closers: number[] = []; // 0x5d `]` or 0x7d `}` per open container
  const opened: number[] = []; // where each open container starts
  // Keys seen per open object: a list while short (most objects have a few keys), then a set.
  const keySets: (string[] | Set<string> | undefined)[] = [];
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let state = VALUE;
  const describe = (at: number) => (at >= n ? "the end of the file" : `'${String.fromCodePoint(text.codePointAt(at)!)}'`);
  for (;;) {
    while (i < n && WS(text.charCodeAt(i))) i++;
    if (i >= n) {
      if (state === AFTER_VALUE && closers.length === 0) return undefined;
      if (closers.length > 0) {
        const [line, col] = lineColumn(text, opened.at(-1)!);
        return { offset: n, message: `unexpected end of the file: the '${closers.at(-1) === 0x7d ? "{" : "["}' at line ${line}, column ${col} is not closed` };
      }
      return { offset: n, message: "expected a value, found the end of the file" };
    }
    const c = text.charCodeAt(i);
    if (state === AFTER_VALUE) {
      const closer = closers.at(-1);
      if (closer === undefined) return { offset: i, message: `unexpected ${describe(i)} after the end of the JSON value` };
      if (c === 0x2c /* , */) {
        i++;
        state = closer === 0x7d ? KEY : VALUE;
      } else if (c === closer) {
        i++;
        closers.pop();
        opened.pop();
        keySets.pop();
      } else {
        return { offset: i, message: `expected ',' or '${String.fromCharCode(closer)}', found ${describe(i)}` };
      }
      continue;
    }
    if (state === KEY || state === KEY_OR_CLOSE) {
      if (c === 0x7d && state === KEY_OR_CLOSE) {
        i++;
        closers.pop();
        opened.pop();
        keySets.pop();
        state = AFTER_VALUE;
        continue;
      }
      if (c !== 0x22) return { offset: i, message: `expected a property name in double quotes, found ${describe(i)}` };
      const end = scanString(text, i);
      if (end < 0) return scanFailure;
      const raw = text.slice(i + 1, end - 1);
      const key = raw.includes("\\") ? (JSON.parse(text.slice(i, end)) as string) : raw;
      const top = keySets.length - 1;
      const keys = (keySets[top] ??= []);
      if (Array.isArray(keys)) {
        if (keys.includes(key)) return { offset: i, message: "Map keys must be unique", final: true };
        keys.push(key);
        if (keys.length > 16) keySets[top] = new Set(keys);
      } else {
        if (keys.has(key)) return { offset: i, message: "Map keys must be unique", final: true };
        keys.add(key);
      }
      i = end;
      while (i < n && WS(text.charCodeAt(i))) i++;
      if (text.charCodeAt(i) !== 0x3a /* : */) return { offset: i, message: `expected ':' after the property name, found ${describe(i)}` };
      i++;
      state = VALUE;
      continue;
    }
    // VALUE or VALUE_OR_CLOSE
    if (c === 0x5d && state === VALUE_OR_CLOSE) {
      i++;
      closers.pop();
      opened.pop();
      keySets.pop();
      state = AFTER_VALUE;
      continue;
    }
    if (c === 0x7b || c === 0x5b) {
      if (closers.length >= maxDepth) return { offset: i, message: `nesting deeper than ${maxDepth} levels`, final: true };
      closers.push(c === 0x7b ? 0x7d : 0x5d);
      opened.push(i);
      keySets.push(undefined);
      i++;
      state = c === 0x7b ? KEY_OR_CLOSE : VALUE_OR_CLOSE;
      continue;
    }
    if (c === 0x22) {
      const end = scanString(text, i);
      if (end < 0) return scanFailure;
      i = end;
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      const end = scanNumber(text, i);
      if (end < 0) return { offset: i, message: `invalid number ${JSON.stringify(text.slice(i, Math.min(n, i + 24)).split(/[\s,\]}]/)[0])}` };
      i = end;
    } else if (text.startsWith("true", i)) i += 4;
    else if (text.startsWith("false", i)) i += 5;
    else if (text.startsWith("null", i)) i += 4;
    else return { offset: i, message: `expected a value, found ${describe(i)}` };
    state = AFTER_VALUE;
  }
}

/** Set by `scanString` when it returns -1. */
let scanFailure: Located = { offset: 0, message: "" };

/** `text[start]` is `"`; the index after the closing quote, or -1 (and `scanFailure`). */
function scanString(text: string, start: number): number {
  const n = text.length;
  let i = start + 1;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x22) return i + 1;
    if (c === 0x5c /* \ */) {
      const e = text.charCodeAt(i + 1);
      if (e === 0x75 /* u */) {
        if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) {
          scanFailure = { offset: i, message: "invalid \\u escape in a string: expected 4 hex digits" };
          return -1;
        }
        i += 6;
        continue;
      }
      if (e === 0x22 || e === 0x5c || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) {
        i += 2;
        continue;
      }
      scanFailure = { offset: i, message: `invalid escape in a string: ${JSON.stringify(text.slice(i, i + 2))}` };
      return -1;
    }
    if (c < 0x20) {
      scanFailure = { offset: i, message: c === 0x0a ? "a string is not closed before the end of the line" : "a control character in a string (it must be escaped)" };
      return -1;
    }
    i++;
  }
  scanFailure = { offset: start, message: "a string is not closed before the end of the file" };
  return -1;
}

/** A JSON number at `start`; the index after it, or -1. */
function scanNumber(text: string, start: number): number {
  let i = start;
  const digit = (at: number) => {
    const c = text.charCodeAt(at);
    return c >= 0x30 && c <= 0x39;
  };
  if (text.charCodeAt(i) === 0x2d) i++;
  if (text.charCodeAt(i) === 0x30) i++;
  else if (digit(i)) while (digit(i)) i++;
  else return -1;
  if (text.charCodeAt(i) === 0x2e /* . */) {
    i++;
    if (!digit(i)) return -1;
    while (digit(i)) i++;
  }
  const e = text.charCodeAt(i);
  if (e === 0x65 || e === 0x45) {
    i++;
    const s = text.charCodeAt(i);
    if (s === 0x2b || s === 0x2d) i++;
    if (!digit(i)) return -1;
    while (digit(i)) i++;
  }
  // `01`, `1.2.3`, `12abc`: what follows must end the value.
  const next = text.charCodeAt(i);
  if (i < text.length && !(WS(next) || next === 0x2c || next === 0x5d || next === 0x7d)) return -1;
  return i;
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** 1-based line and column (in UTF-16 units) of `offset` in `text`. */
export function lineColumn(text: string, offset: number): [number, number] {
  let line = 1;
  let start = 0;
  const end = Math.min(offset, text.length);
  for (let i = text.indexOf("\n"); i !== -1 && i < end; i = text.indexOf("\n", i + 1)) {
    line++;
    start = i + 1;
  }
  return [line, offset - start + 1];
}
