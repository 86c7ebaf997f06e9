import { runDemo } from "./demo.js";

const arg = process.argv.find((a) => a.startsWith("--backend="));
const backend = arg ? arg.slice("--backend=".length) : "auto";
if (backend !== "auto" && backend !== "nft" && backend !== "legacy") {
  process.stderr.write(`usage: demo [--backend=auto|nft|legacy]\n`);
  process.exit(2);
}
runDemo({ backend }).catch((err: unknown) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
