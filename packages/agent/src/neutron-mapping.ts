/**
 * Neutron's files onto the agent's configuration: each declared option (`NeutronTarget`) the files
 * set becomes the value of its config key or plugin option, one layer below the `--config` file and
 * the flags. What is refused, each a problem naming the file, the section and option as written, the
 * value and its line (the CLI lists them all and exits 2):
 * - a value outside the option's `values` (`[DEFAULT] interface_driver = openvswitch`), also for
 *   options that are only checked (`[DEFAULT] agent_mode = dvr`);
 * - a value the target's schema refuses (`[DEFAULT] metadata_port = 0`);
 * - a value oslo.config would refuse (wrong type, a `$name` that is no option).
 * A refused value of an option that sets a config key or plugin option is no problem when the
 * `--config` file or a flag sets that key (`overridable`): the higher layer wins, as it would over a
 * supported value. So the l2 agent takes the `linuxbridge_agent.ini` of a neutron-linuxbridge-agent
 * that runs beside it with `firewall_driver = noop`, given `--firewall-driver iptables`.
 * An option no file sets (nor a `$name` in its default) is left alone: our default stands, which is
 * not always Neutron's (documented per option). Assignments no declaration reads are `unused`.
 */
import { OsloConfigError, type OsloConfigEntry } from "@chainwarden/oslo-config";
import type { Problem } from "./agent-errors.js";
import type { NeutronTarget } from "./agent-config.js";
import { NeutronConfig, type NeutronValueSource } from "./neutron-config.js";

/** One value a Neutron option gave the configuration. */
export interface NeutronTaken {
  /** `metadata_port`, or `plugin_options.l3-nat.interface_driver`. */
  readonly path: string;
  readonly value: unknown;
  /** The line that set it (for a default interpolating a set value, that value's line). */
  readonly source: NeutronValueSource;
}

/** What Neutron's files give the configuration. */
export interface NeutronLayer {
  /** By config key; plugin options under `plugin_options.<plugin>.<option>`. */
  readonly values: Record<string, unknown>;
  readonly taken: readonly NeutronTaken[];
  readonly problems: readonly Problem[];
  /** Those of `problems` a higher layer makes moot: each with the config path its option sets. */
  readonly overridable?: readonly { readonly path: string; readonly problem: Problem }[];
  /** Assignments in the files that nothing the agent declares reads. */
  readonly unused: readonly OsloConfigEntry[];
}

/**
 * The layer Neutron's files give the configuration: the values of the declared options (`targets`)
 * they set, the problems (refused values, each naming its file and line), and what nothing reads.
 */
export function mapNeutronConfig(neutron: NeutronConfig, targets: readonly NeutronTarget[]): NeutronLayer {
  // Every declared option may be named by a `$name` in another one's value.
  neutron.register(targets.map((t) => t.use));
  const values: Record<string, unknown> = {};
  const taken: NeutronTaken[] = [];
  const problems: Problem[] = [];
  const overridable: { path: string; problem: Problem }[] = [];
  for (const target of targets) {
    const { use } = target;
    let read;
    try {
      read = neutron.get(use);
    } catch (err) {
      if (!(err instanceof OsloConfigError)) throw err;
      problems.push({ source: err.file ?? "Neutron config", path: `[${err.section ?? use.section}] ${err.option ?? use.option}`, message: withLine(`${valueText(err.value)}${err.reason}`, err.line) });
      continue;
    }
    // Neutron's default through and through: ours stands.
    if (read.sources.length === 0 || read.value === undefined) continue;
    const source = read.source ?? read.sources[0]!;
    const where = { source: source.file, path: `[${source.section}] ${source.option}` };
    const path = target.key ?? (target.pluginOption ? `plugin_options.${target.pluginOption.plugin}.${target.pluginOption.option}` : undefined);
    const refuse = (problem: Problem) => {
      problems.push(problem);
      if (path !== undefined) overridable.push({ path, problem });
    };
    const shown = read.source ? JSON.stringify(read.source.value) : `its default ${JSON.stringify(String(use.default))} with ${describeNeutronSource(read.sources[0]!)}`;

    let mapped: unknown = read.value;
    if (use.values) {
      const table = use.values;
      const items: unknown[] = Array.isArray(read.value) ? read.value : [read.value];
      const refused = items.filter((item) => !Object.hasOwn(table, String(item)));
      if (refused.length > 0) {
        const what = Array.isArray(read.value) ? `${refused.map((r) => JSON.stringify(String(r))).join(", ")} in ${shown}` : shown;
        const supported = Object.keys(table);
        refuse({
          ...where,
          message: withLine(`${what} is not supported${use.unsupported ? `: ${use.unsupported}` : ""} (${supported.length > 0 ? `supported: ${supported.join(", ")}` : "none is"})`, source.line),
        });
        continue;
      }
      mapped = Array.isArray(read.value) ? items.map((item) => table[String(item)]) : table[String(read.value)];
    }
    if (use.convert) mapped = use.convert(mapped);
    if (path === undefined || mapped === undefined) continue;
    if (target.schema) {
      const checked = target.schema.safeParse(mapped);
      if (!checked.success) {
        const reasons = checked.error.issues.map((i) => i.message).join("; ");
        refuse({ ...where, message: withLine(`${shown} is not valid for ${path}: ${reasons}`, source.line) });
        continue;
      }
    }
    if (target.key !== undefined) values[target.key] = mapped;
    else if (target.pluginOption) {
      const all = (values.plugin_options ??= {}) as Record<string, Record<string, unknown>>;
      (all[target.pluginOption.plugin] ??= {})[target.pluginOption.option] = mapped;
    }
    taken.push({ path, value: mapped, source });
  }
  const unused = neutron.entries().filter((entry) => !targets.some((t) => NeutronConfig.isEntryOf(t.use, entry)));
  // Two plugins (or a plugin and the framework) may read one option: its trouble is one problem.
  const seen = new Set<string>();
  const distinct = problems.filter((p) => {
    const key = JSON.stringify([p.source, p.path, p.message]);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  return { values, taken, problems: distinct, overridable, unused };
}

/** `FILE [SECTION] option (line N)`. */
export function describeNeutronSource(source: NeutronValueSource): string {
  return `${source.file} [${source.section}] ${source.option} (line ${source.line})`;
}

function withLine(message: string, line: number | undefined): string {
  return line === undefined ? message : `${message} (line ${line})`;
}

function valueText(value: string | undefined): string {
  return value === undefined ? "" : `${JSON.stringify(value)}: `;
}
