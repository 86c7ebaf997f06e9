import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PluginError } from "./agent-errors.js";
import { loadPluginsFromConfig } from "./plugin-loader.js";

const app = mkdtempSync(join(tmpdir(), "chainwarden-app-"));
const plugin = (name: string) => `{ name: ${JSON.stringify(name)}, version: "1.0.0", framework: "^0.1.0", register() {} }`;

function write(path: string, text: string): void {
  mkdirSync(dirname(join(app, path)), { recursive: true });
  writeFileSync(join(app, path), text);
}

beforeAll(() => {
  write("package.json", JSON.stringify({ name: "app", type: "module" }));
  // ESM-only, exports with an `import` condition only, as our own packages: require.resolve fails.
  write("node_modules/@acme/esm-only/package.json", JSON.stringify({ name: "@acme/esm-only", type: "module", exports: { ".": { types: "./dist/index.d.ts", import: "./dist/index.js" } } }));
  write("node_modules/@acme/esm-only/dist/index.js", `export default ${plugin("esm-only")};\n`);
  write("node_modules/named/package.json", JSON.stringify({ name: "named", type: "module", main: "main.js" }));
  write("node_modules/named/main.js", `export const plugin = ${plugin("named")};\nexport const other = 1;\n`);
  write("node_modules/cjs-plugin/package.json", JSON.stringify({ name: "cjs-plugin", main: "index.js" }));
  write("node_modules/cjs-plugin/index.js", `exports.plugin = ${plugin("cjs-plugin")};\n`);
  write("node_modules/throws/package.json", JSON.stringify({ name: "throws", type: "module", exports: "./index.js" }));
  write("node_modules/throws/index.js", `throw new Error("boom at import");\n`);
  write("node_modules/nothing/package.json", JSON.stringify({ name: "nothing", type: "module", exports: "./index.js" }));
  write("node_modules/nothing/index.js", `export const helper = 1;\n`);
});
afterAll(() => rmSync(app, { recursive: true, force: true }));

async function loadError(packageName: string): Promise<PluginError> {
  const err = await loadPluginsFromConfig([{ package: packageName }], app).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PluginError);
  expect((err as PluginError).code).toBe("PLUGIN_LOAD");
  expect((err as PluginError).message).toContain(packageName);
  return err as PluginError;
}

describe("loadPluginsFromConfig", () => {
  it("loads default, named `plugin` and CommonJS exports, in order, with the entries' options", async () => {
    const loaded = await loadPluginsFromConfig(
      [{ package: "@acme/esm-only", options: { level: 1 } }, { package: "named" }, { package: "cjs-plugin" }],
      app,
    );
    expect(loaded.map((l) => [l.plugin.name, l.source, l.options])).toEqual([
      ["esm-only", "@acme/esm-only", { level: 1 }],
      ["named", "named", undefined],
      ["cjs-plugin", "cjs-plugin", undefined],
    ]);
    expect("options" in loaded[1]!).toBe(false);
  });

  it("resolves from the app's directory, not from this package", async () => {
    // `named` is only installed under the app.
    const err = await loadPluginsFromConfig([{ package: "named" }], tmpdir()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PluginError);
    expect((err as Error).message).toMatch(/cannot load plugin package named: not found from .* \(install it next to the app: npm install named\)/);
  });

  it("fails on a package that is not installed", async () => {
    const err = await loadError("@acme/missing");
    expect(err.message).toMatch(/not found/);
    expect(err.plugin).toBe("@acme/missing");
  });

  it("fails on a package that throws when imported, with the cause", async () => {
    const err = await loadError("throws");
    expect(err.message).toMatch(/importing .* failed: boom at import/);
    expect((err.cause as Error).message).toBe("boom at import");
  });

  it("fails on a package without a default or `plugin` export", async () => {
    const err = await loadError("nothing");
    expect(err.message).toMatch(/neither a default export nor an export named "plugin" \(exports: helper\)/);
  });
});
