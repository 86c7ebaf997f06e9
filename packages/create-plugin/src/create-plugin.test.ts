import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
// @ts-expect-error: plain JavaScript on purpose (it runs as published), no declarations.
import { createPlugin, parseArgs } from "../bin/create-plugin.mjs";

const run = promisify(execFile);
const REPO = resolve(fileURLToPath(new URL("../../..", import.meta.url)));
/** Our packages a generated plugin needs, packed as they would be published (the agent needs oslo-config). */
const PACKED = ["core", "oslo-config", "agent", "testing", "plugin-harness"];

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

describe("create-plugin: a plugin made outside the repository builds, type-checks and passes its tests on our packed packages", () => {
  const work = mkdtempSync(join(tmpdir(), "cw-create-plugin-"));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it("from scratch: generate, npm install the packed packages, typecheck, build, test (fake and kernel)", async () => {
    const dir = join(work, "chainwarden-plugin-allow-list");
    const files: string[] = createPlugin(parseArgs([dir]));
    expect(files).toEqual(
      expect.arrayContaining([".gitignore", "README.md", "package.json", "src/handler.kernel.test.ts", "src/handler.test.ts", "src/handler.ts", "src/index.ts", "src/plugin.ts", "src/resource.ts", "tsconfig.json"]),
    );
    expect(() => createPlugin(parseArgs([dir]))).toThrow(/not empty/);

    // Our packages as npm would deliver them: packed from this tree (each package's prepack builds it).
    const packs = join(work, "packs");
    mkdirSync(packs);
    const tarballs: Record<string, string> = {};
    for (const name of PACKED) {
      const { stdout } = await run("npm", ["pack", "--silent", "--pack-destination", packs], { cwd: join(REPO, "packages", name) });
      tarballs[`@chainwarden/${name}`] = join(packs, stdout.trim().split("\n").pop()!);
    }
    // Point the generated package at the tarballs (a published release would come from the registry).
    const manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { devDependencies: Record<string, string> };
    for (const [name, tgz] of Object.entries(tarballs)) manifest.devDependencies[name] = `file:${tgz}`;
    writeFileSync(join(dir, "package.json"), JSON.stringify(manifest, null, 2));

    const npm = (args: string[]) => run("npm", args, { cwd: dir, maxBuffer: 64 << 20, env: { ...process.env, npm_config_fund: "false", npm_config_audit: "false", npm_config_update_notifier: "false" } });
    await npm(["install", "--prefer-offline", "--no-audit", "--no-fund"]);
    await npm(["run", "typecheck"]);
    await npm(["run", "build"]);
    expect(readFileSync(join(dir, "dist/index.d.ts"), "utf8")).toContain("allowListPlugin");
    const { stdout } = await npm(["test", "--", "--reporter=verbose"]);
    expect(stdout).toMatch(/allow-list on the fake host/);
    if (process.getuid?.() === 0) expect(stdout).toMatch(/allow-list on the kernel.*\n?.*the real iptables-restore takes/);
    expect(stdout).not.toMatch(/\bfailed\b/);
  });
});
