import { ExecaRunner, type Backend } from "@chainwarden/core";
import { benchCore, type CoreBenchRow } from "./core-bench.js";
import { benchFwaas, type FwaasBenchRow } from "./fwaas-bench.js";
import { benchL2, formatL2Bench, type L2BenchResult } from "./l2-bench.js";
import { benchDevices, formatDevicesBench, type DevicesBenchResult } from "./l2-devices-bench.js";
import { benchL3, formatL3Bench } from "./l3-bench.js";
import { benchRpc, formatRpcBench } from "./rpc-bench.js";

function option(name: string, fallback: string): string {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? a.slice(name.length + 3) : fallback;
}

const CASES = ["core", "l2", "devices", "l3", "fwaas"] as const;
/** Cases run only when named (they take more than a few minutes). */
const OPT_IN = ["rpc"] as const;

if (process.argv.includes("--help")) {
  process.stdout.write(
    "usage: npm run bench -- [--cases=core,l2,devices,l3,fwaas,rpc] [--backends=nft,legacy] [--sizes=1000x10,5000x10,10000x10]\n" +
      "  core   N chains × M rules: cold apply and a one-rule change, beside raw iptables-restore of the same input\n" +
      "  l2     2,000 ports × 10 rules: add, update 200, add one, remove 200 (security groups)\n" +
      "  devices  the l2 agent with 2,000 ports filtered and 6 waiting for their taps: host CPU while they\n" +
      "         wait, and tap → rules latency, with the device monitor and with polling only\n" +
      "  l3     200 routers × 10 floating IPs, then one floating IP change on a 1,000-FIP router\n" +
      "  fwaas  a 512-rule policy on 10 routers: create and update (v1 and v2)\n" +
      "  rpc    (only when named; Neutron's privsep daemon wedges beyond a few routers here: compare at --routers=4) the agents driven over Neutron's RPC from a stand-in\n" +
      "         neutron-server on a real RabbitMQ: l3 full sync of R routers × F floating IPs, floating IP change\n" +
      "         latency and memory, ours next to Debian's neutron-l3-agent; l2 full sync of P ports and a security\n" +
      "         group rule change. Flags: --routers=200 --fips=10 --ports=2000 --moves=20 --rule-changes=10\n" +
      "         --rpc-parts=l3,l2 --neutron=on|off --neutron-privsep-threads=32 (0: oslo's default) --neutron-timeout-min=15.\n" +
      "         Backend: the one `iptables` is on this host (Neutron's agent uses that one).\n" +
      "Runs as root; every measurement uses throwaway network namespaces it deletes.\n",
  );
  process.exit(0);
}

const cases = option("cases", CASES.join(",")).split(",");
const known: readonly string[] = [...CASES, ...OPT_IN];
for (const c of cases) if (!known.includes(c)) throw new Error(`unknown case ${c}; known: ${known.join(", ")}`);
const backends = option("backends", "nft,legacy").split(",") as Backend[];
const sizes = option("sizes", "1000x10,5000x10,10000x10").split(",").map((s) => s.split("x").map(Number) as [number, number]);
const out = (s: string) => process.stdout.write(s);
const f = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(1));

if (cases.includes("core")) {
  out("\n## core: N chains × M rules\n\n");
  out(
    "| backend | chains × rules | rules | build ms (validate+canonicalize) | cold apply ms (ours) | cold ms (raw restore) | ratio | change bytes | change lines | change CPU ms (ours) | change ms (ours, e2e) | change ms (raw restore) | ratio | 2nd apply lines |\n" +
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
  );
  for (const backend of backends) {
    for (const [chains, per] of sizes) {
      const r: CoreBenchRow = await benchCore(backend, chains, per);
      out(
        `| ${r.backend} | ${r.chains} × ${r.rulesPerChain} | ${r.rules} | ${f(r.buildMs)} | ${f(r.coldMs)} | ${f(r.rawColdMs)} | ${(r.coldMs / r.rawColdMs).toFixed(2)} | ${r.changeBytes} | ${r.changeLines} | ${f(r.changeCpuMs)} | ${f(r.changeMs)} | ${f(r.rawChangeMs)} | ${(r.changeMs / r.rawChangeMs).toFixed(2)} | ${r.secondApplyLines} |\n`,
      );
    }
  }
}

if (cases.includes("l2")) {
  out("\n## l2: security groups, 2,000 ports × 10 rules\n\n");
  const results: L2BenchResult[] = [];
  for (const backend of backends) results.push(await benchL2({ backend }));
  out(formatL2Bench(results));
}

if (cases.includes("devices")) {
  out("\n## l2 devices: 2,000 ports filtered, 6 waiting for their taps\n\n");
  const results: DevicesBenchResult[] = [];
  for (const backend of backends) for (const monitor of [true, false]) results.push(await benchDevices({ backend, monitor }));
  out(formatDevicesBench(results));
}

if (cases.includes("l3")) {
  out("\n## l3: routers and floating IPs\n\n");
  for (const backend of backends) out(formatL3Bench(await benchL3({ backend })));
}

if (cases.includes("fwaas")) {
  out("\n## FWaaS: a 512-rule policy on 10 routers\n\n");
  out(
    "| backend | version | create: our CPU ms | create: runner CPU ms | create: restore ms | update: our CPU ms | update: runner CPU ms | update: restore ms | update lines | repeat lines |\n" +
      "|---|---|---|---|---|---|---|---|---|---|\n",
  );
  for (const backend of backends) {
    for (const version of ["v1", "v2"] as const) {
      const r: FwaasBenchRow = await benchFwaas({ backend, version });
      out(
        `| ${backend} | ${version} | ${f(r.create.cpuMs)} | ${f(r.create.runnerCpuMs)} | ${f(r.create.restoreMs)} | ${f(r.update.cpuMs)} | ${f(r.update.runnerCpuMs)} | ${f(r.update.restoreMs)} | ${r.update.lines} | ${r.repeatLines} |\n`,
      );
    }
  }
}

if (cases.includes("rpc")) {
  out("\n## rpc: the agents driven over Neutron's RPC (stand-in neutron-server, real RabbitMQ)\n\n");
  const number = (name: string, fallback: number) => Number(option(name, String(fallback)));
  const result = await benchRpc({
    backend: await new ExecaRunner({ backend: "auto" }).backend(),
    routers: number("routers", 200),
    fips: number("fips", 10),
    ports: number("ports", 2000),
    moves: number("moves", 20),
    ruleChanges: number("rule-changes", 10),
    neutron: option("neutron", "on") !== "off",
    neutronPrivsepThreads: number("neutron-privsep-threads", 32),
    neutronTimeoutMs: number("neutron-timeout-min", 15) * 60_000,
    parts: option("rpc-parts", "l3,l2").split(",") as ("l3" | "l2")[],
  });
  out(formatRpcBench(result));
}
