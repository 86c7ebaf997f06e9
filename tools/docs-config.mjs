#!/usr/bin/env node
// Writes docs/configuration.md from the built apps' config schemas: `npm run docs:config` (it builds
// first). `--check` writes nothing and exits 1 when the file is stale; the apps' tests check the same.
import "reflect-metadata";
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { configReference } from "@chainwarden/agent";
import { l3AgentApp } from "../apps/l3-agent/dist/app.js";
import { l2AgentApp } from "../apps/l2-agent/dist/app.js";

const path = fileURLToPath(new URL("../docs/configuration.md", import.meta.url));
const text = configReference([l3AgentApp, l2AgentApp]);
if (process.argv.includes("--check")) {
  let current = "";
  try {
    current = readFileSync(path, "utf8");
  } catch {}
  if (current !== text) {
    process.stderr.write("docs/configuration.md is stale: run `npm run docs:config`\n");
    process.exit(1);
  }
} else {
  writeFileSync(path, text);
  process.stdout.write(`wrote ${path}\n`);
}
