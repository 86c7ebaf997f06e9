import { describe, expect, it } from "vitest";
import { parseReferenceExpected } from "./reference-expected.js";

const text = (...lines: string[]) => `${lines.join("\n")}\n`;

describe("parseReferenceExpected", () => {
  it("reads plain sections by title, with the step's title and op", () => {
    const steps = parseReferenceExpected(
      text("# Produced by ...", "=== after step 1: add_ports ===", "--- iptables-save ---", "*filter", "COMMIT", "--- ipset save ---", "--- conntrack -D ---", "-D -f ipv4", "=== after step 2: remove_ports ===", "--- iptables-save ---", "*filter", "", "COMMIT"),
      "x.expected.txt",
    );
    expect(steps).toEqual([
      { title: "after step 1: add_ports", label: "add_ports", sections: { "iptables-save": "*filter\nCOMMIT\n", "ipset save": "", "conntrack -D": "-D -f ipv4\n" }, routers: new Map() },
      { title: "after step 2: remove_ports", label: "remove_ports", sections: { "iptables-save": "*filter\nCOMMIT\n" }, routers: new Map() },
    ]);
  });

  it("collects router-prefixed saves per router in file order", () => {
    const [step] = parseReferenceExpected(
      text("=== after step 1: add_router ===", "--- router r2: iptables-save ---", "*nat", "COMMIT", "--- router r1: ip6tables-save ---", "*filter", "COMMIT", "--- router r1: iptables-save ---"),
      "x",
    );
    expect([...step!.routers]).toEqual([
      ["r2", { iptables: "*nat\nCOMMIT\n", ip6tables: "" }],
      ["r1", { iptables: "", ip6tables: "*filter\nCOMMIT\n" }],
    ]);
    expect(Object.keys(step!.sections)).toEqual(["router r2: iptables-save", "router r1: ip6tables-save", "router r1: iptables-save"]);
  });

  it("refuses a section before the first step and text outside a section", () => {
    expect(() => parseReferenceExpected(text("--- iptables-save ---"), "a.expected.txt")).toThrow("a.expected.txt: a section before the first step");
    expect(() => parseReferenceExpected(text("=== after step 1: x ===", "*filter"), "b.expected.txt")).toThrow("b.expected.txt: text outside a section: *filter");
  });
});
