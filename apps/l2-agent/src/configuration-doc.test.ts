/**
 * docs/configuration.md is generated from the config schemas (`npm run docs:config`); this fails when
 * the l2-agent's section there is not what its schemas say now, or a key carries no description.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { configReferenceSection, undescribed } from "@chainwarden/agent";
import { describe, expect, it } from "vitest";
import { l2AgentApp } from "./app.js";

const DOC = fileURLToPath(new URL("../../../docs/configuration.md", import.meta.url));

describe("docs/configuration.md", () => {
  it("has the l2-agent's section as its schemas generate it", () => {
    const doc = readFileSync(DOC, "utf8");
    const begin = doc.indexOf("<!-- begin l2-agent -->");
    const endMarker = "<!-- end l2-agent -->\n";
    const end = doc.indexOf(endMarker, begin);
    const current = begin < 0 || end < 0 ? "(no l2-agent section)" : doc.slice(begin, end + endMarker.length);
    expect(current, "docs/configuration.md is stale: run `npm run docs:config` and commit it").toBe(configReferenceSection(l2AgentApp));
  });

  it("every config key and built-in plugin option of the l2-agent carries a description", () => {
    expect(undescribed(l2AgentApp)).toEqual([]);
  });
});
