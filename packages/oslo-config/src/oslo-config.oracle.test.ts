/**
 * The reader against the real thing: each case's files are read by oslo.config itself (Debian's
 * python3-oslo.config, through `test-support/oslo-oracle.py`) and by `OsloConfig`, and every
 * option's value must be the same, or both must fail (at the same line, where oslo.config names the
 * line where the problem is). Skipped where no python3 can import oslo_config.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { OsloConfig } from "./oslo-config.js";
import { readOsloConfigFiles, type OsloConfigSource } from "./oslo-config-files.js";
import type { OsloOption } from "./oslo-option.js";
import { booleanType, floatType, integerType, listType, multiType, portType, stringType, type OsloType } from "./oslo-types.js";

const ORACLE = fileURLToPath(new URL("test-support/oslo-oracle.py", import.meta.url));

/** Debian's python3 first: a pyenv or venv python3 on PATH usually lacks Debian's oslo_config. */
function findPython(): string | undefined {
  for (const python of ["/usr/bin/python3", "python3"]) {
    const r = spawnSync(python, ["-c", "import oslo_config"], { encoding: "utf8" });
    if (r.status === 0) return python;
  }
  return undefined;
}
const python = findPython();

type OptionType = "string" | "boolean" | "integer" | "float" | "port" | "list" | "multi_string";

interface OptionSpec {
  group: string;
  name: string;
  type: OptionType;
  default?: unknown;
  choices?: string[];
  deprecated?: { group?: string; name?: string }[];
}

interface Case {
  name: string;
  /** Files to write, by path relative to the case's directory. */
  files: Record<string, string>;
  /** `--config-file X` / `--config-dir X`, relative to the case's directory. */
  sources: OsloConfigSource[];
  options: OptionSpec[];
  /** oslo.config reports this parse error at the line where it notices, not at the option's line. */
  lineDiffers?: boolean;
}

const s = (group: string, name: string, extra: Partial<OptionSpec> = {}): OptionSpec => ({ group, name, type: "string", ...extra });
const D = "DEFAULT";

const CASES: Case[] = [
  {
    name: "comments, separators, quotes, empty values, % and inline #",
    files: {
      "a.conf": [
        "# a comment before any section",
        "; another",
        "[DEFAULT]",
        "a = plain",
        "b=nospace",
        "c : colon",
        'd = "double quoted"',
        "e = 'single quoted'",
        "f = \"mismatched'",
        'g = "',
        "h = value # not a comment",
        "i = value ; not one either",
        "j = url=http://host:80/path",
        "k: a=b",
        "l =",
        "m = 100%",
        "n = %(foo)s",
        "o =   padded   \t",
        "p = \"'\"",
        "#q = commented out",
        "",
      ].join("\n"),
    },
    sources: [{ file: "a.conf" }],
    options: ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q"].map((n) => s(D, n)),
  },
  {
    name: "continuation lines, blank lines, CRLF and lone CR",
    files: {
      "a.conf": "[DEFAULT]\na = first\n  second\n\tthird\nb = x\n  # looks like a comment\nc = y\n   \nd = z\r\ne = crlf\r\nf = \"quoted\n  continued\"\ng = last",
    },
    sources: [{ file: "a.conf" }],
    options: ["a", "b", "c", "d", "e", "f", "g"].map((n) => s(D, n)),
  },
  {
    name: "sections: case-insensitive except DEFAULT, repeated, spaced, no fallback to DEFAULT",
    files: {
      "a.conf": [
        "[DEFAULT]",
        "in_default = d",
        "shared = from-default",
        "[agent]",
        "lower = 1",
        "[Agent]",
        "mixed = 2",
        "[default]",
        "in_lower_default = x",
        "[ AGENT ]",
        "spaced = 3",
        "[AGENT]",
        "lower = 4",
        "[securitygroup]",
        "enable_ipset = false",
        "",
      ].join("\n"),
    },
    sources: [{ file: "a.conf" }],
    options: [
      s(D, "in_default"),
      s(D, "in_lower_default"),
      s("AGENT", "lower"),
      s("AGENT", "mixed"),
      s("AGENT", "spaced"),
      s("AGENT", "shared"),
      s("AGENT", "in_default"),
      s("default", "in_lower_default"),
      s("SECURITYGROUP", "enable_ipset", { type: "boolean" }),
    ],
  },
  {
    name: "option names: exact case, - in a registered name is _ in the file, deprecated names",
    files: {
      "a.conf": [
        "[DEFAULT]",
        "Debug = true",
        "report-interval = 5",
        "other_name = 6",
        "rabbit_retry_backoff = 9",
        "[oslo_messaging_rabbit]",
        "rabbit_use_ssl = true",
        "kombu_ssl_ca_certs = /old",
        "ssl_ca_file = /new",
        "",
      ].join("\n"),
    },
    sources: [{ file: "a.conf" }],
    options: [
      s(D, "debug", { type: "boolean", default: false }),
      s(D, "report-interval"),
      s(D, "dashed-name", { deprecated: [{ name: "other_name" }] }),
      s("oslo_messaging_rabbit", "ssl", { type: "boolean", default: false, deprecated: [{ name: "rabbit_use_ssl" }] }),
      s("oslo_messaging_rabbit", "ssl_ca_file", { deprecated: [{ name: "kombu_ssl_ca_certs" }] }),
      s("oslo_messaging_rabbit", "rabbit_retry_backoff", { type: "integer", default: 2, deprecated: [{ group: "DEFAULT" }] }),
    ],
  },
  {
    name: "several files: later wins, earlier fills in; repeats in one file; multi-valued across files",
    files: {
      "one.conf": "[DEFAULT]\na = one\nb = one\nm = 1\nm = 2\n[AGENT]\nx = one\n",
      "two.conf": "[DEFAULT]\na = two\na = two-again\nm = 3\n[agent]\ny = two\n",
      "three.conf": "[DEFAULT]\nm = 4\n[AGENT]\nx = three\n",
    },
    sources: [{ file: "one.conf" }, { file: "two.conf" }, { file: "three.conf" }],
    options: [s(D, "a"), s(D, "b"), s(D, "m", { type: "multi_string" }), s(D, "unset_multi", { type: "multi_string" }), s("AGENT", "x"), s("AGENT", "y")],
  },
  {
    name: "--config-dir: *.conf in name order, not hidden ones, between the files around it",
    files: {
      "first.conf": "[DEFAULT]\na = first\nb = first\nc = first\nd = first\n",
      "dir/20-b.conf": "[DEFAULT]\nb = 20\nc = 20\n",
      "dir/10-a.conf": "[DEFAULT]\nb = 10\nc = 10\nd = 10\n",
      "dir/.99-hidden.conf": "[DEFAULT]\nc = hidden\n",
      "dir/30-c.ini": "[DEFAULT]\nc = ini\n",
      "last.conf": "[DEFAULT]\nd = last\n",
    },
    sources: [{ file: "first.conf" }, { dir: "dir" }, { file: "last.conf" }],
    options: [s(D, "a"), s(D, "b"), s(D, "c"), s(D, "d")],
  },
  {
    name: "booleans",
    files: {
      "a.conf": "[DEFAULT]\nt1 = True\nt2 = YES\nt3 = On\nt4 = 1\nf1 = false\nf2 = No\nf3 = OFF\nf4 = 0\nbad = maybe\nempty =\ntwo = true\n  false\n",
    },
    sources: [{ file: "a.conf" }],
    options: [
      ...["t1", "t2", "t3", "t4", "f1", "f2", "f3", "f4", "bad", "empty", "two"].map((n) => s(D, n, { type: "boolean" })),
      s(D, "default_text", { type: "boolean", default: "yes" }),
    ],
  },
  {
    name: "integers, ports and floats",
    files: {
      "a.conf": [
        "[DEFAULT]",
        "i1 = 1_000",
        "i2 = +5",
        "i3 = -0",
        "i4 = 0x10",
        "i5 = 1.5",
        "i6 =",
        "i7 = 1__0",
        "p1 = 65535",
        "p2 = 65536",
        "p3 = -1",
        "f1 = 1e3",
        "f2 = .5",
        "f3 = 5.",
        "f4 = 1_0.2_5",
        "f5 = 30",
        "f6 = ten",
        "f7 = -2.5E-3",
        "",
      ].join("\n"),
    },
    sources: [{ file: "a.conf" }],
    options: [
      ...["i1", "i2", "i3", "i4", "i5", "i6", "i7"].map((n) => s(D, n, { type: "integer" })),
      ...["p1", "p2", "p3"].map((n) => s(D, n, { type: "port" })),
      ...["f1", "f2", "f3", "f4", "f5", "f6", "f7"].map((n) => s(D, n, { type: "float" })),
      s(D, "i_default", { type: "integer", default: 30 }),
    ],
  },
  {
    name: "lists and choices",
    files: {
      "a.conf": "[DEFAULT]\nl1 = a, b,,c,,\nl2 =\nl3 = single\nl4 = ' x ' , y\nc1 = legacy\nc2 = Legacy\n",
    },
    sources: [{ file: "a.conf" }],
    options: [
      ...["l1", "l2", "l3", "l4"].map((n) => s(D, n, { type: "list" })),
      s(D, "l_default", { type: "list", default: [] }),
      s(D, "c1", { choices: ["legacy", "dvr"] }),
      s(D, "c2", { choices: ["legacy", "dvr"] }),
    ],
  },
  {
    name: "interpolation: $name, ${name}, defaults, other groups, typed values, escapes",
    files: {
      "a.conf": [
        "[DEFAULT]",
        "state_path = /srv/neutron",
        "a = $state_path/x",
        "b = ${state_path}y",
        "c = $$literal and \\$escaped",
        "d = cost: 5$",
        "e = $1 and ${state_path",
        "f = $AGENT.report_interval|$AGENT.enabled|$AGENT.items",
        "g = $a/again",
        "h = $empty_int.",
        "[AGENT]",
        "report_interval = 7",
        "enabled = yes",
        "items = p, q",
        "inner = $state_path and $report_interval",
        "",
      ].join("\n"),
    },
    sources: [{ file: "a.conf" }],
    options: [
      s(D, "state_path", { default: "/var/lib/neutron" }),
      ...["a", "b", "c", "d", "e", "f", "g"].map((n) => s(D, n)),
      s(D, "metadata_proxy_socket", { default: "$state_path/metadata_proxy" }),
      s(D, "empty_int", { type: "integer" }),
      s("AGENT", "report_interval", { type: "float" }),
      s("AGENT", "enabled", { type: "boolean" }),
      s("AGENT", "items", { type: "list" }),
      s("AGENT", "inner"),
    ],
  },
  {
    name: "interpolation: the default of an unset option, and errors",
    files: { "a.conf": "[DEFAULT]\nbad_group = ${nosuch.x}\nbad_default_group = $DEFAULT.host\nloop_a = $loop_b\nloop_b = $loop_a\nupper = $HOST\n" },
    sources: [{ file: "a.conf" }],
    options: [
      s(D, "host", { default: "node1" }),
      s(D, "pids", { default: "$state_path/external/pids" }),
      s(D, "state_path", { default: "/var/lib/neutron" }),
      s(D, "bad_group"),
      s(D, "bad_default_group"),
      s(D, "loop_a"),
      s(D, "loop_b"),
      s(D, "upper"),
    ],
  },
  ...(
    [
      ["a section header without ]", "[DEFAULT]\na = 1\n[AGENT\nb = 2\n"],
      ["an empty section name", "[DEFAULT]\n[]\n"],
      ["a line with neither = nor :", "[DEFAULT]\na = 1\njust words\n"],
      ["an empty key", "[DEFAULT]\n= value\n"],
      ["an indented first line", "[DEFAULT]\n = value\n"],
      ["a continuation with nothing above", "[DEFAULT]\n  indented = 1\n"],
      ["a continuation after a blank line", "[DEFAULT]\na = 1\n\n  more\n"],
      ["a byte order mark", "\ufeff[DEFAULT]\na = 1\n"],
    ] as const
  ).map(([name, text]): Case => ({ name: `parse error: ${name}`, files: { "a.conf": text }, sources: [{ file: "a.conf" }], options: [s(D, "a")] })),
  {
    name: "parse error: an option before any section",
    files: { "a.conf": "# header\na = 1\n\n[DEFAULT]\n" },
    sources: [{ file: "a.conf" }],
    options: [s(D, "a")],
    lineDiffers: true,
  },
  {
    name: "a missing --config-file and a missing --config-dir",
    files: { "a.conf": "[DEFAULT]\na = 1\n" },
    sources: [{ file: "a.conf" }, { file: "missing.conf" }],
    options: [s(D, "a")],
  },
  {
    name: "a missing --config-dir",
    files: {},
    sources: [{ dir: "missing.d" }],
    options: [s(D, "a")],
  },
];

function osloType(spec: OptionSpec): OsloType<unknown> {
  switch (spec.type) {
    case "string":
      return stringType(spec.choices ? { choices: spec.choices } : {});
    case "boolean":
      return booleanType();
    case "integer":
      return integerType();
    case "float":
      return floatType();
    case "port":
      return portType();
    case "list":
      return listType();
    case "multi_string":
      return multiType();
  }
}

type Answer = { error: { type: string; message: string; line: number | null } } | { values: ({ value: unknown } | { error: { type: string; message: string } })[] };

const root = mkdtempSync(join(tmpdir(), "oslo-oracle-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function writeCase(index: number, c: Case): string {
  const dir = join(root, String(index));
  mkdirSync(dir, { recursive: true });
  for (const [path, text] of Object.entries(c.files)) {
    mkdirSync(join(dir, path, ".."), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}

function ours(dir: string, c: Case): Answer {
  const sources = c.sources.map((src) => ("file" in src ? { file: join(dir, src.file) } : { dir: join(dir, src.dir) }));
  const { files, problems } = readOsloConfigFiles(sources);
  if (problems.length > 0) return { error: { type: problems[0]!.code, message: problems[0]!.message, line: problems[0]!.line ?? null } };
  const options = c.options.map((o): OsloOption<unknown> => ({ group: o.group, name: o.name, type: osloType(o), default: o.default, deprecatedNames: o.deprecated }));
  const config = new OsloConfig(files, options);
  return {
    values: options.map((option) => {
      try {
        return { value: config.get(option).value ?? null };
      } catch (err) {
        return { error: { type: (err as { code?: string }).code ?? "Error", message: (err as Error).message } };
      }
    }),
  };
}

describe.skipIf(python === undefined)("OsloConfig reads files as oslo.config does (checked against python3's oslo_config)", () => {
  const dirs = CASES.map((c, i) => writeCase(i, c));
  const requests = CASES.map((c, i) => ({
    args: c.sources.flatMap((src) => ("file" in src ? ["--config-file", join(dirs[i]!, src.file)] : ["--config-dir", join(dirs[i]!, src.dir)])),
    options: c.options,
  }));
  // One python process for every case: importing oslo_config is the slow part.
  const oracle = JSON.parse(
    execFileSync(python ?? "python3", [ORACLE], { input: JSON.stringify(requests), encoding: "utf8", env: { ...process.env, PYTHONUTF8: "1" }, stdio: ["pipe", "pipe", "ignore"] }),
  ) as Answer[];

  it.each(CASES.map((c, i) => [c.name, i] as const))("%s", (_name, index) => {
    const c = CASES[index]!;
    const theirs = oracle[index]!;
    const mine = ours(dirs[index]!, c);
    if ("error" in theirs) {
      expect(mine, `oslo.config failed: ${theirs.error.message}`).toHaveProperty("error");
      if (theirs.error.line !== null && !c.lineDiffers && "error" in mine) expect(mine.error.line).toBe(theirs.error.line);
      return;
    }
    expect(mine, "error" in mine ? mine.error.message : "").toHaveProperty("values");
    if (!("values" in mine)) return;
    theirs.values.forEach((answer, i) => {
      const label = `[${c.options[i]!.group}] ${c.options[i]!.name}`;
      if ("error" in answer) expect(mine.values[i], `${label}: oslo.config failed: ${answer.error.message}`).toHaveProperty("error");
      else expect(mine.values[i], label).toEqual({ value: answer.value });
    });
  });
});
