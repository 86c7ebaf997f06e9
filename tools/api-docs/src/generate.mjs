// Generates the API reference (docs/api/, Markdown) from the public exports of the packages a
// plugin author builds on, with TypeDoc and typedoc-plugin-markdown. Plain JavaScript so that it
// runs without a build step of its own: `npm run docs:api` at the root, and the staleness test.
//
//   node tools/api-docs/src/generate.mjs [OUT_DIR]     (default: docs/api of the repository)
//   node tools/api-docs/src/generate.mjs --baseline    also rewrites tools/api-docs/undocumented.txt
//                                                       (the exports still owed a doc comment)
import { rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Application } from "typedoc";

const here = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(here, "../../..");
/** The packages documented: the framework, its test kit, and the plugins' extension points. */
export const PACKAGES = ["core", "agent", "testing", "plugin-harness", "l3-nat", "l2-secgroup", "fwaas-iptables"];

/**
 * Writes the reference into `out` (emptied first). Returns TypeDoc's warnings about exports
 * without a doc comment (what they promise is the comment's job), one line each.
 */
export async function generate(out = join(ROOT, "docs/api")) {
  rmSync(out, { recursive: true, force: true });
  const undocumented = [];
  const unexported = [];
  const app = await Application.bootstrapWithPlugins({
    // Each package on its own (its name is the module's name), from its public `src/index.ts`.
    entryPointStrategy: "packages",
    entryPoints: PACKAGES.map((p) => join(ROOT, "packages", p)),
    packageOptions: {
      entryPoints: ["src/index.ts"],
      tsconfig: "tsconfig.lib.json",
      // The packages' READMEs stay where they are: an edit to one must not make the reference stale.
      readme: "none",
      excludeExternals: true,
      excludePrivate: true,
      excludeInternal: true,
      // Validation runs per package, with these options.
      validation: { notExported: true, invalidLink: true, notDocumented: true },
      requiredToBeDocumented: ["Class", "Interface", "Function", "Variable", "TypeAlias", "Enum"],
    },
    plugin: ["typedoc-plugin-markdown"],
    out,
    name: "Chainwarden API reference",
    readme: "none",
    // Source links would name a commit and change with every one: the reference would never be current.
    disableSources: true,
    hideGenerator: true,
    excludePrivate: true,
    excludeProtected: false,
    excludeInternal: true,
    excludeExternals: true,
    gitRevision: "main",
    validation: { notExported: true, invalidLink: true, notDocumented: true },
    // Top-level exports: the members of a schema's inferred type are its keys, documented in docs/configuration.md.
    requiredToBeDocumented: ["Class", "Interface", "Function", "Variable", "TypeAlias", "Enum"],
    logLevel: "Warn",
    // The markdown theme: one file per module and per class/interface, stable names.
    outputFileStrategy: "members",
    entryFileName: "README",
    hidePageHeader: true,
    hideBreadcrumbs: true,
  });
  app.logger.warn = ((warn) => (message, ...rest) => {
    const text = typeof message === "string" ? message : String(message);
    if (/does not have any documentation/.test(text)) undocumented.push(text);
    else if (/is referenced by .* but not included in the documentation/.test(text)) unexported.push(text);
    else warn.call(app.logger, message, ...rest);
  })(app.logger.warn);
  const project = await app.convert();
  if (!project) throw new Error("TypeDoc could not convert the packages (see its errors above)");
  app.validate(project);
  await app.generateOutputs(project);
  return { undocumented, unexported };
}

/** "X (Kind), defined in @chainwarden/pkg/src/file.ts, does not have any documentation" → "pkg: X (Kind)". */
export function undocumentedKey(warning) {
  const m = /^(.*?) \((\w+)\), defined in @chainwarden\/([a-z0-9-]+)\//.exec(warning.trim());
  return m ? `${m[3]}: ${m[1]} (${m[2]})` : warning.trim();
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const baseline = args.includes("--baseline");
  const dir = args.find((a) => !a.startsWith("--"));
  const { undocumented, unexported } = await generate(dir ? resolve(dir) : undefined);
  process.stdout.write(`API reference written; ${undocumented.length} export(s) without a doc comment, ${unexported.length} type(s) used by the API but not exported\n`);
  for (const line of [...undocumented, ...unexported]) process.stdout.write(`  ${line}\n`);
  if (baseline) {
    const keys = [...new Set(undocumented.map(undocumentedKey))].sort();
    const header = "# Public exports still owed a doc comment (package: export (kind)). Written by\n# `node tools/api-docs/src/generate.mjs --baseline`; the api-docs test fails on any export missing one that is not here.\n";
    writeFileSync(join(ROOT, "tools/api-docs/undocumented.txt"), header + keys.join("\n") + "\n");
  }
}
