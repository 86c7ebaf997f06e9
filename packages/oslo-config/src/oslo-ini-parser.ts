/**
 * One config file read as oslo.config's `iniparser.BaseParser` and `cfg.ConfigParser` read it, rule
 * for rule (they are not Python's `configparser`):
 *
 * - Lines end at `\n`, `\r\n` or a lone `\r`; trailing whitespace is dropped first, so a line of
 *   spaces is a blank line.
 * - A blank line ends a multi-line value. A line starting with a space or a tab continues the
 *   value above it, left-stripped, joined with `\n`: even when it looks like a comment. With no
 *   value above it, it is an error.
 * - `[name]` starts a section; the name is everything between the brackets (spaces kept). `[]` and a
 *   line starting with `[` that does not end with `]` are errors.
 * - `#` and `;` start a comment only as the first character of a line: `a = b # c` is the value `b # c`.
 * - `key = value` or `key: value`, split at whichever of `=` and `:` comes first; key and value are
 *   stripped. One pair of quotes around the whole first line of a value is removed (`"x"` → `x`,
 *   a lone `"` → empty); nothing else is unquoted or unescaped, and `%` is not special.
 * - An empty key, a line with neither `=` nor `:`, or a value before the first section are errors.
 * - Keys keep their case and spelling (`report-interval` is not `report_interval`); sections are
 *   matched later, case-insensitively except `DEFAULT` (see `OsloConfig`).
 * - A key set twice is kept twice, in order (the last wins for a single-valued option; a
 *   multi-valued one takes each).
 */
import { OsloConfigError } from "./oslo-config-error.js";
import { pyLstrip, pyReadlines, pyRstrip, pyStrip } from "./python-text.js";

/** One `key = value` as written, after continuation lines are joined. */
export interface OsloIniEntry {
  /** The section as written. */
  readonly section: string;
  readonly key: string;
  readonly value: string;
  /** The line of the key (1-based). */
  readonly line: number;
}

/** One parsed file: its assignments in file order, and its section headers. */
export interface OsloIniFile {
  readonly file: string;
  readonly entries: readonly OsloIniEntry[];
  /** Every `[section]` header, in file order (a section may appear more than once). */
  readonly sections: readonly { readonly name: string; readonly line: number }[];
}

/**
 * Parses the text of one config file as oslo.config does.
 * @param file names the file in errors and in the result.
 * @throws OsloConfigError (`OSLO_CONFIG_PARSE`) naming the file and the line.
 */
export function parseOsloIni(text: string, file: string): OsloIniFile {
  const entries: OsloIniEntry[] = [];
  const sections: { name: string; line: number }[] = [];
  let section: string | undefined;
  let pending: { key: string; value: string[]; line: number } | undefined;
  const fail = (line: number, reason: string, content: string): never => {
    throw new OsloConfigError("OSLO_CONFIG_PARSE", `${reason}: ${JSON.stringify(content)}`, { file, line });
  };
  const flush = () => {
    if (!pending) return;
    if (section === undefined) {
      // oslo.config names the line where it notices (the next line); the key's own line is clearer.
      throw new OsloConfigError("OSLO_CONFIG_PARSE", `${JSON.stringify(pending.key)} is set before any [section]`, { file, line: pending.line });
    }
    entries.push({ section, key: pending.key, value: pending.value.join("\n"), line: pending.line });
    pending = undefined;
  };

  const lines = pyReadlines(text);
  for (let index = 0; index < lines.length; index++) {
    const number = index + 1;
    const line = pyRstrip(lines[index]!);
    if (line === "") {
      flush();
      continue;
    }
    if (line.startsWith(" ") || line.startsWith("\t")) {
      if (!pending) fail(number, "a continuation line (it starts with a space or a tab) with no option above it", line);
      else pending.value.push(pyLstrip(line));
      continue;
    }
    flush();
    if (line.startsWith("[")) {
      if (!line.endsWith("]")) fail(number, "a section header must end with ]", line);
      if (line.length <= 2) fail(number, "empty section name", line);
      section = line.slice(1, -1);
      sections.push({ name: section, line: number });
    } else if (line.startsWith("#") || line.startsWith(";")) {
      // A comment.
    } else {
      const { key, value } = splitKeyValue(line, (reason) => fail(number, reason, line));
      if (key === "") fail(number, "an option with no name", line);
      pending = { key, value: [value], line: number };
    }
  }
  flush();
  return { file, entries, sections };
}

function splitKeyValue(line: string, fail: (reason: string) => never): { key: string; value: string } {
  const colon = line.indexOf(":");
  const equal = line.indexOf("=");
  if (colon < 0 && equal < 0) fail("neither '=' nor ':' in an option line");
  const at = colon < 0 || (equal >= 0 && equal < colon) ? equal : colon;
  let value = pyStrip(line.slice(at + 1));
  if (value !== "" && value[0] === value.at(-1) && (value[0] === '"' || value[0] === "'")) value = value.slice(1, -1);
  return { key: pyStrip(line.slice(0, at)), value };
}
