import { describe, expect, it } from "vitest";
import { booleanType, floatType, integerType, listType, multiType, portType, stringType } from "./oslo-types.js";

describe("oslo types", () => {
  it("booleans: true/false, yes/no, on/off, 1/0 in any case, nothing else", () => {
    const b = booleanType();
    for (const t of ["true", "TRUE", "Yes", "on", "1"]) expect(b.parse(t)).toBe(true);
    for (const f of ["false", "No", "OFF", "0"]) expect(b.parse(f)).toBe(false);
    for (const bad of ["", "y", " true", "2"]) expect(() => b.parse(bad)).toThrow(/expected a boolean/);
    expect(b.format(true)).toBe("True");
  });

  it("integers and ports: Python's int() literals, empty is no value, ranges", () => {
    const i = integerType({ min: 0 });
    expect(i.parse(" 1_000 ")).toBe(1000);
    expect(i.parse("+7")).toBe(7);
    expect(i.parse("")).toBeUndefined();
    for (const bad of ["0x10", "1.0", "1__0", "_1", "ten"]) expect(() => i.parse(bad)).toThrow(/not an integer/);
    expect(() => i.parse("-1")).toThrow(/at least 0/);
    expect(() => portType().parse("65536")).toThrow(/at most 65535/);
  });

  it("floats: Python's float() literals, printed as Python prints them", () => {
    const f = floatType();
    expect(f.parse("1e3")).toBe(1000);
    expect(f.parse(".5")).toBe(0.5);
    expect(f.parse("-Infinity")).toBe(-Infinity);
    expect(() => f.parse("0x1")).toThrow(/not a number/);
    expect([7, 0.1, 1e-5, 1e-4, 1e16, 1e15, -2.5e-7].map((v) => f.format(v))).toEqual(["7.0", "0.1", "1e-05", "0.0001", "1e+16", "1000000000000000.0", "-2.5e-07"]);
  });

  it("lists: comma-separated, stripped, trailing commas dropped; an item type joins parts it refuses", () => {
    expect(listType().parse(" a, b,,c,, ")).toEqual(["a", "b", "", "c"]);
    expect(listType().parse("")).toEqual([]);
    const pairs = listType({ name: "pair", parse: (t) => (/^\w+:\w+$/.test(t) ? t : (() => { throw new Error("not a pair"); })()), format: (t: string) => t });
    expect(() => pairs.parse("a:b, c")).toThrow(/not a pair/);
    expect(listType().format(["p", "it's"])).toBe(`['p', "it's"]`);
  });

  it("strings with choices compare exactly; multi-valued types take one item per line", () => {
    expect(() => stringType({ choices: ["legacy"] }).parse("Legacy")).toThrow(/expected one of legacy/);
    expect(multiType().parse("x")).toEqual(["x"]);
  });
});
