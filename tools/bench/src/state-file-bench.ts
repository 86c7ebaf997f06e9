/**
 * The file state source on large input: a generated l2 state (ports, security groups, member IPs)
 * of about N MB as JSON and as YAML, each read by a fresh `FileStateSource` in a fresh node process.
 * Per case: the time until the document is delivered, the process's peak RSS (worker threads
 * included), the longest the event loop was held (the longest gap between ticks of a 1 ms
 * interval), and the slowest answer of `/metrics` (the agent's real metrics server, asked again 10
 * ms after each answer) while the file was read; in parentheses the same two for 2 s before the
 * read, with nothing read: what the machine's load alone costs.
 *
 *   npm run build && node tools/bench/dist/state-file-bench.js [--sizes=14,50] [--formats=json,yaml]
 *     [--module=PATH] [--dir=DIR] [--timeout=SECONDS]
 *
 * --module  import FileStateSource from this file instead of @chainwarden/agent (an older build, to compare)
 * --dir     where the generated files are kept (default: a directory under the system's temp dir, reused)
 * --timeout give up on a case after this long (default 600 s)
 * Needs no root and touches no iptables.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { request } from "node:http";
import { fileURLToPath, pathToFileURL } from "node:url";
import { AgentMetrics, createLogger, serveMetrics, type StateDocument, type StateSink } from "@chainwarden/agent";

function option(name: string, fallback: string): string {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? a.slice(name.length + 3) : fallback;
}

/** An l2 agent's state of about `bytes` as JSON: 200 security groups × 10 rules, ports spread over them. */
export function l2State(bytes: number): StateDocument {
  const devices: Record<string, unknown> = {};
  const securityGroups: Record<string, unknown[]> = {};
  const memberIps: Record<string, { IPv4: string[]; IPv6: string[] }> = {};
  const groups = 200;
  for (let g = 0; g < groups; g++) {
    const id = `sg-${g.toString(16).padStart(8, "0")}-aaaa-bbbb-cccc-000000000000`;
    securityGroups[id] = Array.from({ length: 10 }, (_, r) => ({
      direction: r % 2 ? "ingress" : "egress",
      ethertype: "IPv4",
      protocol: "tcp",
      port_range_min: 1000 + r,
      port_range_max: 1000 + r,
      remote_ip_prefix: `10.${g % 256}.${r}.0/24`,
      security_group_id: id,
    }));
    memberIps[id] = { IPv4: [], IPv6: [] };
  }
  const ids = Object.keys(securityGroups);
  const hex = (n: number) => n.toString(16).padStart(2, "0");
  // ~420 bytes of JSON per port (with one-space indentation) including its member IP.
  for (let i = 0, size = 400_000; size < bytes; i++, size += 420) {
    const id = `port-${i.toString(16).padStart(8, "0")}-1111-2222-3333-444444444444`;
    const sg = ids[i % groups]!;
    const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    devices[id] = {
      device: `tap${id.slice(5, 16)}`,
      mac_address: `fa:16:3e:${hex((i >> 16) & 255)}:${hex((i >> 8) & 255)}:${hex(i & 255)}`,
      fixed_ips: [ip],
      allowed_address_pairs: [],
      security_groups: [sg],
      port_security_enabled: true,
      device_owner: "compute:nova",
      network_id: "net-0000",
      admin_state_up: true,
    };
    memberIps[sg]!.IPv4.push(ip);
  }
  return { devices, security_groups: securityGroups, sg_member_ips: memberIps };
}

/** Block-style YAML (strings double-quoted, as JSON writes them). */
export function toYaml(value: unknown, indent = ""): string {
  if (Array.isArray(value)) {
    if (value.length === 0) return " []\n";
    return "\n" + value.map((v) => `${indent}-${isContainer(v) && !Array.isArray(v) && Object.keys(v).length > 0 ? blockInSeq(v as Record<string, unknown>, indent + "  ") : toYaml(v, indent + "  ")}`).join("");
  }
  if (isContainer(value)) {
    const entries = Object.entries(value as Record<string, unknown>);
    if (entries.length === 0) return " {}\n";
    return "\n" + entries.map(([k, v]) => `${indent}${JSON.stringify(k)}:${toYaml(v, indent + "  ")}`).join("");
  }
  return ` ${JSON.stringify(value)}\n`;
}

function blockInSeq(value: Record<string, unknown>, indent: string): string {
  // `- key: v` then the other keys at the same indentation.
  return toYaml(value, indent).replace(/^\n */, " ");
}

function isContainer(v: unknown): v is object {
  return typeof v === "object" && v !== null;
}

interface CaseResult {
  ms: number;
  maxRssMb: number;
  maxLoopDelayMs: number;
  /** The same, for 2 s before the read: the machine's own noise. */
  idleLoopDelayMs: number;
  idleSlowestMetricsMs: number;
  slowestMetricsMs: number;
  metricsAnswers: number;
  delivered: boolean;
  problems: string[];
}

/** One case, in this (child) process. */
async function runCase(file: string, modulePath: string | undefined): Promise<CaseResult> {
  const mod = (modulePath ? await import(pathToFileURL(resolve(modulePath)).href) : await import("@chainwarden/agent")) as typeof import("@chainwarden/agent");
  const logger = createLogger({ level: "silent", name: "bench", destination: { write: () => undefined } });
  const server = await serveMetrics(new AgentMetrics(), "127.0.0.1:0", logger);
  // The longest gap between two ticks of a 1 ms interval: how long the loop was held at most.
  let lastTick = 0;
  let longestGap = 0;
  const ticker = setInterval(() => {
    const now = performance.now();
    if (lastTick > 0) longestGap = Math.max(longestGap, now - lastTick);
    lastTick = now;
  }, 1);
  let probing = true;
  let slowest = 0;
  let answers = 0;
  const probe = (async () => {
    while (probing) {
      const sent = performance.now();
      await new Promise<void>((done, fail) => {
        const req = request({ host: "127.0.0.1", port: server.port, path: "/metrics" }, (res) => {
          res.resume();
          res.on("end", () => done());
        });
        req.on("error", fail);
        req.end();
      });
      slowest = Math.max(slowest, performance.now() - sent);
      answers++;
      // A scraper's pace, not a busy loop that would compete with the parser for the CPU.
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  const problems: string[] = [];
  let delivered = false;
  const sink: StateSink = {
    update: () => void (delivered = true),
    problem: (p) => void problems.push(p.message),
  };
  const source = new mod.FileStateSource({ path: file, logger, debounceMs: 50 });
  // The same measurements for 2 s with nothing read: what the machine's load alone costs.
  await new Promise((r) => setTimeout(r, 200));
  longestGap = slowest = 0;
  lastTick = performance.now();
  await new Promise((r) => setTimeout(r, 2_000));
  const idleGap = longestGap;
  const idleSlowest = slowest;
  longestGap = slowest = 0;
  lastTick = performance.now();
  const started = performance.now();
  await source.start(sink);
  const ms = performance.now() - started;
  // A parse on the loop ends in the same turn as start(): the gap since the last tick counts too.
  longestGap = Math.max(longestGap, performance.now() - lastTick);
  clearInterval(ticker);
  probing = false;
  await probe;
  await source.stop();
  await server.close();
  return {
    ms,
    maxRssMb: process.resourceUsage().maxRSS / 1024,
    maxLoopDelayMs: longestGap,
    idleLoopDelayMs: idleGap,
    idleSlowestMetricsMs: idleSlowest,
    slowestMetricsMs: slowest,
    metricsAnswers: answers,
    delivered,
    problems,
  };
}

function runChild(file: string, modulePath: string | undefined, timeoutS: number): Promise<CaseResult | string> {
  const args = [fileURLToPath(import.meta.url), `--child=${file}`, ...(modulePath ? [`--module=${modulePath}`] : [])];
  return new Promise((done) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutS * 1000);
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      if (signal === "SIGKILL") done(`gave up after ${timeoutS} s`);
      else if (code !== 0) done(`exited ${code ?? signal}`);
      else done(JSON.parse(out) as CaseResult);
    });
  });
}

const child = option("child", "");
if (child) {
  const result = await runCase(child, option("module", "") || undefined);
  process.stdout.write(JSON.stringify(result));
  process.exit(0);
}

if (process.argv.includes("--help")) {
  process.stdout.write((/^\/\*\*\n([\s\S]*?)\*\//.exec(await import("node:fs").then((fs) => fs.readFileSync(fileURLToPath(import.meta.url), "utf8")))?.[1] ?? "").replace(/^ \* ?/gm, ""));
  process.exit(0);
}

const sizes = option("sizes", "14,50").split(",").map(Number);
const formats = option("formats", "json,yaml").split(",");
const modulePath = option("module", "") || undefined;
const timeoutS = Number(option("timeout", "600"));
const dir = option("dir", join(tmpdir(), "chainwarden-state-file-bench"));
mkdirSync(dir, { recursive: true });

const out = (s: string) => process.stdout.write(s);
const f = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(1));
out(`FileStateSource from ${modulePath ?? "@chainwarden/agent"}\n\n`);
out("| format | file MB | delivered after ms | peak RSS MB | longest event-loop stall ms (idle) | slowest /metrics ms (idle) | problems |\n");
out("|---|---|---|---|---|---|---|\n");
for (const size of sizes) {
  const base = join(dir, `l2-${size}mb`);
  if (!existsSync(`${base}.json`) || !existsSync(`${base}.yaml`)) {
    const doc = l2State(size * 1e6);
    writeFileSync(`${base}.json`, JSON.stringify(doc, null, 1));
    writeFileSync(`${base}.yaml`, toYaml(doc).replace(/^\n/, ""));
  }
  for (const format of formats) {
    const file = `${base}.${format}`;
    const mb = statSync(file).size / 1e6;
    const r = await runChild(file, modulePath, timeoutS);
    if (typeof r === "string") out(`| ${format} | ${f(mb)} | ${r} | | | | |\n`);
    else {
      out(
        `| ${format} | ${f(mb)} | ${r.delivered ? f(r.ms) : "not delivered"} | ${f(r.maxRssMb)} | ${f(r.maxLoopDelayMs)} (${f(r.idleLoopDelayMs)}) | ${f(r.slowestMetricsMs)} (${f(r.idleSlowestMetricsMs)}) | ${r.problems.join("; ").slice(0, 120)} |\n`,
      );
    }
  }
}
