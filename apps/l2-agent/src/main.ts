import "reflect-metadata";
import { runAgentCli } from "@chainwarden/agent";
import { l2AgentApp } from "./app.js";

// `l2-agent plan | head`: a reader that goes away is not an error of ours.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

const code = await runAgentCli(l2AgentApp);
// Flush what is buffered before exiting (the agent's watchers and timers would keep the process alive).
await Promise.all([process.stdout, process.stderr].map((s) => new Promise<void>((resolve) => s.write("", () => resolve()))));
process.exit(code);
