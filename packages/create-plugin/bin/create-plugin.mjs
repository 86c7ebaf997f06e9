#!/usr/bin/env node
// `npm create @chainwarden/plugin <dir>` (or `npx @chainwarden/create-plugin <dir>`): writes a new
// plugin package into <dir> from ../template. Plain JavaScript: it runs from the package as published.
//
//   create-plugin <dir> [--name <npm package name>] [--plugin <plugin name>] [--kind <resource kind>]
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const TEMPLATE = fileURLToPath(new URL("../template", import.meta.url));
const SELF = JSON.parse(readFileSync(fileURLToPath(new URL("../package.json", import.meta.url)), "utf8"));

const USAGE = `usage: create-plugin <dir> [--name <npm package name>] [--plugin <plugin name>] [--kind <resource kind>]

Writes a Chainwarden plugin package into <dir> (which must not exist, or be empty): TypeScript, ESM,
@chainwarden/agent and @chainwarden/core as peer dependencies (^${SELF.version}), a resource handler
that programs one filter chain per resource, a unit test on the honest fake and a kernel test in a
throwaway namespace (@chainwarden/plugin-harness), and a README saying how to build, test and load it.
  --name    the npm package name (default: the directory's name)
  --plugin  the plugin's name, as configs and logs show it (default: from the package name)
  --kind    the resource kind its handler owns; the state key is <kind>s (default: the plugin name, _ for -)
`;

/** Turns the arguments into what the template needs; throws with a message a person can act on. */
export function parseArgs(argv) {
  const args = [...argv];
  if (args.includes("--help") || args.includes("-h")) return { help: true };
  const take = (flag) => {
    const i = args.indexOf(flag);
    if (i < 0) return undefined;
    const value = args[i + 1];
    if (value === undefined || value.startsWith("--")) throw new Error(`${flag} needs a value`);
    args.splice(i, 2);
    return value;
  };
  const name = take("--name");
  const plugin = take("--plugin");
  const kind = take("--kind");
  const unknown = args.filter((a) => a.startsWith("-"));
  if (unknown.length) throw new Error(`unknown option ${unknown[0]}`);
  if (args.length !== 1) throw new Error("name one directory to create the plugin in");
  const dir = resolve(args[0]);
  const packageName = name ?? basename(dir);
  if (!/^(@[a-z0-9][a-z0-9._-]*\/)?[a-z0-9][a-z0-9._-]*$/.test(packageName) || packageName.length > 214)
    throw new Error(`${JSON.stringify(packageName)} is not a valid npm package name (lower case, digits, - . _, an optional @scope/)`);
  const pluginName = plugin ?? packageName.replace(/^@[^/]+\//, "").replace(/^chainwarden-(plugin-)?/, "").replace(/^plugin-/, "");
  if (!/^[a-z][a-z0-9-]{0,39}$/.test(pluginName)) throw new Error(`plugin name ${JSON.stringify(pluginName)}: a lower-case letter, then letters, digits or -, at most 40`);
  const kindName = kind ?? pluginName.replace(/-/g, "_");
  if (!/^[a-z][a-z0-9_]{0,39}$/.test(kindName)) throw new Error(`resource kind ${JSON.stringify(kindName)}: a lower-case letter, then letters, digits or _, at most 40`);
  return { help: false, dir, packageName, pluginName, kind: kindName };
}

/** Writes the template into `dir` with the names filled in; returns the files written (relative). */
export function createPlugin({ dir, packageName, pluginName, kind }) {
  if (existsSync(dir) && readdirSync(dir).length > 0) throw new Error(`${dir} exists and is not empty`);
  const camel = pluginName.replace(/-([a-z0-9])/g, (_, c) => c.toUpperCase());
  const pascal = camel[0].toUpperCase() + camel.slice(1);
  const values = {
    PACKAGE_NAME: packageName,
    PLUGIN_NAME: pluginName,
    PLUGIN_VAR: `${camel}Plugin`,
    HANDLER_CLASS: `${pascal}Handler`,
    RESOURCE_TYPE: pascal,
    KIND: kind,
    STATE_KEY: `${kind}s`,
    CHAIN_PREFIX: pluginName.slice(0, 6),
    CW_VERSION: `^${SELF.version}`,
  };
  const written = [];
  const walk = (from, to) => {
    for (const entry of readdirSync(from)) {
      const source = join(from, entry);
      // npm would rename a `.gitignore` in a published package; the template keeps it as `gitignore`.
      const target = join(to, entry === "gitignore" ? ".gitignore" : entry.replace(/\.tmpl$/, ""));
      if (statSync(source).isDirectory()) walk(source, target);
      else {
        mkdirSync(dirname(target), { recursive: true });
        const text = readFileSync(source, "utf8").replace(/\{\{([A-Z_]+)\}\}/g, (whole, key) => values[key] ?? whole);
        writeFileSync(target, text);
        written.push(target.slice(dir.length + 1));
      }
    }
  };
  walk(TEMPLATE, dir);
  return written.sort();
}

/** Run as a program, not imported (the test imports it): through npm's bin link too (`npm create`, `npx`). */
function isMain() {
  if (!process.argv[1]) return false;
  try {
    return realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) {
  try {
    const options = parseArgs(process.argv.slice(2));
    if (options.help) {
      process.stdout.write(USAGE);
    } else {
      const files = createPlugin(options);
      process.stdout.write(
        `Created ${options.packageName} (plugin "${options.pluginName}", resource kind "${options.kind}") in ${options.dir}:\n` +
          files.map((f) => `  ${f}\n`).join("") +
          `Next: cd ${options.dir} && npm install && npm test (the kernel test needs root); see its README.\n`,
      );
    }
  } catch (err) {
    process.stderr.write(`create-plugin: ${err.message}\n\n${USAGE}`);
    process.exit(2);
  }
}
