import { OsloConfig, readOsloConfigFiles, type OsloConfigEntry, type OsloConfigError, type OsloConfigSource, type OsloValue, type OsloValueSource } from "@chainwarden/oslo-config";
import { AgentError } from "./agent-errors.js";
import { toOsloOption, type NeutronOption, type NeutronOptionType, type NeutronValueOf } from "./neutron-option.js";

export type { OsloConfigSource as NeutronConfigSource, OsloValueSource as NeutronValueSource };

/** An option's value and where it was written (see `OsloValue`). */
export type NeutronValue<T extends NeutronOptionType> = OsloValue<NeutronValueOf<T>>;

/** Neutron config files that cannot be read or parsed: every one of them, each naming the file (and line). */
export class NeutronConfigError extends AgentError {
  constructor(readonly problems: readonly OsloConfigError[]) {
    super("NEUTRON_CONFIG_INVALID", `cannot read the Neutron config files (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n${problems.map((p) => `  - ${p.message}`).join("\n")}`);
  }
}

/**
 * The Neutron config files an agent was started with (`--config-file`, `--config-dir`), read as
 * oslo.config reads them. Any option can be asked for, by its declaration (`NeutronOption`): the
 * value the files give (a later file wins), else Neutron's default, with the line it came from.
 *
 * The agent reads the options it maps onto its own settings itself; a plugin reads others through
 * `env.neutron` (declare them in `settings.neutron.reads`, so they are checked at start and not
 * reported as unused). With no files, every option has Neutron's default.
 */
export class NeutronConfig {
  /** No files: every option at Neutron's default. */
  static readonly none: NeutronConfig = new NeutronConfig(new OsloConfig([]));

  /** The files read, in order (a later file wins). */
  readonly files: readonly string[];

  private constructor(private readonly oslo: OsloConfig) {
    this.files = oslo.files;
  }

  /**
   * Reads the files and directories in command-line order.
   * @param options options a `$name` in a value may refer to (`state_path`, ...), besides those
   *   asked for later.
   * @throws NeutronConfigError listing every file that cannot be read or parsed.
   */
  static read(sources: readonly OsloConfigSource[], options: readonly NeutronOption[] = []): NeutronConfig {
    const { files, problems } = readOsloConfigFiles(sources);
    if (problems.length > 0) throw new NeutronConfigError(problems);
    return new NeutronConfig(new OsloConfig(files, options.map(toOsloOption)));
  }

  /**
   * An option's value: `value` (undefined where Neutron has none), `source` (the line that set it;
   * undefined for Neutron's default) and `sources` (every line it depends on, `$name`s included).
   * @throws OsloConfigError (`OSLO_CONFIG_VALUE`, `OSLO_CONFIG_INTERPOLATION`) naming the file,
   *   line, section, option and value.
   */
  get<T extends NeutronOptionType>(option: NeutronOption<T>): NeutronValue<T> {
    // Once asked for, an option is one that `$name` can name.
    const oslo = toOsloOption(option);
    this.oslo.register(oslo);
    return this.oslo.get(oslo);
  }

  /** Makes options ones a `$name` can refer to before they are asked for. */
  register(options: readonly NeutronOption[]): void {
    for (const option of options) this.oslo.register(toOsloOption(option));
  }

  /** Every assignment in the files, in order. */
  entries(): OsloConfigEntry[] {
    return this.oslo.entries();
  }

  /** Whether an assignment is one of the option's names. */
  static isEntryOf(option: NeutronOption, entry: Pick<OsloConfigEntry, "section" | "key">): boolean {
    return OsloConfig.isEntryOf(toOsloOption(option), entry);
  }
}

/** `NeutronConfig.read`: the files and directories in command-line order. */
export function neutronConfig(sources: readonly OsloConfigSource[], options: readonly NeutronOption[] = []): NeutronConfig {
  return NeutronConfig.read(sources, options);
}
