import { join, relative } from "node:path";
import { buildRelease, REPO_ROOT } from "./release.js";

// npm run release [-- --out DIR]: the release into DIR (default dist/release at the repository root).
const args = process.argv.slice(2);
let outDir = join(REPO_ROOT, "dist", "release");
for (let i = 0; i < args.length; i++) {
  const arg = args[i]!;
  if (arg === "--out" && args[i + 1] !== undefined) outDir = args[++i]!;
  else if (arg.startsWith("--out=")) outDir = arg.slice("--out=".length);
  else {
    process.stderr.write("usage: npm run release [-- --out DIR]\n");
    process.exit(2);
  }
}
try {
  const started = Date.now();
  const release = await buildRelease({ outDir, log: (line) => process.stderr.write(`release: ${line}\n`) });
  const rel = (p: string) => relative(process.cwd(), p) || ".";
  process.stdout.write(`chainwarden ${release.version} in ${rel(outDir)} (${((Date.now() - started) / 1000).toFixed(0)} s):\n`);
  for (const a of release.apps) process.stdout.write(`  ${rel(a.tarball)}  ${(a.bytes / 1024 / 1024).toFixed(1)} MiB  (tar -xzf, then ./install.sh as root)\n`);
  for (const p of release.plugins) process.stdout.write(`  ${rel(p)}  (npm install --prefix /usr/local/lib/chainwarden/<agent> ${p.split("/").pop()})\n`);
  process.stdout.write(`  ${rel(join(outDir, "packages"))}/  npm pack of all ${release.packages.size} packages\n`);
} catch (err: unknown) {
  process.stderr.write(`release failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}
