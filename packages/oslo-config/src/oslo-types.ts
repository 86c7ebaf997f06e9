/**
 * oslo.config's option types (`oslo_config.types`), converting a value's text as they do. A type's
 * `parse` throws a plain `Error` with the reason; `OsloConfig` adds where the value was written.
 */
import { pyFloatStr, pyRepr, pyStrip } from "./python-text.js";

export interface OsloType<T> {
  /** For messages and docs: `boolean`, `integer`, `list of string`, ... */
  readonly name: string;
  /**
   * The value of the text; `undefined` where oslo.config gives `None` (an empty integer or float).
   * @throws Error with the reason when the type refuses the text.
   */
  parse(text: string): T | undefined;
  /** `str()` of a value in Python, which is what `$name` puts into another option's value. */
  format(value: T): string;
}

export interface StringTypeOptions {
  /** The only values allowed, compared exactly (oslo.config's `choices`). */
  readonly choices?: readonly string[];
}

/** `types.String`: the text as it is. */
export function stringType(options: StringTypeOptions = {}): OsloType<string> {
  const choices = options.choices;
  return {
    name: "string",
    parse(text) {
      if (choices && !choices.includes(text)) throw new Error(`expected one of ${choices.join(", ")}`);
      return text;
    },
    format: (value) => value,
  };
}

const TRUE_VALUES = ["true", "1", "on", "yes"];
const FALSE_VALUES = ["false", "0", "off", "no"];

/** `types.Boolean`: true/false, yes/no, on/off, 1/0, in any case (and nothing else, not even with spaces around). */
export function booleanType(): OsloType<boolean> {
  return {
    name: "boolean",
    parse(text) {
      const lower = text.toLowerCase();
      if (TRUE_VALUES.includes(lower)) return true;
      if (FALSE_VALUES.includes(lower)) return false;
      throw new Error("expected a boolean: true/false, yes/no, on/off or 1/0");
    },
    format: (value) => (value ? "True" : "False"),
  };
}

export interface NumberTypeOptions {
  readonly min?: number;
  readonly max?: number;
}

// Python's int() and float() literals: digits may be grouped with single underscores.
const DIGITS = String.raw`\d(?:_?\d)*`;
const INTEGER = new RegExp(String.raw`^[+-]?${DIGITS}$`);
const FLOAT = new RegExp(String.raw`^[+-]?(?:(?:${DIGITS}(?:\.(?:${DIGITS})?)?|\.${DIGITS})(?:[eE][+-]?${DIGITS})?|inf|infinity|nan)$`, "i");

function checkRange(value: number, options: NumberTypeOptions, show: (n: number) => string): void {
  if (options.min !== undefined && value < options.min) throw new Error(`must be at least ${show(options.min)}`);
  if (options.max !== undefined && value > options.max) throw new Error(`must be at most ${show(options.max)}`);
}

/** `types.Integer`: a whole number (`1_000` too); empty text is no value. */
export function integerType(options: NumberTypeOptions = {}): OsloType<number> {
  return {
    name: "integer",
    parse(text) {
      const s = pyStrip(text);
      if (s === "") return undefined;
      if (!INTEGER.test(s)) throw new Error("not an integer");
      // `+ 0`: Python has no negative zero integer.
      const value = Number(s.replaceAll("_", "")) + 0;
      checkRange(value, options, String);
      return value;
    },
    format: (value) => String(value),
  };
}

/** `types.Port`: an integer from 0 to 65535 (or the narrower range given). */
export function portType(options: NumberTypeOptions = {}): OsloType<number> {
  const integer = integerType({ min: options.min ?? 0, max: options.max ?? 65535 });
  return { ...integer, name: "port" };
}

/** `types.Float`: a number as Python's float() reads it; empty text is no value. */
export function floatType(options: NumberTypeOptions = {}): OsloType<number> {
  return {
    name: "float",
    parse(text) {
      const s = pyStrip(text);
      if (s === "") return undefined;
      if (!FLOAT.test(s)) throw new Error("not a number");
      const lower = s.toLowerCase().replaceAll("_", "");
      const value = lower.endsWith("nan") ? Number.NaN : lower.endsWith("inf") || lower.endsWith("infinity") ? (lower.startsWith("-") ? -Infinity : Infinity) : Number(lower);
      checkRange(value, options, pyFloatStr);
      return value;
    },
    format: pyFloatStr,
  };
}

/**
 * `types.List`: items separated by commas, each stripped; trailing commas dropped; empty text is
 * the empty list. When an item fails its type, the next part is joined to it with a comma and tried
 * again (oslo.config's way of allowing commas inside items).
 */
export function listType<T = string>(item: OsloType<T> = stringType() as unknown as OsloType<T>): OsloType<T[]> {
  return {
    name: `list of ${item.name}`,
    parse(text) {
      const s = pyStrip(text).replace(/,+$/, "");
      const parts = s === "" ? [] : s.split(",");
      const result: T[] = [];
      while (parts.length > 0) {
        let part = parts.shift()!;
        let firstError: unknown;
        for (;;) {
          try {
            result.push(item.parse(pyStrip(part)) as T);
            break;
          } catch (err) {
            firstError ??= err;
            if (parts.length === 0) throw firstError;
            part += `,${parts.shift()!}`;
          }
        }
      }
      return result;
    },
    format: (value) => `[${value.map((v) => (typeof v === "string" ? pyRepr(v) : item.format(v))).join(", ")}]`,
  };
}

/** A type whose option takes every occurrence of itself (oslo.config's `MultiOpt`): one value per line. */
export interface OsloMultiType<T> extends OsloType<T[]> {
  readonly multi: true;
  readonly item: OsloType<T>;
}

/** `MultiStrOpt` and the like: `key = a` then `key = b` (in one file or several) is `[a, b]`. */
export function multiType<T = string>(item: OsloType<T> = stringType() as unknown as OsloType<T>): OsloMultiType<T> {
  return {
    name: `multi-valued ${item.name}`,
    multi: true,
    item,
    parse: (text) => [item.parse(text) as T],
    format: (value) => `[${value.map((v) => (typeof v === "string" ? pyRepr(v) : item.format(v))).join(", ")}]`,
  };
}

export function isMultiType<T>(type: OsloType<T>): type is OsloType<T> & OsloMultiType<unknown> {
  return (type as { multi?: unknown }).multi === true;
}
