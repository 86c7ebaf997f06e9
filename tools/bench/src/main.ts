import { benchCore, type CoreBenchRow } from "./core-bench.js";
import type { Backend } from "@chainwarden/core";

function option(name: string, fallback: string): string {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? a.slice(name.length + 3) : fallback;
}

if (process.argv.includes("--help")) {
  process.stdout.write(
    "usage: npm run bench -- [--sizes=1000x10,5000x10,10000x10] [--backends=nft,legacy]\n" +
      "Runs as root; every measurement uses throwaway network namespaces.\n",
  );
  process.exit(0);
}

const sizes = option("sizes", "1000x10,5000x10,10000x10").split(",").map((s) => s.split("x").map(Number) as [number, number]);
const backends = option("backends", "nft,legacy").split(",") as Backend[];

const f = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(1));
const rows: CoreBenchRow[] = [];
process.stdout.write(
  "| backend | chains × rules | rules | build ms (validate+canonicalize) | cold apply ms (ours) | cold ms (raw restore) | ratio | change bytes | change lines | change CPU ms (ours) | change ms (ours, e2e) | change ms (raw restore) | ratio | 2nd apply lines |\n" +
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
);
for (const backend of backends) {
  for (const [chains, per] of sizes) {
    const r = await benchCore(backend, chains, per);
    rows.push(r);
    process.stdout.write(
      `| ${r.backend} | ${r.chains} × ${r.rulesPerChain} | ${r.rules} | ${f(r.buildMs)} | ${f(r.coldMs)} | ${f(r.rawColdMs)} | ${(r.coldMs / r.rawColdMs).toFixed(2)} | ${r.changeBytes} | ${r.changeLines} | ${f(r.changeCpuMs)} | ${f(r.changeMs)} | ${f(r.rawChangeMs)} | ${(r.changeMs / r.rawChangeMs).toFixed(2)} | ${r.secondApplyLines} |\n`,
    );
  }
}
