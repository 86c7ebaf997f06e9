import "reflect-metadata";
import { runDemo } from "./demo.js";
import { runL3AgentDemo } from "./l3-agent-demo.js";

const arg = process.argv.find((a) => a.startsWith("--backend="));
const backend = arg ? arg.slice("--backend=".length) : "auto";
if (backend !== "auto" && backend !== "nft" && backend !== "legacy") {
  process.stderr.write(`usage: demo [--backend=auto|nft|legacy]\n`);
  process.exit(2);
}
try {
  await runDemo({ backend });
  const l3 = await runL3AgentDemo({ backend });
  process.exit(l3.removed ? 0 : 1);
} catch (err: unknown) {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}
