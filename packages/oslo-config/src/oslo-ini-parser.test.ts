import { describe, expect, it } from "vitest";
import { OsloConfigError } from "./oslo-config-error.js";
import { parseOsloIni } from "./oslo-ini-parser.js";

const parse = (lines: string[]) => parseOsloIni(lines.join("\n"), "/etc/neutron/l3_agent.ini");

function parseError(lines: string[]): OsloConfigError {
  try {
    parse(lines);
  } catch (err) {
    expect(err).toBeInstanceOf(OsloConfigError);
    return err as OsloConfigError;
  }
  throw new Error("expected a parse error");
}

describe("parseOsloIni", () => {
  it("keeps every assignment with its section as written and the line of its key", () => {
    const file = parse(["# comment", "[DEFAULT]", "a = 1", "", "[agent]", "b: two", "  lines", "a = again"]);
    expect(file.entries).toEqual([
      { section: "DEFAULT", key: "a", value: "1", line: 3 },
      { section: "agent", key: "b", value: "two\nlines", line: 6 },
      { section: "agent", key: "a", value: "again", line: 8 },
    ]);
    expect(file.sections).toEqual([
      { name: "DEFAULT", line: 2 },
      { name: "agent", line: 5 },
    ]);
  });

  it("treats # and ; as comments only at the start of a line, and unquotes one pair around the first line", () => {
    const file = parse(["[DEFAULT]", "a = x # y", "; b = 1", "c = \"quoted\"", "d = 'it''s'", "e = \"open"]);
    expect(file.entries.map((e) => [e.key, e.value])).toEqual([
      ["a", "x # y"],
      ["c", "quoted"],
      ["d", "it''s"],
      ["e", '"open'],
    ]);
  });

  it.each([
    [["[DEFAULT", "a = 1"], 1, 'a section header must end with ]: "[DEFAULT"'],
    [["[DEFAULT]", "[]"], 2, "empty section name"],
    [["[DEFAULT]", "a = 1", "words"], 3, "neither '=' nor ':'"],
    [["[DEFAULT]", "= 1"], 2, "an option with no name"],
    [["[DEFAULT]", "", "  indented = 1"], 3, "a continuation line"],
    [["a = 1", "[DEFAULT]"], 1, '"a" is set before any [section]'],
  ])("%j fails naming the file and line %i", (lines, line, reason) => {
    const err = parseError(lines);
    expect(err.code).toBe("OSLO_CONFIG_PARSE");
    expect(err.file).toBe("/etc/neutron/l3_agent.ini");
    expect(err.line).toBe(line);
    expect(err.message).toMatch(new RegExp(`^/etc/neutron/l3_agent\\.ini line ${line}: `));
    expect(err.message).toContain(reason);
  });
});
