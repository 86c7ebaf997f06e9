/**
 * Values out of several config files, as oslo.config's `ConfigOpts` gives them to a program started
 * with `--config-file a --config-file b` (and `--config-dir`):
 *
 * - **Files**: a later file wins over an earlier one, option by option; within one file the last
 *   line wins. A multi-valued option takes every line of every file, earliest first.
 * - **Sections** match case-insensitively (`[agent]` is the group `AGENT`), except `DEFAULT`, which
 *   is only `[DEFAULT]` (`[default]` is a group of its own). Nothing falls back to `DEFAULT`.
 * - **Names** match exactly, with `-` in a registered name read as `_`; deprecated names are read
 *   too, the current name first within a file.
 * - **Interpolation**: `$name` and `${name}` in a value (and in a text default) are replaced by
 *   that option's value, looked up in the value's own group and then in `DEFAULT`; `$group.name`
 *   names another group (spelled as registered). `$$` and `\$` are a literal `$`; a `$` that does
 *   not start a name is left as it is. An option that is not registered is an error in oslo.config;
 *   here it is taken from the files as text when they set it (this reader knows the options the
 *   agent uses, not all of Neutron's), and an error otherwise. A value that refers back to itself
 *   is an error.
 * - **Types** convert the interpolated text (`OsloType`); an option no file sets has its default.
 */
import { OsloConfigError } from "./oslo-config-error.js";
import type { OsloIniEntry, OsloIniFile } from "./oslo-ini-parser.js";
import { fileKey, normalizeGroup, optionKeys, type OsloOption } from "./oslo-option.js";
import { isMultiType } from "./oslo-types.js";

/** Where a value was written. */
export interface OsloValueSource {
  readonly file: string;
  readonly line: number;
  /** The section as the file spells it. */
  readonly section: string;
  /** The option as the file spells it (a deprecated name, when that was used). */
  readonly option: string;
  /** The text as written, before interpolation. */
  readonly value: string;
}

/** An option's value and where it came from. */
export interface OsloValue<V> {
  /** Undefined where oslo.config gives `None`: no default and no file sets it, or an empty number. */
  readonly value: V | undefined;
  /** The line that set it (for a multi-valued option, the last); undefined when it is the default. */
  readonly source: OsloValueSource | undefined;
  /**
   * Every line the value depends on: its own (each line, for a multi-valued option) and those of the
   * options its `$name`s refer to. Empty: the default through and through.
   */
  readonly sources: readonly OsloValueSource[];
}

/** One assignment in one of the files. */
export interface OsloConfigEntry extends OsloIniEntry {
  readonly file: string;
}

const TEMPLATE = /\$(?:(\$)|([_a-z][._a-z0-9]*)|\{([_a-z][._a-z0-9]*)\}|())/gi;

type SectionIndex = Map<string, Map<string, OsloIniEntry[]>>;

export class OsloConfig {
  /** The files read, in order (later wins). */
  readonly files: readonly string[];
  private readonly parsed: readonly OsloIniFile[];
  private readonly indexes: readonly SectionIndex[];
  /** Registered options by group (as registered) and file key, for `$name`. */
  private readonly registry = new Map<string, Map<string, OsloOption<unknown>>>();

  /**
   * @param files parsed files in command-line order (`readOsloConfigFiles`).
   * @param options the options `$name` may refer to (more with `register`).
   */
  constructor(files: readonly OsloIniFile[], options: readonly OsloOption<any>[] = []) {
    this.parsed = files;
    this.files = files.map((f) => f.file);
    this.indexes = files.map(indexFile);
    for (const option of options) this.register(option);
  }

  /** Makes an option one that `$name` can refer to (a later registration of the same name replaces it). */
  register(option: OsloOption<any>): void {
    let group = this.registry.get(option.group);
    if (!group) this.registry.set(option.group, (group = new Map()));
    group.set(fileKey(option.name), option);
  }

  /**
   * An option's value: from the files (with its deprecated names), else its default; interpolated
   * and converted by its type.
   * @throws OsloConfigError (`OSLO_CONFIG_VALUE`, `OSLO_CONFIG_INTERPOLATION`) naming the file,
   *   line, section, option and value.
   */
  get<V>(option: OsloOption<V>): OsloValue<V> {
    return this.resolve(option, []);
  }

  /** Every assignment in every file, in file order then line order. */
  entries(): OsloConfigEntry[] {
    return this.parsed.flatMap((f) => f.entries.map((e) => ({ ...e, file: f.file })));
  }

  /** Whether an assignment is one of the option's names (its own or a deprecated one). */
  static isEntryOf(option: Pick<OsloOption<unknown>, "group" | "name" | "deprecatedNames">, entry: Pick<OsloIniEntry, "section" | "key">): boolean {
    const section = normalizeGroup(entry.section);
    return optionKeys(option).some((k) => normalizeGroup(k.group) === section && k.key === entry.key);
  }

  private resolve<V>(option: OsloOption<V>, stack: readonly string[]): OsloValue<V> {
    const inner = [...stack, optionId(option.group, option.name)];
    const found = this.lookup(option);
    const type = option.type;
    if (found.length === 0) {
      const fallback = option.default;
      if (typeof fallback !== "string") return { value: fallback, source: undefined, sources: [] };
      const sources: OsloValueSource[] = [];
      const text = this.substitute(fallback, option, inner, sources, undefined);
      try {
        return { value: type.parse(text), source: undefined, sources };
      } catch (err) {
        throw new OsloConfigError("OSLO_CONFIG_VALUE", `its default ${JSON.stringify(fallback)} is not valid: ${reason(err)}`, { section: option.group, option: option.name });
      }
    }
    const sources: OsloValueSource[] = [];
    const convert = (source: OsloValueSource): unknown => {
      sources.push(source);
      const text = this.substitute(source.value, option, inner, sources, source);
      try {
        return type.parse(text);
      } catch (err) {
        throw new OsloConfigError("OSLO_CONFIG_VALUE", `${reason(err)}${text !== source.value ? ` (after interpolation: ${JSON.stringify(text)})` : ""}`, source);
      }
    };
    if (isMultiType(type)) {
      const values = found.map((s) => (convert(s) as unknown[])[0]);
      return { value: values as V, source: found.at(-1), sources };
    }
    const winner = found.at(-1)!;
    return { value: convert(winner) as V | undefined, source: winner, sources };
  }

  /**
   * The lines that set an option, as oslo.config finds them: for a single-valued option the last
   * line of the latest file that has any of its names (only that one returned); for a multi-valued
   * one every line of every file, earliest file first.
   */
  private lookup(option: OsloOption<unknown>): OsloValueSource[] {
    const keys = optionKeys(option);
    const multi = isMultiType(option.type);
    let collected: OsloValueSource[] = [];
    for (let i = this.indexes.length - 1; i >= 0; i--) {
      const index = this.indexes[i]!;
      const file = this.files[i]!;
      for (const { group, key } of keys) {
        const entries = index.get(normalizeGroup(group))?.get(key);
        if (!entries) continue;
        const sources = entries.map((e) => ({ file, line: e.line, section: e.section, option: e.key, value: e.value }));
        if (!multi) return [sources.at(-1)!];
        // oslo.config prepends each name's lines as it walks back through the files.
        collected = [...sources, ...collected];
      }
    }
    return collected;
  }

  /** `string.Template.safe_substitute` with oslo.config's lookup. */
  private substitute(text: string, option: OsloOption<unknown>, stack: readonly string[], sources: OsloValueSource[], at: OsloValueSource | undefined): string {
    if (!text.includes("$")) return text;
    return text.replaceAll("\\$", "$$$$").replace(TEMPLATE, (match, escaped: string | undefined, named: string | undefined, braced: string | undefined) => {
      if (escaped !== undefined) return "$";
      const name = named ?? braced;
      if (name === undefined) return match;
      const value = this.reference(name, option, stack, at);
      sources.push(...value.sources);
      return value.text;
    });
  }

  /** What `$name` stands for in a value of `option`. */
  private reference(name: string, option: OsloOption<unknown>, stack: readonly string[], at: OsloValueSource | undefined): { text: string; sources: readonly OsloValueSource[] } {
    const dot = name.indexOf(".");
    const candidates: { group: string; key: string }[] =
      dot < 0
        ? [
            { group: option.group, key: name },
            { group: "DEFAULT", key: name },
          ]
        : [{ group: name.slice(0, dot), key: name.slice(dot + 1) }];
    if (dot >= 0 && name.slice(0, dot) === "DEFAULT") {
      // oslo.config has no group called DEFAULT to look in.
      throw new OsloConfigError("OSLO_CONFIG_INTERPOLATION", `$${name}: DEFAULT is not a group to name; write $${name.slice(dot + 1)}`, at ?? { section: option.group, option: option.name });
    }
    const location = at ?? { section: option.group, option: option.name };
    const checkCycle = (group: string, key: string) => {
      const id = optionId(group, key);
      if (!stack.includes(id)) return;
      const chain = [...stack.slice(stack.indexOf(id)), id];
      throw new OsloConfigError("OSLO_CONFIG_INTERPOLATION", `$${name} refers back to itself: ${chain.join(" → ")}`, location);
    };
    for (const { group, key } of candidates) {
      const registered = this.registry.get(group)?.get(key);
      if (!registered) continue;
      checkCycle(registered.group, registered.name);
      const value = this.resolve(registered, stack);
      return { text: value.value === undefined || value.value === null ? "" : registered.type.format(value.value as never), sources: value.sources };
    }
    // Not an option this reader was told about: the files' text, when they set it.
    for (const { group, key } of candidates) {
      const found = this.lookup({ group, name: key, type: { name: "string", parse: (t) => t, format: (t: string) => t } });
      if (found.length === 0) continue;
      checkCycle(group, key);
      const source = found[0]!;
      const sources: OsloValueSource[] = [source];
      const text = this.substitute(source.value, { group, name: key, type: option.type }, [...stack, optionId(group, key)], sources, source);
      return { text, sources };
    }
    const where = dot >= 0 ? "" : option.group === "DEFAULT" ? " of [DEFAULT]" : ` of [${option.group}] or [DEFAULT]`;
    throw new OsloConfigError("OSLO_CONFIG_INTERPOLATION", `$${name} names no option${where} that is set or known`, location);
  }
}

function optionId(group: string, name: string): string {
  return `[${group}] ${fileKey(name)}`;
}

function indexFile(file: OsloIniFile): SectionIndex {
  const index: SectionIndex = new Map();
  for (const entry of file.entries) {
    const group = normalizeGroup(entry.section);
    let section = index.get(group);
    if (!section) index.set(group, (section = new Map()));
    let list = section.get(entry.key);
    if (!list) section.set(entry.key, (list = []));
    list.push(entry);
  }
  return index;
}

function reason(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
