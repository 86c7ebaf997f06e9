import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { PluginError } from "./agent-errors.js";
import type { AgentPlugin } from "./plugin.js";

/** A plugin value with its options and where it came from (for messages). */
export interface LoadedPlugin {
  // `any`: each plugin has its own options type; the agent validates options with the plugin's schema.
  plugin: AgentPlugin<any>;
  /** The entry's `options`; the agent validates them against the plugin's schema. */
  options?: unknown;
  /** The npm package the plugin was loaded from. */
  source: string;
}

/** One entry of the config file's `plugins:` list. */
export interface PluginEntry {
  /** The npm package, resolved from the app's directory. */
  package: string;
  /** The plugin's options, checked against its schema by `Agent.create`. */
  options?: Record<string, unknown> | undefined;
}

/**
 * Loads the plugins a config file names (`plugins: [{ package, options }]`), in order. Packages are
 * resolved from the app's directory, as if the app imported them, so a plugin is installed next to
 * the app (`npm install @acme/chainwarden-foo`), not next to this framework.
 *
 * A package provides its plugin as its default export or as a named export `plugin`. Whether the
 * value really is a plugin, and whether its options fit, is checked by `Agent.create`, which has
 * the whole list and reports duplicates too.
 *
 * @throws PluginError `PLUGIN_LOAD` naming the package, with the cause.
 */
export async function loadPluginsFromConfig(entries: readonly PluginEntry[], fromDir: string): Promise<LoadedPlugin[]> {
  const loaded: LoadedPlugin[] = [];
  for (const entry of entries) {
    const name = entry.package;
    let path: string;
    try {
      path = resolvePackage(name, fromDir);
    } catch (err) {
      const notFound = (err as NodeJS.ErrnoException).code === "MODULE_NOT_FOUND";
      throw new PluginError(
        "PLUGIN_LOAD",
        notFound
          ? `cannot load plugin package ${name}: not found from ${fromDir} (install it next to the app: npm install ${name})`
          : `cannot load plugin package ${name}: ${(err as Error).message}`,
        name,
        { cause: err },
      );
    }
    let module: Record<string, unknown>;
    try {
      module = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
    } catch (err) {
      throw new PluginError("PLUGIN_LOAD", `cannot load plugin package ${name}: importing ${path} failed: ${(err as Error).message}`, name, { cause: err });
    }
    const plugin = pickPlugin(module);
    if (plugin === undefined) {
      throw new PluginError(
        "PLUGIN_LOAD",
        `cannot load plugin package ${name}: it has neither a default export nor an export named "plugin" (exports: ${Object.keys(module).join(", ") || "none"})`,
        name,
      );
    }
    loaded.push({ plugin: plugin as AgentPlugin<unknown>, ...(entry.options !== undefined ? { options: entry.options } : {}), source: name });
  }
  return loaded;
}

/**
 * The default export, else `plugin`; for a CommonJS package (whose `module.exports` arrives as the
 * default) the same two inside it. A value that looks like a plugin wins over one that does not.
 */
function pickPlugin(module: Record<string, unknown>): unknown {
  const inner = typeof module.default === "object" && module.default !== null ? (module.default as Record<string, unknown>) : {};
  const candidates = [module.default, module.plugin, inner.default, inner.plugin].filter((c) => c !== undefined);
  return candidates.find((c) => typeof (c as { register?: unknown } | null)?.register === "function") ?? candidates[0];
}

/**
 * `require.resolve` from the app, and for an ESM-only package (whose `exports` has an `import`
 * condition but no `require` or `default`, as ours do) the same lookup done by hand: find the
 * package's directory on the same `node_modules` paths, then its `exports` entry for `import`.
 */
function resolvePackage(name: string, fromDir: string): string {
  const require = createRequire(join(fromDir, "package.json"));
  try {
    return require.resolve(name);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ERR_PACKAGE_PATH_NOT_EXPORTED") throw err;
    const resolved = resolveImportEntry(name, require.resolve.paths(name) ?? []);
    if (resolved === undefined) throw err;
    return resolved;
  }
}

const CONDITIONS = new Set(["node", "import", "default"]);

function resolveImportEntry(specifier: string, searchPaths: readonly string[]): string | undefined {
  const parts = specifier.split("/");
  const nameLength = specifier.startsWith("@") ? 2 : 1;
  const packageName = parts.slice(0, nameLength).join("/");
  const subpath = parts.length > nameLength ? `./${parts.slice(nameLength).join("/")}` : ".";
  for (const dir of searchPaths) {
    const manifestPath = join(dir, packageName, "package.json");
    if (!existsSync(manifestPath)) continue;
    const manifest = JSON.parse(readFileSync(manifestPath, "utf8")) as { exports?: unknown };
    const exportsField = manifest.exports;
    const isSubpathMap =
      typeof exportsField === "object" && exportsField !== null && !Array.isArray(exportsField) && Object.keys(exportsField).some((k) => k.startsWith("."));
    const entry = isSubpathMap ? (exportsField as Record<string, unknown>)[subpath] : subpath === "." ? exportsField : undefined;
    const target = conditionalTarget(entry);
    return target === undefined ? undefined : join(dirname(manifestPath), target);
  }
  return undefined;
}

function conditionalTarget(entry: unknown): string | undefined {
  if (typeof entry === "string") return entry;
  if (Array.isArray(entry)) {
    for (const e of entry) {
      const t = conditionalTarget(e);
      if (t !== undefined) return t;
    }
    return undefined;
  }
  if (typeof entry === "object" && entry !== null) {
    // Node takes the first key, in the object's order, that is one of its conditions.
    for (const [condition, value] of Object.entries(entry)) {
      if (!CONDITIONS.has(condition)) continue;
      const t = conditionalTarget(value);
      if (t !== undefined) return t;
    }
  }
  return undefined;
}
