import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
// @ts-expect-error: plain JavaScript on purpose (it runs without a build), no declarations.
import { generate, ROOT, undocumentedKey } from "./generate.mjs";

/** Every file under `dir`, relative, with its text. */
function files(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) walk(path);
      else out.set(relative(dir, path), readFileSync(path, "utf8"));
    }
  };
  walk(dir);
  return out;
}

/** Exports without a doc comment when the reference was made: each one here is owed a comment. */
function knownUndocumented(): Set<string> {
  const text = readFileSync(join(ROOT, "tools/api-docs/undocumented.txt"), "utf8");
  return new Set(text.split("\n").filter((l) => l.trim() !== "" && !l.startsWith("#")));
}

describe("docs/api, the API reference", () => {
  let out: string;
  let result: { undocumented: string[]; unexported: string[] };

  beforeAll(async () => {
    out = mkdtempSync(join(tmpdir(), "cw-api-docs-"));
    result = await generate(out);
  });
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it("is current: what TypeDoc makes from the sources now is what docs/api holds (else: npm run docs:api)", () => {
    const fresh = files(out);
    const committed = files(join(ROOT, "docs/api"));
    const missing = [...fresh.keys()].filter((f) => !committed.has(f));
    const extra = [...committed.keys()].filter((f) => !fresh.has(f));
    const changed = [...fresh.keys()].filter((f) => committed.has(f) && committed.get(f) !== fresh.get(f));
    expect({ missing, extra, changed }, "docs/api is stale: run `npm run docs:api` and commit docs/api").toEqual({ missing: [], extra: [], changed: [] });
  });

  it("no export is added without a doc comment (tools/api-docs/undocumented.txt lists the ones still owed one)", () => {
    const known = knownUndocumented();
    const now = result.undocumented.map((w: string) => undocumentedKey(w));
    const added = now.filter((k) => !known.has(k));
    expect(added, "new public exports without a doc comment: say what each promises").toEqual([]);
  });
});
