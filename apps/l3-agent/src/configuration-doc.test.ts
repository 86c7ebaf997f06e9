/**
 * docs/configuration.md is generated from the config schemas (`npm run docs:config`); this fails when
 * the l3-agent's section there is not what its schemas say now, or a key carries no description.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { configReferenceSection, undescribed } from "@chainwarden/agent";
import { describe, expect, it } from "vitest";
import { l3AgentApp } from "./app.js";

const DOC = fileURLToPath(new URL("../../../docs/configuration.md", import.meta.url));

describe("docs/configuration.md", () => {
  it("has the l3-agent's section as its schemas generate it", () => {
    const doc = readFileSync(DOC, "utf8");
    const begin = doc.indexOf("<!-- begin l3-agent -->");
    const endMarker = "<!-- end l3-agent -->\n";
    const end = doc.indexOf(endMarker, begin);
    const current = begin < 0 || end < 0 ? "(no l3-agent section)" : doc.slice(begin, end + endMarker.length);
    expect(current, "docs/configuration.md is stale: run `npm run docs:config` and commit it").toBe(configReferenceSection(l3AgentApp));
  });

  it("every config key and built-in plugin option of the l3-agent carries a description", () => {
    expect(undescribed(l3AgentApp)).toEqual([]);
  });
});
