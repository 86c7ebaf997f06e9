/**
 * docs/writing-plugins.md is tested: a TypeScript block headed `// src/<file>` must be that file as
 * the template writes it for `chainwarden-plugin-allow-list`, and every block compiles, as a module
 * of that generated package, against our packages (strict, the template's own tsconfig).
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
// @ts-expect-error: plain JavaScript on purpose (it runs as published), no declarations.
import { createPlugin, parseArgs } from "../bin/create-plugin.mjs";

const run = promisify(execFile);
const HERE = resolve(fileURLToPath(new URL("..", import.meta.url)));
const REPO = resolve(HERE, "../..");
const GUIDE = join(REPO, "docs", "writing-plugins.md");

interface Block {
  /** 1-based line of the block's first code line in the guide. */
  line: number;
  code: string;
  /** `src/<file>` when the block is headed by it. */
  file: string | undefined;
}

function tsBlocks(text: string): Block[] {
  const blocks: Block[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] !== "```ts") continue;
    const start = i + 1;
    let end = start;
    while (end < lines.length && lines[end] !== "```") end++;
    const body = lines.slice(start, end);
    const head = /^\/\/ (src\/[\w.-]+\.ts)$/.exec(body[0] ?? "");
    blocks.push({ line: start + 1, code: `${(head ? body.slice(1) : body).join("\n")}\n`, file: head?.[1] });
    i = end;
  }
  return blocks;
}

describe("the plugin guide (docs/writing-plugins.md)", () => {
  // Inside the repository, so that our packages (workspace links to their built output), zod,
  // vitest and @types/node resolve as they would from a package that installed them.
  const dir = mkdtempSync(join(HERE, ".guide-check-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const blocks = tsBlocks(readFileSync(GUIDE, "utf8"));

  it("quotes the template's files as it writes them", () => {
    const files: string[] = createPlugin(parseArgs([join(dir, "chainwarden-plugin-allow-list")]));
    const quoted = blocks.filter((b) => b.file !== undefined);
    expect(quoted.map((b) => b.file).sort()).toEqual(files.filter((f) => f.startsWith("src/")).sort());
    for (const b of quoted) expect(b.code, `docs/writing-plugins.md:${b.line} (${b.file})`).toBe(readFileSync(join(dir, "chainwarden-plugin-allow-list", b.file!), "utf8"));
  });

  it("compiles every TypeScript block as a module of the generated package", async () => {
    const pkg = join(dir, "chainwarden-plugin-allow-list");
    const others = blocks.filter((b) => b.file === undefined);
    expect(others.length).toBeGreaterThan(0);
    const names = new Map<string, Block>();
    others.forEach((b, i) => {
      const name = `src/guide-${i + 1}${/from "vitest"/.test(b.code) ? ".test" : ""}.ts`;
      names.set(name, b);
      writeFileSync(join(pkg, name), b.code);
    });
    const tsc = join(REPO, "node_modules", "typescript", "bin", "tsc");
    const r = await run(process.execPath, [tsc, "-p", join(pkg, "tsconfig.test.json"), "--noEmit", "--pretty", "false"], { cwd: pkg }).then(
      () => ({ out: "" }),
      (err: { stdout?: string; stderr?: string }) => ({ out: `${err.stdout ?? ""}${err.stderr ?? ""}` }),
    );
    // Name each error by the guide's line.
    const explained = r.out.replace(/^(src\/guide-\d+(?:\.test)?\.ts)\((\d+),(\d+)\)/gm, (all, file: string, line: string) => {
      const b = names.get(file);
      return b ? `docs/writing-plugins.md:${b.line + Number(line) - 1}` : all;
    });
    expect(explained).toBe("");
  }, 120_000);
});
