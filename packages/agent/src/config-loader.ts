import { readFileSync } from "node:fs";
import { extname } from "node:path";
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document } from "yaml";
import { z } from "zod";
import { ConfigError, type Problem } from "./agent-errors.js";
import type { AgentConfig } from "./config-schema.js";
import type { NeutronLayer } from "./neutron-mapping.js";
import { didYouMean } from "./near-miss.js";

/** What `loadConfig` builds the configuration from: the app's schema, and its layers from the defaults up to the flags. */
export interface LoadConfigOptions<S extends z.ZodType<AgentConfig>> {
  /** The app's schema: `extendConfigSchema({...})`. */
  schema: S;
  /** The config file: YAML or JSON (`.json` is parsed as JSON, anything else as YAML). */
  file?: string | undefined;
  /**
   * Values from CLI flags, by config key (`log_level`, not `--log-level`); they win over the file.
   * `undefined` values are ignored (a flag not given). A string given for a number, boolean, list or
   * map key is converted when the converted value fits (`"30"` → 30, `"true"` → true, JSON text).
   */
  overrides?: Readonly<Record<string, unknown>> | undefined;
  /** The app's defaults (e.g. its `wrap_name`); the file and the flags win over them. */
  defaults?: Readonly<Record<string, unknown>> | undefined;
  /**
   * What Neutron's files say (`mapNeutronConfig`): above the defaults, below the file and the flags
   * (`plugin_options` merged option by option). Its problems are listed with the others.
   */
  neutron?: NeutronLayer | undefined;
}

/**
 * Builds the agent's configuration from, lowest precedence first, the app's defaults, Neutron's
 * files (`neutron`), one config file and the CLI flags (merged key by key at the top level; the
 * options of one plugin under `plugin_options` option by option), then validates it with the app's
 * schema. Environment variables are deliberately not a source: what the agent runs with is what
 * the file and the command line say.
 *
 * Every problem is collected before failing, so one run shows them all: a missing or unreadable
 * file, YAML/JSON syntax errors (with line and column), unknown keys (with a suggestion when one
 * is close), wrong types and values. Each is attributed to where the value came from: the file
 * (with line and column), `--flag-name`, or `defaults`.
 *
 * @throws ConfigError listing every problem.
 */
export function loadConfig<S extends z.ZodType<AgentConfig>>(options: LoadConfigOptions<S>): z.output<S> {
  const overrides = definedEntries(options.overrides ?? {});
  const defaults = definedEntries(options.defaults ?? {});
  const file = options.file;
  const shape = options.schema instanceof z.ZodObject ? (options.schema.shape as Record<string, z.ZodType>) : undefined;
  for (const [key, value] of Object.entries(overrides)) overrides[key] = coerceFlag(shape?.[key], value);

  const neutron = options.neutron?.values ?? {};
  // Top-level keys only: a plugin's options are checked where they were written (mapNeutronConfig).
  const problems: Problem[] = [];
  const neutronSources = new Map((options.neutron?.taken ?? []).filter((t) => !t.path.includes(".")).map((t) => [t.path, t.source]));
  let fileData: Record<string, unknown> = {};
  let fileText: string | undefined;
  let fileOk = true;
  if (file !== undefined) {
    const read = readConfigFile(file);
    problems.push(...read.problems);
    fileOk = read.problems.length === 0;
    if (read.data) fileData = read.data;
    fileText = read.text;
  }

  // A value of Neutron's files this agent refuses is moot where the file or a flag sets its key.
  const setAbove = (path: string) => [fileData, overrides].some((layer) => valueAt(layer, path.split(".")) !== undefined);
  const moot = new Set((options.neutron?.overridable ?? []).filter((o) => setAbove(o.path)).map((o) => o.problem));
  problems.unshift(...(options.neutron?.problems ?? []).filter((p) => !moot.has(p)));

  const merged: Record<string, unknown> = { ...defaults, ...neutron, ...fileData, ...overrides };
  if (neutron.plugin_options !== undefined) {
    const higher = Object.hasOwn(overrides, "plugin_options") ? overrides.plugin_options : fileData.plugin_options;
    merged.plugin_options = mergePluginOptions(neutron.plugin_options as Record<string, Record<string, unknown>>, higher);
  }
  const result = options.schema.safeParse(merged);
  if (problems.length === 0 && result.success) return result.data;

  const sourceOf = (key: string | undefined): string => {
    if (key !== undefined && Object.hasOwn(overrides, key)) return flagName(key);
    if (key !== undefined && Object.hasOwn(fileData, key)) return file ?? "config";
    const fromNeutron = key !== undefined ? neutronSources.get(key) : undefined;
    if (fromNeutron) return `${fromNeutron.file} [${fromNeutron.section}] ${fromNeutron.option} (line ${fromNeutron.line})`;
    if (key !== undefined && Object.hasOwn(defaults, key)) return "defaults";
    return file ?? (key !== undefined ? flagName(key) : "config");
  };
  let locator: ((path: readonly PropertyKey[]) => string) | undefined;
  const locate = (path: readonly PropertyKey[]): string => {
    if (fileText === undefined) return "";
    locator ??= yamlLocator(fileText);
    return locator(path);
  };

  if (!result.success) {
    for (const issue of result.error.issues) {
      const expanded: { path: PropertyKey[]; message: string }[] =
        issue.code === "unrecognized_keys"
          ? issue.keys.map((key) => ({
              path: [...issue.path, key],
              message: `unknown key${issue.path.length === 0 ? didYouMean(key, shape ? Object.keys(shape) : []) : ""}`,
            }))
          : [{ path: [...issue.path], message: describeIssue(issue, merged, file) }];
      for (const { path, message } of expanded) {
        const top = typeof path[0] === "string" ? path[0] : undefined;
        const source = sourceOf(top);
        // With a broken file only the flags' own problems are meaningful: the rest would be
        // "required" complaints about keys that are probably in the file.
        if (!fileOk && !source.startsWith("--")) continue;
        const where = file !== undefined && source === file && valueAt(fileData, path) !== undefined ? locate(path) : "";
        problems.push({ source, path: dotted(path), message: message + where });
      }
    }
  }
  throw new ConfigError(problems);
}

/**
 * Neutron's plugin options under those of the file or the flags: one plugin's options merged option
 * by option (a value that is not a mapping is left for the schema to report).
 */
function mergePluginOptions(neutron: Record<string, Record<string, unknown>>, higher: unknown): unknown {
  if (higher === undefined) return neutron;
  if (typeof higher !== "object" || higher === null || Array.isArray(higher)) return higher;
  const merged: Record<string, unknown> = { ...neutron };
  for (const [plugin, options] of Object.entries(higher as Record<string, unknown>)) {
    const below = neutron[plugin];
    merged[plugin] = below !== undefined && typeof options === "object" && options !== null && !Array.isArray(options) ? { ...below, ...options } : options;
  }
  return merged;
}

interface ReadResult {
  data?: Record<string, unknown>;
  text?: string;
  problems: Problem[];
}

function readConfigFile(file: string): ReadResult {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const message =
      code === "ENOENT" ? "file not found" : code === "EISDIR" ? "is a directory, not a config file" : code === "EACCES" ? "permission denied" : `cannot read: ${(err as Error).message}`;
    return { problems: [{ source: file, path: "", message }] };
  }
  const parsed = extname(file).toLowerCase() === ".json" ? parseJson(file, text) : parseYaml(file, text);
  if (parsed.problems.length > 0) return { text, problems: parsed.problems };
  const value = parsed.value;
  if (value === null || value === undefined) return { data: {}, text, problems: [] };
  if (typeof value !== "object" || Array.isArray(value)) {
    return { text, problems: [{ source: file, path: "", message: `expected a mapping of config keys at the top level, got ${Array.isArray(value) ? "a list" : typeof value}` }] };
  }
  return { data: value as Record<string, unknown>, text, problems: [] };
}

function parseJson(file: string, text: string): { value?: unknown; problems: Problem[] } {
  if (text.trim() === "") return { value: undefined, problems: [] }; // as an empty YAML file: no keys
  try {
    return { value: JSON.parse(text) as unknown, problems: [] };
  } catch (err) {
    // V8 names the position only for some errors ("Unexpected token 'x', "…" is not valid JSON"
    // has none), so find it ourselves.
    const raw = (err as Error).message;
    const message = raw.replace(/(?: in JSON)? at position \d+.*$/s, "").replace(/, (?:\.\.\.)?".*" is not valid JSON$/s, "");
    const offset = jsonErrorOffset(text);
    const where = offset !== undefined ? lineColumn(text, offset) : undefined;
    return { problems: [{ source: file, path: "", message: `invalid JSON: ${message}${where ? ` (line ${where.line}, column ${where.col})` : ""}` }] };
  }
}

function parseYaml(file: string, text: string): { value?: unknown; problems: Problem[] } {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    return {
      problems: doc.errors.map((e) => {
        const pos = lineCounter.linePos(e.pos[0]);
        return { source: file, path: "", message: `invalid YAML: ${e.message} (line ${pos.line}, column ${pos.col})` };
      }),
    };
  }
  return { value: doc.toJS({ maxAliasCount: 100 }) as unknown, problems: [] };
}

/**
 * Finds where a path is written in the file (its key, for a mapping entry) and formats it as
 * ` (line L, column C)`; the nearest existing ancestor when the path itself is absent. JSON is YAML,
 * so this also locates problems in `.json` files.
 */
function yamlLocator(text: string): (path: readonly PropertyKey[]) => string {
  const lineCounter = new LineCounter();
  let doc: Document | undefined;
  try {
    doc = parseDocument(text, { lineCounter, prettyErrors: false });
  } catch {
    doc = undefined;
  }
  return (path) => {
    if (!doc || doc.errors.length > 0) return "";
    let node: unknown = doc.contents;
    let offset: number | undefined = (node as { range?: [number, number, number] } | null)?.range?.[0];
    for (const segment of path) {
      if (isMap(node)) {
        const pair = node.items.find((p) => (isScalar(p.key) ? String(p.key.value) : String(p.key)) === String(segment));
        if (!pair) break;
        offset = (pair.key as { range?: [number, number, number] } | null)?.range?.[0] ?? offset;
        node = pair.value;
      } else if (isSeq(node) && typeof segment === "number") {
        const item = node.items[segment];
        if (!item) break;
        offset = (item as { range?: [number, number, number] }).range?.[0] ?? offset;
        node = item;
      } else break;
    }
    if (offset === undefined) return "";
    const pos = lineCounter.linePos(offset);
    return ` (line ${pos.line}, column ${pos.col})`;
  };
}

function describeIssue(issue: z.core.$ZodIssue, input: Record<string, unknown>, file: string | undefined): string {
  if (issue.code === "invalid_type" && valueAt(input, issue.path) === undefined) {
    const key = issue.path.map(String).join(".");
    const top = issue.path.length === 1 ? String(issue.path[0]) : undefined;
    return top !== undefined
      ? `required: set ${top}${file !== undefined ? " in the config file" : ""} or pass ${flagName(top)}`
      : `required (${key})`;
  }
  return issue.message;
}

function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  let v = value;
  for (const segment of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<PropertyKey, unknown>)[segment];
  }
  return v;
}

/** Flags arrive as strings; use the converted value when the key's schema takes it. */
function coerceFlag(field: z.ZodType | undefined, value: unknown): unknown {
  if (field === undefined || typeof value !== "string" || field.safeParse(value).success) return value;
  const candidates: unknown[] = [];
  const text = value.trim();
  if (/^-?\d+(\.\d+)?$/.test(text)) candidates.push(Number(text));
  if (text === "true" || text === "false") candidates.push(text === "true");
  if (/^[[{]/.test(text)) {
    try {
      candidates.push(JSON.parse(text) as unknown);
    } catch {
      // Not JSON: the string itself is reported.
    }
  }
  for (const candidate of candidates) if (field.safeParse(candidate).success) return candidate;
  // Right type, wrong value (`--resync-interval -5`): report the range, not "expected number".
  for (const candidate of candidates) {
    const r = field.safeParse(candidate);
    if (!r.success && r.error.issues.every((i) => i.code !== "invalid_type" || i.path.length > 0)) return candidate;
  }
  return value;
}


/** Where a JSON text stops being JSON (undefined when it is JSON after all). */
function jsonErrorOffset(text: string): number | undefined {
  let i = 0;
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i] ?? "")) i++;
  };
  const fail = (): never => {
    throw i;
  };
  const literal = (word: string) => (text.startsWith(word, i) ? (i += word.length) : fail());
  const string = () => {
    i++;
    while (i < text.length && text[i] !== '"') {
      const c = text.charCodeAt(i);
      if (c < 0x20) fail();
      if (text[i] === "\\") {
        i++;
        if (text[i] === "u") {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) fail();
          i += 4;
        } else if (!'"\\/bfnrt'.includes(text[i] ?? "x")) fail();
      }
      i++;
    }
    if (i >= text.length) fail();
    i++;
  };
  const number = () => {
    const m = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(text.slice(i));
    if (!m) fail();
    i += m?.[0].length ?? 0;
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      ws();
      if (text[i] === "}") return void i++;
      for (;;) {
        ws();
        if (text[i] !== '"') fail();
        string();
        ws();
        if (text[i] !== ":") fail();
        i++;
        value();
        ws();
        if (text[i] === ",") i++;
        else if (text[i] === "}") return void i++;
        else fail();
      }
    } else if (c === "[") {
      i++;
      ws();
      if (text[i] === "]") return void i++;
      for (;;) {
        value();
        ws();
        if (text[i] === ",") i++;
        else if (text[i] === "]") return void i++;
        else fail();
      }
    } else if (c === '"') string();
    else if (c === "t") literal("true");
    else if (c === "f") literal("false");
    else if (c === "n") literal("null");
    else number();
  };
  try {
    value();
    ws();
    return i < text.length ? i : undefined;
  } catch (offset) {
    return offset as number;
  }
}

function lineColumn(text: string, offset: number): { line: number; col: number } {
  const before = text.slice(0, offset).split("\n");
  return { line: before.length, col: (before.at(-1)?.length ?? 0) + 1 };
}

function definedEntries(record: Readonly<Record<string, unknown>>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(record).filter(([, v]) => v !== undefined));
}

function flagName(key: string): string {
  return `--${key.replaceAll("_", "-")}`;
}

function dotted(path: readonly PropertyKey[]): string {
  return path.map(String).join(".");
}
