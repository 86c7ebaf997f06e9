/**
 * The release: every publishable package of the workspace packed with `npm pack`, and per agent
 * (`l3-agent`, `l2-agent`) one tarball that installs on a Debian host with Node and nothing else.
 *
 * Why a tarball and not a .deb: Node on the hosts we target is rarely Debian's `nodejs` (Debian 12's
 * is 18, below what the agents need; operators install nodejs.org's or NodeSource's builds), so a .deb
 * could not declare the one dependency that matters, and the agents are architecture-independent
 * JavaScript. The tarball carries the agent with its production `node_modules` already installed
 * (`npm install --omit=dev` of the packed tarballs, done here), the systemd unit and the example
 * config (both shipped in the app package's `deploy/`), LICENSE, and an `install.sh` that needs only a
 * POSIX shell and Node: it copies, writes the unit with the chosen paths, and starts nothing.
 *
 * Layout of `chainwarden-<app>-<version>.tar.gz`:
 *   chainwarden-<app>-<version>/install.sh
 *   chainwarden-<app>-<version>/LICENSE, README
 *   chainwarden-<app>-<version>/lib/{package.json,package-lock.json,packages/*.tgz,node_modules/...}
 *     → PREFIX/lib/chainwarden/<app> (packages/: our packages' tarballs, which package.json names)
 * Installed, the agent's own directory is PREFIX/lib/chainwarden/<app>/node_modules/@chainwarden/<app>;
 * plugins named in the config are resolved from there (packages/agent plugin-loader), so a plugin
 * installed with `npm install --prefix PREFIX/lib/chainwarden/<app> PACKAGE` is found.
 *
 * Everything runs from the current tree: the packages are built (`tsc --build`, a no-op when Nx built
 * them) and packed as they are, uncommitted changes included.
 */
import { execFile } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository's root (this file is tools/release/{src,dist}/release.{ts,js}). */
export const REPO_ROOT = fileURLToPath(new URL("../../..", import.meta.url));

/** The agents a release makes an install tarball of. */
export const APPS = ["l3-agent", "l2-agent"] as const;
export type AppName = (typeof APPS)[number];

/** The workspace folders whose packages are published (the private ones are tools and test kits). */
const PACKAGE_PARENTS = ["packages", "apps", "examples"];

export interface WorkspacePackage {
  name: string;
  version: string;
  /** The folder, relative to the repository root. */
  dir: string;
  dependencies: Record<string, string>;
}

export interface AppArtifact {
  app: AppName;
  /** The install tarball. */
  tarball: string;
  bytes: number;
}

export interface Release {
  version: string;
  /** `npm pack` of every publishable package, by package name. */
  packages: Map<string, string>;
  apps: AppArtifact[];
  /** The example plugins' tarballs (also in `packages`), copied to `plugins/`. */
  plugins: string[];
}

export interface ReleaseOptions {
  /** Where the release goes; what an earlier release put there is replaced. */
  outDir: string;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * The environment of the npm processes started here: without the `npm_config_*` and `npm_package_*`
 * variables of an npm that ran us (`npm run release`, `npm test`), which would point them at the
 * workspace (its prefix, its package).
 */
export function cleanNpmEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !/^npm_(config|package|lifecycle)_/i.test(k)));
}

/** Runs a program with an argument array (no shell); rejects on a non-zero exit, naming the command. */
export function run(file: string, args: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { cwd: options.cwd, env: options.env ?? cleanNpmEnv(), maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      if (code !== 0) reject(new Error(`${[file, ...args].join(" ")} exited ${code}:\n${stderr || stdout}`));
      else resolve({ code, stdout, stderr });
    });
  });
}

/** The packages `npm run release` packs: every non-private package under packages/, apps/, examples/. */
export function publishablePackages(root = REPO_ROOT): WorkspacePackage[] {
  const found: WorkspacePackage[] = [];
  for (const parent of PACKAGE_PARENTS) {
    for (const entry of readdirSync(join(root, parent)).sort()) {
      const manifestPath = join(root, parent, entry, "package.json");
      if (!existsSync(manifestPath)) continue;
      const manifest = JSON.parse(readFileSync(manifestPath, "utf8")) as { name: string; version: string; private?: boolean; dependencies?: Record<string, string> };
      if (manifest.private) continue;
      found.push({ name: manifest.name, version: manifest.version, dir: join(parent, entry), dependencies: manifest.dependencies ?? {} });
    }
  }
  return found;
}

/** The package and the workspace packages it needs at run time, transitively (dependencies only). */
export function runtimeClosure(name: string, packages: readonly WorkspacePackage[]): WorkspacePackage[] {
  const byName = new Map(packages.map((p) => [p.name, p]));
  const seen = new Map<string, WorkspacePackage>();
  const visit = (n: string) => {
    const p = byName.get(n);
    if (p === undefined || seen.has(n)) return;
    seen.set(n, p);
    for (const dep of Object.keys(p.dependencies)) visit(dep);
  };
  visit(name);
  return [...seen.values()];
}

/**
 * Outputs in `dist/` that no source of the build makes any more (a source renamed or removed since the
 * last build, or a test built by an earlier config): `tsc --build` never deletes them, and `files:
 * ["dist"]` would ship them. A clean build would not have them; they are removed.
 */
export function staleOutputs(packageDir: string): string[] {
  const dist = join(packageDir, "dist");
  if (!existsSync(dist)) return [];
  const stale: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        walk(path);
        continue;
      }
      const base = relative(dist, path).replace(/(\.d)?\.[cm]?js(\.map)?$|\.d\.[cm]?ts(\.map)?$/, "");
      const testOnly = /(^|\/)test-support\/|\.test$|\.fixtures$|\.test-support$/.test(base);
      const hasSource = [".ts", ".mts", ".cts", ".js", ".mjs"].some((ext) => existsSync(join(packageDir, "src", base + ext)));
      if (testOnly || !hasSource) stale.push(path);
    }
  };
  walk(dist);
  return stale;
}

/** Builds the release into `options.outDir` (see the file's comment). */
export async function buildRelease(options: ReleaseOptions): Promise<Release> {
  const log = options.log ?? (() => undefined);
  const root = REPO_ROOT;
  const packages = publishablePackages(root);
  const versions = new Set(packages.map((p) => p.version));
  if (versions.size !== 1) throw new Error(`the packages' versions differ (${[...versions].join(", ")}): a release has one version`);
  const version = [...versions][0]!;

  // 1. Build: one tsc process for every package (incremental: nothing to do after `npm run build`).
  log(`building ${packages.length} packages (tsc --build)`);
  const tsc = createRequire(join(root, "package.json")).resolve("typescript/bin/tsc");
  // A package without tsconfig.lib.json ships what is committed (create-plugin: plain .mjs and a template).
  const projects = packages.map((p) => join(p.dir, "tsconfig.lib.json")).filter((p) => existsSync(join(root, p)));
  await run(process.execPath, [tsc, "--build", ...projects], { cwd: root });
  for (const p of packages) {
    for (const file of staleOutputs(join(root, p.dir))) {
      log(`removing stale build output ${relative(root, file)}`);
      rmSync(file, { force: true });
    }
  }

  // 2. Pack each package as it would be published (its prepack build is step 1).
  // What an earlier release left there goes (only that: the directory may hold other things).
  mkdirSync(options.outDir, { recursive: true });
  for (const entry of readdirSync(options.outDir)) {
    if (entry === "packages" || entry === "plugins" || /^chainwarden-.*\.tar\.gz$/.test(entry)) rmSync(join(options.outDir, entry), { recursive: true, force: true });
  }
  const packagesDir = join(options.outDir, "packages");
  mkdirSync(packagesDir, { recursive: true });
  log(`packing ${packages.length} packages (npm pack)`);
  const packed = await run("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", packagesDir, ...packages.flatMap((p) => ["--workspace", p.dir])], { cwd: root });
  const entries = JSON.parse(packed.stdout) as { name: string; filename: string }[];
  const tarballs = new Map(entries.map((e) => [e.name, join(packagesDir, e.filename)]));
  for (const p of packages) if (!tarballs.has(p.name)) throw new Error(`npm pack made no tarball of ${p.name}`);

  // 3. One install tarball per agent.
  const apps: AppArtifact[] = [];
  for (const app of APPS) {
    log(`staging chainwarden-${app}-${version} (npm install --omit=dev of the packed tarballs)`);
    const tarball = await stageApp(app, version, packages, tarballs, options.outDir);
    apps.push({ app, tarball, bytes: statSync(tarball).size });
    log(`wrote ${relative(process.cwd(), tarball)} (${(statSync(tarball).size / 1024 / 1024).toFixed(1)} MiB)`);
  }

  // 4. The example plugins, for `npm install --prefix PREFIX/lib/chainwarden/<app> <tarball>`.
  const pluginsDir = join(options.outDir, "plugins");
  mkdirSync(pluginsDir, { recursive: true });
  const plugins: string[] = [];
  for (const p of packages.filter((p) => p.dir.startsWith("examples/"))) {
    const target = join(pluginsDir, tarballs.get(p.name)!.split("/").pop()!);
    copyFileSync(tarballs.get(p.name)!, target);
    plugins.push(target);
  }
  return { version, packages: tarballs, apps, plugins };
}

/** The Node versions the packages' `engines` state (the same in every package). */
function nodeRange(root: string): string {
  const manifest = JSON.parse(readFileSync(join(root, "apps", "l3-agent", "package.json"), "utf8")) as { engines: { node: string } };
  return manifest.engines.node;
}

async function stageApp(app: AppName, version: string, packages: readonly WorkspacePackage[], tarballs: ReadonlyMap<string, string>, outDir: string): Promise<string> {
  const stage = mkdtempSync(join(tmpdir(), `cw-release-${app}-`));
  try {
    const top = `chainwarden-${app}-${version}`;
    const dir = join(stage, top);
    const lib = join(dir, "lib");
    mkdirSync(lib, { recursive: true });
    const closure = runtimeClosure(`@chainwarden/${app}`, packages);
    writeFileSync(join(lib, "package.json"), JSON.stringify({ name: `chainwarden-${app}`, version, private: true, license: "Apache-2.0" }, null, 2) + "\n");
    // Every workspace package the agent needs is installed from its tarball, kept in lib/packages/ and
    // named by it in lib's package.json and lock file (`file:packages/...`): none is looked up on the
    // registry (where a package of the same name could be anybody's), and a later `npm install
    // --prefix <lib> PLUGIN` on the host resolves them from there, offline. Third-party dependencies
    // come from the registry (or npm's cache) now, and are in node_modules from then on.
    mkdirSync(join(lib, "packages"));
    const local = closure.map((p) => {
      const file = tarballs.get(p.name)!.split("/").pop()!;
      copyFileSync(tarballs.get(p.name)!, join(lib, "packages", file));
      return `./packages/${file}`;
    });
    await run("npm", ["install", "--prefix", lib, "--omit=dev", "--no-audit", "--no-fund", "--prefer-offline", ...local], { cwd: lib });

    const template = readFileSync(join(REPO_ROOT, "tools", "release", "files", "install.sh"), "utf8");
    const range = nodeRange(REPO_ROOT);
    writeFileSync(join(dir, "install.sh"), template.replaceAll("@app@", app).replaceAll("@version@", version).replaceAll("@node_range@", range));
    chmodSync(join(dir, "install.sh"), 0o755);
    copyFileSync(join(REPO_ROOT, "LICENSE"), join(dir, "LICENSE"));
    writeFileSync(
      join(dir, "README"),
      [
        `Chainwarden ${app} ${version}: Neutron-style iptables agents for Node.js. Apache-2.0 (LICENSE).`,
        "",
        `Needs Node ${range} and nothing else. As root:`,
        "",
        `  ./install.sh                  # /usr/local/bin/${app}, /usr/local/lib/chainwarden/${app},`,
        `                                # /etc/systemd/system/chainwarden-${app}.service, /etc/chainwarden/${app}.yaml`,
        `  ./install.sh --help           # other paths`,
        `  systemctl daemon-reload && systemctl enable --now chainwarden-${app}`,
        "",
        `Plugins: npm install --prefix /usr/local/lib/chainwarden/${app} PACKAGE, then name it under plugins: in the config.`,
        "",
      ].join("\n"),
    );
    const tarball = join(outDir, `${top}.tar.gz`);
    await run("tar", ["--create", "--gzip", "--owner=0", "--group=0", "--numeric-owner", "--file", tarball, "--directory", stage, top]);
    return tarball;
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}
