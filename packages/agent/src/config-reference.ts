import type { z } from "zod";
import { composeAgentConfig, flagPlaceholder, type NeutronTarget } from "./agent-config.js";
import { describeNeutronOption, type NeutronOptionUse } from "./neutron-option.js";
import type { AgentPlugin, SettingFlag } from "./plugin.js";

/** What the reference needs of an app (`AgentApp` is one). */
export interface ConfigReferenceApp {
  readonly name: string;
  readonly description: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly plugins: readonly AgentPlugin<any, any>[];
  /** Defaults the app sets for framework keys (its `wrap_name`). */
  readonly defaults?: Readonly<Record<string, unknown>>;
}

const FRAMEWORK = "the framework";

/**
 * `docs/configuration.md`: every config key of each app (the framework's and its built-in
 * plugins'), its flag, type, default, Neutron option and description, then the built-in plugins'
 * options and the Neutron options only checked or read. Generated from the schemas (each key's
 * `.describe()`, or `.meta({ description, defaultText })` where the default is computed at run time,
 * such as `host`), so it cannot drift from what the agents accept; `npm run docs:config` writes it and
 * each app's test compares its section.
 */
export function configReference(apps: readonly ConfigReferenceApp[]): string {
  return [configReferenceHeader(), ...apps.map((app) => configReferenceSection(app))].join("\n");
}

function configReferenceHeader(): string {
  return [
    "# Configuration reference",
    "",
    "<!-- Generated from the config schemas by `npm run docs:config`: edit the schemas (`.describe()`), not this file. The apps' tests fail when it is stale. -->",
    "",
    "Each agent takes its configuration from, lowest first: each key's default, Neutron's own config files",
    "(`--config-file FILE`, `--config-dir DIR`, read as oslo.config reads them; only the options named",
    "below), the `--config FILE` (YAML, or JSON when the name ends in `.json`), and the flags. A flag wins",
    "over the file; an unknown key is an error (with a suggestion when one is close); every problem is",
    "listed at once (exit 2). `<app> --help` prints the same flags and defaults.",
    "",
    "Flags that are not config keys: `--config FILE`, `--config-file FILE` and `--config-dir DIR`",
    "(repeatable, in order), `--once` (for `apply`), `--help`/`-h`, `--version`.",
    "",
  ].join("\n");
}

/** One app's section, between `<!-- begin NAME -->` and `<!-- end NAME -->`. */
export function configReferenceSection(app: ConfigReferenceApp): string {
  const composed = composeAgentConfig(app.plugins);
  const shape = (composed.schema as unknown as { shape: Record<string, z.ZodType> }).shape;
  const flags = new Map<string, SettingFlag & { placeholder?: string }>(composed.flags.map((f) => [f.key, f]));
  const neutronOfKey = new Map<string, NeutronOptionUse>();
  const neutronOfOption = new Map<string, NeutronOptionUse>();
  for (const t of composed.neutron) {
    if (t.key !== undefined) neutronOfKey.set(t.key, t.use);
    else if (t.pluginOption) neutronOfOption.set(`${t.pluginOption.plugin}.${t.pluginOption.option}`, t.use);
  }
  const out = [`<!-- begin ${app.name} -->`, `## ${app.name}`, "", `${app.description}.`, ""];
  out.push(`Built-in plugins, in order: ${app.plugins.map((p) => `\`${p.name}\``).join(", ") || "none"}.`, "");

  const owners = [FRAMEWORK, ...app.plugins.map((p) => p.name)];
  for (const owner of owners) {
    const keys = Object.keys(shape).filter((k) => (composed.owners.get(k) ?? FRAMEWORK) === owner);
    if (keys.length === 0) continue;
    out.push(owner === FRAMEWORK ? "### Keys of the framework" : `### Keys of plugin \`${owner}\``, "");
    out.push("| key | flag | type | default | Neutron option | description |", "|---|---|---|---|---|---|");
    for (const key of keys) {
      const schema = shape[key]!;
      const flag = flags.get(key);
      const spelled = flag ? (flag.type === "boolean" ? `\`--[no-]${flag.flag}\`` : `\`--${flag.flag} ${flag.placeholder ?? flagPlaceholder(flag) ?? "VALUE"}\``) : "";
      const appDefault = app.defaults && Object.hasOwn(app.defaults, key) ? { value: app.defaults[key] } : undefined;
      out.push(row([`\`${key}\``, spelled, typeText(schema), defaultText(schema, appDefault), neutronText(neutronOfKey.get(key)), descriptionOf(schema) ?? ""]));
    }
    out.push("");
  }

  const withOptions = app.plugins.filter((p) => optionShape(p) !== undefined && Object.keys(optionShape(p)!).length > 0);
  if (withOptions.length > 0) {
    out.push("### Options of the built-in plugins", "", "Under `plugin_options.<plugin>` in the config file.", "");
    for (const plugin of withOptions) {
      out.push(`#### \`plugin_options.${plugin.name}\``, "", "| option | type | default | Neutron option | description |", "|---|---|---|---|---|");
      for (const [option, schema] of Object.entries(optionShape(plugin)!)) {
        out.push(row([`\`${option}\``, typeText(schema), defaultText(schema, undefined), neutronText(neutronOfOption.get(`${plugin.name}.${option}`)), descriptionOf(schema) ?? ""]));
      }
      out.push("");
    }
  }

  const checked = composed.neutron.filter((t) => t.key === undefined && !t.pluginOption);
  const onlyChecked = checked.filter((t) => t.use.values);
  const mapped = new Set([...neutronOfKey.values(), ...neutronOfOption.values()].map((use) => describeNeutronOption(use)));
  const onlyRead = dedupe(checked.filter((t) => !t.use.values && !mapped.has(describeNeutronOption(t.use))));
  if (onlyChecked.length > 0) {
    out.push("### Neutron options checked only", "", "A value outside these is refused at start (exit 2), naming the file, line, section, option and value.", "");
    out.push("| Neutron option | by | accepted | why others are refused |", "|---|---|---|---|");
    for (const t of onlyChecked) out.push(row([`\`${describeNeutronOption(t.use)}\``, ownerText(t.owner), valuesText(t.use), t.use.unsupported ?? ""]));
    out.push("");
  }
  if (onlyRead.length > 0) {
    out.push("### Neutron options read for the RPC client", "", "Read from Neutron's files as they are (no key of ours).", "");
    const bySection = new Map<string, string[]>();
    for (const t of onlyRead) bySection.set(t.use.section, [...(bySection.get(t.use.section) ?? []), t.use.option]);
    for (const [section, options] of bySection) out.push(`- \`[${section}]\`: ${options.map((o) => `\`${o}\``).join(", ")}`);
    out.push("");
  }
  out.push(`<!-- end ${app.name} -->`, "");
  return out.join("\n");
}

/** The config keys and built-in plugin options of an app that carry no description (`plugin_options.<plugin>.<option>` for options). */
export function undescribed(app: ConfigReferenceApp): string[] {
  const composed = composeAgentConfig(app.plugins);
  const shape = (composed.schema as unknown as { shape: Record<string, z.ZodType> }).shape;
  const missing = Object.entries(shape).filter(([, schema]) => !descriptionOf(schema)).map(([key]) => key);
  for (const plugin of app.plugins) {
    for (const [option, schema] of Object.entries(optionShape(plugin) ?? {})) if (!descriptionOf(schema)) missing.push(`plugin_options.${plugin.name}.${option}`);
  }
  return missing;
}

/** The description a key carries (`.describe()` or `.meta({ description })`). */
export function descriptionOf(schema: z.ZodType): string | undefined {
  return metaOf(schema)?.description as string | undefined;
}

function metaOf(schema: z.ZodType): Record<string, unknown> | undefined {
  return (schema as unknown as { meta(): Record<string, unknown> | undefined }).meta?.();
}

function optionShape(plugin: AgentPlugin<any, any>): Record<string, z.ZodType> | undefined {
  const shape = (plugin.options as { shape?: unknown } | undefined)?.shape;
  return typeof shape === "object" && shape !== null ? (shape as Record<string, z.ZodType>) : undefined;
}

interface Def {
  type: string;
  innerType?: z.ZodType;
  in?: z.ZodType;
  options?: z.ZodType[];
  entries?: Record<string, unknown>;
}

function defOf(schema: z.ZodType): Def {
  return (schema as unknown as { _zod: { def: Def } })._zod.def;
}

/** The type an operator writes: `string`, `integer 1–65535`, `` `a` | `b` ``, `list`, `mapping`. */
function typeText(schema: z.ZodType): string {
  const def = defOf(schema);
  switch (def.type) {
    case "default":
    case "optional":
    case "nullable":
    case "prefault":
      return typeText(def.innerType!);
    case "pipe":
      return typeText(def.in!);
    case "enum":
      return Object.values(def.entries ?? {}).map((v) => `\`${String(v)}\``).join(" | ");
    case "number": {
      const n = schema as unknown as { isInt?: boolean; minValue?: number | null; maxValue?: number | null };
      const min = n.minValue ?? undefined;
      const max = n.maxValue ?? undefined;
      const limits = (min !== undefined && Number.isFinite(min) && Math.abs(min) < Number.MAX_SAFE_INTEGER) || (max !== undefined && Number.isFinite(max) && Math.abs(max) < Number.MAX_SAFE_INTEGER);
      const range = !limits ? "" : max === undefined || !Number.isFinite(max) || Math.abs(max) >= Number.MAX_SAFE_INTEGER ? ` ≥ ${min}` : ` ${min ?? "…"}–${max}`;
      return `${n.isInt ? "integer" : "number"}${range}`;
    }
    case "array":
      return "list";
    case "record":
    case "object":
      return "mapping";
    case "union":
      return (def.options ?? []).map((o) => typeText(o)).join(" or ");
    default:
      return def.type;
  }
}

/** What a missing key becomes: the app's default, `defaultText` meta, the schema's default, `(none)` or `(required)`. */
function defaultText(schema: z.ZodType, appDefault: { value: unknown } | undefined): string {
  const shown = (v: unknown) => `\`${typeof v === "string" ? v : JSON.stringify(v)}\``;
  if (appDefault) return shown(appDefault.value);
  const fixed = metaOf(schema)?.defaultText;
  if (typeof fixed === "string") return fixed;
  const r = schema.safeParse(undefined);
  if (!r.success) return "(required)";
  if (r.data === undefined) return "(none)";
  return shown(r.data);
}

function neutronText(use: NeutronOptionUse | undefined): string {
  if (!use) return "";
  const values = use.values ? ` (${valuesText(use)})` : "";
  return `\`${describeNeutronOption(use)}\`${values}`;
}

/** A Neutron option's accepted values: the aliases, the class paths only counted. */
function valuesText(use: NeutronOptionUse): string {
  const all = Object.keys(use.values ?? {});
  const aliases = all.filter((v) => !v.includes(".")).map((v) => (v === "" ? '`""`' : `\`${v}\``));
  const paths = all.length - aliases.length;
  return `${aliases.join(", ") || "none"}${paths > 0 ? `, and Neutron's class path${paths === 1 ? "" : "s"} for ${aliases.length === 1 ? "it" : "them"}` : ""}`;
}

function ownerText(owner: string): string {
  return owner === FRAMEWORK ? "the framework" : `\`${owner}\``;
}

function dedupe(targets: readonly NeutronTarget[]): NeutronTarget[] {
  const seen = new Set<string>();
  return targets.filter((t) => {
    const id = describeNeutronOption(t.use);
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
}

function row(cells: readonly string[]): string {
  return `| ${cells.map((c) => c.replaceAll("|", "\\|").replace(/\s*\n\s*/g, " ")).join(" | ")} |`;
}
