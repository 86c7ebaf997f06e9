import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
// @ts-expect-error: plain JavaScript on purpose (it runs as published), no declarations.
import { createPlugin, parseArgs } from "../bin/create-plugin.mjs";

const REPO = resolve(fileURLToPath(new URL("../../..", import.meta.url)));

describe("create-plugin: arguments", () => {
  it("derives the plugin and kind names from the package name, and refuses names npm or iptables would not take", () => {
    expect(parseArgs(["/tmp/x/chainwarden-plugin-rate-limit"])).toMatchObject({ packageName: "chainwarden-plugin-rate-limit", pluginName: "rate-limit", kind: "rate_limit" });
    expect(parseArgs(["/tmp/x/p", "--name", "@acme/cw-allow", "--plugin", "allow"])).toMatchObject({ packageName: "@acme/cw-allow", pluginName: "allow", kind: "allow" });
    expect(() => parseArgs(["/tmp/x/Bad Name"])).toThrow(/not a valid npm package name/);
    expect(() => parseArgs(["/tmp/x/p", "--plugin", "9lives"])).toThrow(/plugin name/);
    expect(() => parseArgs(["/tmp/x/p", "--kind"])).toThrow(/needs a value/);
    expect(() => parseArgs([])).toThrow(/one directory/);
    expect(parseArgs(["--help"])).toEqual({ help: true });
  });
});

describe("create-plugin: what it writes", () => {
  const work = mkdtempSync(join(tmpdir(), "cw-create-plugin-"));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  // Built, installed into both released agents and tested from the packed packages (fake and
  // kernel): tools/release's test, which has the release's tarballs at hand.
  it("a whole package: every placeholder filled, our packages as peer dependencies with this release's range, the README's config loading it by package name", () => {
    const dir = join(work, "chainwarden-plugin-allow-list");
    const files: string[] = createPlugin(parseArgs([dir]));
    expect(files).toEqual(
      expect.arrayContaining([".gitignore", "README.md", "package.json", "src/handler.kernel.test.ts", "src/handler.test.ts", "src/handler.ts", "src/index.ts", "src/plugin.ts", "src/resource.ts", "tsconfig.json"]),
    );
    expect(() => createPlugin(parseArgs([dir]))).toThrow(/not empty/);
    for (const file of files) expect(readFileSync(join(dir, file), "utf8"), file).not.toMatch(/\{\{[A-Z_]+\}\}/);
    const version = (JSON.parse(readFileSync(join(REPO, "packages", "agent", "package.json"), "utf8")) as { version: string }).version;
    const manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { peerDependencies: Record<string, string>; type: string };
    expect(manifest.type).toBe("module");
    expect(manifest.peerDependencies).toEqual({ "@chainwarden/agent": `^${version}`, "@chainwarden/core": `^${version}` });
    const readme = readFileSync(join(dir, "README.md"), "utf8");
    expect(readme).toContain('plugins:\n  - package: "chainwarden-plugin-allow-list"\n');
    expect(readme).toContain("allow_lists:\n  - { id: web, namespace: lab,");
  });

  it("runs through a bin link, as npm create and npx start it (a link in node_modules/.bin, not the file itself)", () => {
    const bin = join(work, "bin");
    mkdirSync(bin);
    symlinkSync(fileURLToPath(new URL("../bin/create-plugin.mjs", import.meta.url)), join(bin, "create-plugin"));
    const out = execFileSync(process.execPath, [join(bin, "create-plugin"), join(work, "via-link")], { encoding: "utf8" });
    expect(out).toContain('Created via-link (plugin "via-link", resource kind "via_link")');
    expect(existsSync(join(work, "via-link", "src", "handler.ts"))).toBe(true);
  });
});
