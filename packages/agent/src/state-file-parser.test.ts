import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseStateText, readStateFileBytes, scanJson } from "./state-file-parser.js";

const messageOf = (text: string, source: string, limits = {}) => {
  const r = parseStateText(text, source, limits);
  return "problem" in r ? r.problem.message : undefined;
};
const documentOf = (text: string, source: string) => {
  const r = parseStateText(text, source);
  if ("problem" in r) throw new Error(r.problem.message);
  return r.document;
};

/** The billion laughs: each level repeats the one before nine times (9^7 ≈ 4.8 million strings). */
const aliasBomb = [
  'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
  ..."bcdefg".split("").map((x, i) => {
    const prev = "abcdefg"[i];
    return `${x}: &${x} [${Array.from({ length: 9 }, () => `*${prev}`).join(",")}]`;
  }),
  "",
].join("\n");

describe("parseStateText: JSON", () => {
  it("parses a .json file as JSON, and a file starting with '{' too", () => {
    expect(documentOf('{"routers": [{"id": "r1"}]}', "s.json")).toEqual({ routers: [{ id: "r1" }] });
    expect(documentOf('\n  {"routers": []}\n', "s.yaml")).toEqual({ routers: [] });
    expect(documentOf('\uFEFF{"a": 1}', "s.json")).toEqual({ a: 1 });
  });

  it("reports a JSON syntax error with its line and column", () => {
    // A trailing comma: YAML's flow collections allow it, JSON does not.
    expect(messageOf('{\n  "routers": [\n    {"id": "r1"},\n  ]\n}\n', "s.json")).toBe("cannot parse at line 4, column 3: expected a value, found ']'");
    expect(messageOf('{\n  "a": 1,\n}\n', "s.json")).toBe("cannot parse at line 3, column 1: expected a property name in double quotes, found '}'");
    expect(messageOf('{"a": tru}', "s.json")).toBe("cannot parse at line 1, column 7: expected a value, found 't'");
    expect(messageOf('{\n  "a": [1, 2\n', "s.json")).toBe("cannot parse at line 3, column 1: unexpected end of the file: the '[' at line 2, column 8 is not closed");
    expect(messageOf('{"a": "x\ny"}', "s.json")).toBe("cannot parse at line 1, column 9: a string is not closed before the end of the line");
    expect(messageOf('{"a": 01}', "s.json")).toMatch(/^cannot parse at line 1, column 7: invalid number/);
    expect(messageOf('{"a": 1} {"b": 2}', "s.json")).toBe("cannot parse at line 1, column 10: unexpected '{' after the end of the JSON value");
    expect(messageOf('{"a" 1}', "s.json")).toBe("cannot parse at line 1, column 6: expected ':' after the property name, found '1'");
  });

  it("reports a key set twice in one object (JSON.parse would keep the last silently)", () => {
    expect(messageOf('{\n  "a": 1,\n  "a": 2\n}\n', "s.json")).toBe("cannot parse at line 3, column 3: Map keys must be unique");
    // Escapes are decoded before comparing.
    expect(messageOf('{"ab": 1, "a\\u0062": 2}', "s.json")).toBe("cannot parse at line 1, column 11: Map keys must be unique");
    // The same key in two objects is fine.
    expect(documentOf('{"x": {"a": 1}, "y": {"a": 2}}', "s.json")).toEqual({ x: { a: 1 }, y: { a: 2 } });
  });

  it("a .json file is JSON only; another file starting with '{' falls back to YAML", () => {
    expect(documentOf("{a: 1, b: [x, y]}", "s.yaml")).toEqual({ a: 1, b: ["x", "y"] });
    expect(messageOf("{a: 1}", "s.json")).toBe("cannot parse at line 1, column 2: expected a property name in double quotes, found 'a'");
  });

  it("limits nesting depth", () => {
    const deep = (n: number) => `{"a": ${"[".repeat(n - 1)}${"]".repeat(n - 1)}}`;
    expect(documentOf(deep(64), "s.json")).toBeDefined();
    expect(messageOf(deep(65), "s.json")).toBe("cannot parse at line 1, column 70: nesting deeper than 64 levels");
    expect(messageOf(deep(10), "s.json", { maxDepth: 5 })).toMatch(/nesting deeper than 5 levels/);
  });

  it("keeps __proto__ as a plain key", () => {
    const d = documentOf('{"__proto__": {"polluted": true}}', "s.json");
    expect(Object.getPrototypeOf(d)).toBe(Object.prototype);
    expect(Object.keys(d)).toEqual(["__proto__"]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("requires a mapping at the top level", () => {
    expect(messageOf("\n [1, 2]", "s.json")).toBe("expected a mapping at the top level, found a list at line 2, column 2");
    expect(messageOf("42", "s.json")).toBe("expected a mapping at the top level, found a number at line 1, column 1");
  });

  it("scanJson accepts what JSON.parse accepts", () => {
    for (const text of ['{"a":[1,-2.5e+3,0.1,true,false,null,"\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9"],"b":{}}', "[]", " 0 ", '"x"', "[[],[{}]]"]) {
      expect(() => JSON.parse(text)).not.toThrow();
      expect(scanJson(text, 64)).toBeUndefined();
    }
    for (const text of ["", "[1,]", "{,}", "01", "1.", "-", "[1 2]", '"\\x"', "nul", "{}}"]) {
      expect(() => JSON.parse(text)).toThrow();
      expect(scanJson(text, 64)).toBeDefined();
    }
  });
});

describe("parseStateText: YAML", () => {
  it("reports an alias cycle with its position instead of building a circular document", () => {
    expect(messageOf("a: &a [*a]\n", "s.yaml")).toBe("cannot parse at line 1, column 8: alias *a is inside the node that &a names (which starts at line 1, column 7): an alias cycle");
    expect(messageOf("x: 1\nb: &b\n  c:\n    - *b\n", "s.yaml")).toBe("cannot parse at line 4, column 7: alias *b is inside the node that &b names (which starts at line 3, column 3): an alias cycle");
  });

  it("reports an alias bomb at the alias that crosses the limit", () => {
    expect(messageOf(aliasBomb, "s.yaml")).toBe("cannot parse at line 7, column 8: the aliases stand for more than 1000000 nodes when expanded (an alias bomb?)");
    expect(messageOf("a: &a [1, 2, 3]\nb: [*a, *a]\n", "s.yaml", { maxAliasNodes: 7 })).toMatch(/^cannot parse at line 2, column 9: the aliases stand for more than 7 nodes/);
  });

  it("allows ordinary aliases, and limits their number", () => {
    expect(documentOf("rules: &r [{ port: 22 }]\nsg1: *r\nsg2: *r\n", "s.yaml")).toEqual({ rules: [{ port: 22 }], sg1: [{ port: 22 }], sg2: [{ port: 22 }] });
    expect(messageOf("a: &a 1\nb: [*a, *a, *a]\n", "s.yaml", { maxAliases: 2 })).toBe("cannot parse at line 2, column 13: more than 2 aliases in one file");
  });

  it("limits nesting depth, aliases expanded", () => {
    expect(messageOf(`a: ${"[".repeat(64)}${"]".repeat(64)}\n`, "s.yaml")).toBe("cannot parse at line 1, column 67: nesting deeper than 64 levels");
    expect(messageOf("a: &a [[[1]]]\nb: [[*a]]\n", "s.yaml", { maxDepth: 5 })).toBe("cannot parse at line 2, column 6: nesting deeper than 5 levels (through alias *a)");
  });

  it("reports a key set twice in one mapping with its position", () => {
    expect(messageOf("routers:\n  - id: r1\n    id: r2\n", "s.yaml")).toBe("cannot parse at line 3, column 5: Map keys must be unique");
    expect(messageOf("{a: 1, a: 2}", "s.yaml")).toBe("cannot parse at line 1, column 8: Map keys must be unique");
    // 1 and "1" are different keys in YAML, as the yaml package has it.
    expect(documentOf("1: a\n'1': b\n", "s.yaml")).toBeDefined();
  });
});

describe("readStateFileBytes", () => {
  const dir = mkdtempSync(join(tmpdir(), "cw-state-bytes-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("refuses a file over the limit without reading it, and tells unchanged content by its hash", async () => {
    const file = join(dir, "s.yaml");
    writeFileSync(file, "a: 1\n");
    const first = await readStateFileBytes(file, undefined, 5);
    expect(first).toMatchObject({ kind: "read", text: "a: 1\n" });
    const hash = (first as { hash: string }).hash;
    expect(await readStateFileBytes(file, hash, 5)).toEqual({ kind: "unchanged", hash });
    expect(await readStateFileBytes(file, hash, 4)).toEqual({ kind: "too-large", size: 5 });
    expect(await readStateFileBytes(join(dir, "none.yaml"), undefined, 5)).toEqual({ kind: "missing" });
    expect(await readStateFileBytes(dir, undefined, 5)).toEqual({ kind: "not-a-file" });
    const fifo = join(dir, "fifo.yaml");
    execFileSync("mkfifo", [fifo]);
    expect(await readStateFileBytes(fifo, undefined, 5)).toEqual({ kind: "not-a-file" });
  });
});
