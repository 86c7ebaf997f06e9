/**
 * Replays every save-normalization fixture on the real tools: for both backends, each case goes
 * through `ip[6]tables-{nft,legacy}-restore -n` as `-A CWTEST <input>` in a scratch network
 * namespace and must come back from `*-save -t TABLE` as `saved` (or `savedLegacy`), which must
 * also be what canonicalizeRule(input) returns. Needs root (it creates the namespace); it never
 * touches the host namespace's rules and deletes its namespace even when a test fails.
 *
 * The cases of one backend, family and table are loaded in one restore (one chain, rules in
 * order) and read back in one save; when a restore fails, the cases are replayed one by one to
 * name the culprits.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { canonicalizeRule } from "./canonicalize-rule.js";
import { STANDARD_TARGETS, TARGET_SPECS } from "./module-specs.js";
import { ruleTarget } from "./rule-tokens.js";
import { SAVE_NORMALIZATION_CASES, type SaveNormalizationCase } from "./save-normalization.fixtures.js";

const NS = `cw-canon-${randomBytes(4).toString("hex")}`;
const BACKENDS = ["nft", "legacy"] as const;
type Backend = (typeof BACKENDS)[number];

interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

function run(argv: readonly string[], input?: string): RunResult {
  const r = spawnSync(argv[0]!, argv.slice(1), { input, encoding: "utf8", timeout: 30_000 });
  if (r.error !== undefined) throw new Error(`${argv.join(" ")}: ${r.error.message}`);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function mustRun(argv: readonly string[], input?: string): string {
  const r = run(argv, input);
  if (r.status !== 0) throw new Error(`${argv.join(" ")} failed (exit ${r.status}): ${r.stderr.trim()}`);
  return r.stdout;
}

const inNs = (...argv: string[]): string[] => ["ip", "netns", "exec", NS, ...argv];
const tool = (backend: Backend, family: 4 | 6, what: "restore" | "save"): string =>
  `${family === 6 ? "ip6tables" : "iptables"}-${backend}-${what}`;

/** User chains a case jumps to: the restore must declare them. */
function userChains(c: SaveNormalizationCase): string[] {
  const t = ruleTarget(c.saved);
  return t !== undefined && !STANDARD_TARGETS.has(t.target) && !TARGET_SPECS.has(t.target) ? [t.target] : [];
}

/** Sets a case matches on (ipset sets live in the namespace, created before the rules). */
function setNames(c: SaveNormalizationCase): string[] {
  const m = /--match-set (\S+) /.exec(c.saved);
  return m === null ? [] : [m[1]!];
}

function restoreScript(table: string, cases: readonly SaveNormalizationCase[]): string {
  const chains = new Set<string>(["CWTEST"]);
  for (const c of cases) for (const ch of userChains(c)) chains.add(ch);
  let s = `*${table}\n`;
  for (const ch of chains) s += `:${ch} - [0:0]\n`;
  for (const c of cases) s += `-A CWTEST ${c.input}\n`;
  return `${s}COMMIT\n`;
}

/** Loads the cases, returns the saved rule texts of CWTEST (after `-A CWTEST `), or the error. */
function roundTrip(backend: Backend, family: 4 | 6, table: string, cases: readonly SaveNormalizationCase[]): string[] | string {
  const r = run(inNs(tool(backend, family, "restore"), "-w", "10", "-n"), restoreScript(table, cases));
  if (r.status !== 0) return `exit ${r.status}: ${r.stderr.trim()}`;
  const saved = mustRun(inNs(tool(backend, family, "save"), "-t", table));
  return saved
    .split("\n")
    .filter((l) => l === "-A CWTEST" || l.startsWith("-A CWTEST "))
    .map((l) => l.slice("-A CWTEST ".length));
}

const groups = new Map<string, SaveNormalizationCase[]>();
for (const c of SAVE_NORMALIZATION_CASES) {
  const key = `IPv${c.family} ${c.table}`;
  const list = groups.get(key) ?? [];
  list.push(c);
  groups.set(key, list);
}

beforeAll(() => {
  if (process.getuid?.() !== 0) {
    throw new Error(
      "save-normalization.kernel.test.ts must run as root: it creates a network namespace and loads rules with " +
        "iptables-{nft,legacy}-restore inside it (run `npx vitest run src/canonical` as root)",
    );
  }
  mustRun(["ip", "netns", "add", NS]);
  const sets = new Map<string, 4 | 6>();
  for (const c of SAVE_NORMALIZATION_CASES) for (const s of setNames(c)) sets.set(s, c.family);
  for (const [name, family] of sets) {
    mustRun(inNs("ipset", "create", name, "hash:net", "family", family === 6 ? "inet6" : "inet"));
  }
});

afterAll(() => {
  // Deleting the namespace drops its rules and ipsets with it.
  const r = run(["ip", "netns", "del", NS]);
  if (r.status !== 0 && !r.stderr.includes("No such file")) throw new Error(`could not delete namespace ${NS}: ${r.stderr.trim()}`);
});

describe.each(BACKENDS)("iptables-%s 1.8.9", (backend) => {
  it.each([...groups.keys()])("prints %s fixtures as recorded and as canonicalizeRule does", (key) => {
    const cases = groups.get(key)!;
    const { family, table } = cases[0]!;
    const result = roundTrip(backend, family, table, cases);
    if (typeof result === "string") {
      const failing = cases
        .map((c) => [c, roundTrip(backend, family, table, [c])] as const)
        .filter(([, r]) => typeof r === "string")
        .map(([c, r]) => `${c.input}\n  ${String(r)}`);
      throw new Error(`restore failed (${result}); failing cases:\n${failing.join("\n")}`);
    }
    expect(result.length, "one saved rule per case").toBe(cases.length);
    const wrong: string[] = [];
    cases.forEach((c, i) => {
      const want = backend === "legacy" ? (c.savedLegacy ?? c.saved) : c.saved;
      const got = result[i];
      let canonical: string;
      try {
        canonical = canonicalizeRule(c.input, { family });
      } catch (e) {
        canonical = `THROWS ${(e as Error).message}`;
      }
      if (got !== want || canonical !== got) wrong.push(`${c.input}\n  fixture: ${want}\n  saved:   ${got}\n  canon:   ${canonical}`);
    });
    expect(wrong).toEqual([]);
  });
});

/**
 * Why some shapes iptables accepts are refused by canonicalizeRule: the two backends print them
 * differently or one refuses them. If a future iptables makes them agree, this fails and the
 * refusal can be reconsidered.
 */
describe("shapes refused because the backends disagree", () => {
  const DIVERGENT: ReadonlyArray<readonly [4 | 6, string, string]> = [
    [4, "filter", "-p tcp --dport 80 -m tcp --sport 8 -j ACCEPT"],
    [4, "filter", "-p udp --dport 1 -m udp --sport 2 -j ACCEPT"],
    [4, "filter", "-p tcp ! --dport 0:65535 -j ACCEPT"],
    [4, "filter", "! -s 0.0.0.0/0 -j ACCEPT"],
    [6, "filter", "! -s ::/0 -j ACCEPT"],
    [4, "filter", "! -p tcp --dport 22 -j ACCEPT"],
    [4, "filter", "-m limit --limit 1/day -j ACCEPT"],
    [4, "filter", "-j QUEUE"],
  ];
  it.each(DIVERGENT)("IPv%s %s: %s", (family, table, input) => {
    const c: SaveNormalizationCase = { family, table, input, saved: "" };
    const nft = roundTrip("nft", family, table, [c]);
    const legacy = roundTrip("legacy", family, table, [c]);
    expect(JSON.stringify(nft)).not.toBe(JSON.stringify(legacy));
    expect(() => canonicalizeRule(input, { family })).toThrow();
  });
});
