/**
 * The tests run the BUILT binary. Nx builds it first (`test` depends on `build` and `^build`); when
 * vitest is run directly this brings dist/ up to date too (`tsc --build` is incremental: a no-op
 * when nothing changed), together with the two example plugins the tests load by package name, the
 * test kit and the OpenStack lab of the end-to-end test.
 */
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

export default function setup(): void {
  const appDir = fileURLToPath(new URL("../..", import.meta.url));
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
  const projects = [
    "tsconfig.lib.json",
    "../../examples/plugin-static-chains/tsconfig.lib.json",
    "../../examples/plugin-audit-log/tsconfig.lib.json",
    "../../packages/openstack-lab/tsconfig.lib.json",
    "../../packages/testing/tsconfig.lib.json",
  ];
  const r = spawnSync(process.execPath, [tsc, "--build", ...projects], { cwd: appDir, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`building the app before its tests failed:\n${r.stdout}${r.stderr}`);
}
