import {
  booleanType,
  floatType,
  integerType,
  listType,
  multiType,
  portType,
  stringType,
  type OsloOption,
  type OsloType,
} from "@chainwarden/oslo-config";

/** oslo.config's option types, by the name Neutron's code gives them (`cfg.PortOpt` is `port`). */
export type NeutronOptionType = "string" | "boolean" | "integer" | "float" | "port" | "list" | "multi_string";

/** The value an option of a type has. */
export type NeutronValueOf<T extends NeutronOptionType> = T extends "boolean"
  ? boolean
  : T extends "integer" | "float" | "port"
    ? number
    : T extends "list" | "multi_string"
      ? string[]
      : string;

/**
 * One of Neutron's options as Neutron registers it (`neutron/conf/...`, oslo.messaging, oslo.log):
 * its section, name, type and default. The files are read as oslo.config reads them
 * (`@chainwarden/oslo-config`): `[agent]` is `[AGENT]`, but `DEFAULT` is only `[DEFAULT]`.
 */
export interface NeutronOption<T extends NeutronOptionType = NeutronOptionType> {
  /** `DEFAULT`, or the group as Neutron registers it: `AGENT`, `SECURITYGROUP`, `oslo_messaging_rabbit`. */
  readonly section: string;
  readonly option: string;
  readonly type: T;
  /**
   * Neutron's default, for `$name` in other values and for `neutronRpcConfig`. Text is read as a
   * file's value would be, interpolation included (`$state_path/metadata_proxy`).
   */
  readonly default?: NeutronValueOf<T> | string;
  /** Older names Neutron still reads (oslo.config's `deprecated_name` / `deprecated_group`). */
  readonly deprecatedNames?: readonly { readonly section?: string; readonly option?: string }[];
}

/**
 * A Neutron option an agent reads, and what it accepts. Declared on a plugin's settings
 * (`settings.neutron`) or by the framework; the agent reads it from `--config-file` /
 * `--config-dir`, below the YAML config and the flags.
 */
export interface NeutronOptionUse<T extends NeutronOptionType = NeutronOptionType> extends NeutronOption<T> {
  /**
   * The values this agent supports, spelled as Neutron accepts them (aliases and class paths), each
   * with the value it becomes here: `{ linuxbridge: "linuxbridge",
   * "neutron.agent.linux.interface.BridgeInterfaceDriver": "linuxbridge" }`. Any other value is
   * refused, naming the file, line, section, option and value. Keys are the text of the value
   * (`true`/`false` for a boolean); for a list, each item is looked up. Absent: every value of the
   * type, as it is.
   */
  readonly values?: Readonly<Record<string, unknown>>;
  /** Why a value outside `values` is refused (`DVR is not implemented`), for the error. */
  readonly unsupported?: string;
  /** Neutron's value (after `values`) → ours; `undefined` leaves ours at its own default. */
  readonly convert?: (value: any) => unknown;
}

/** Gives an option literal its type. */
export function neutronOption<T extends NeutronOptionType>(option: NeutronOption<T>): NeutronOption<T> {
  return option;
}

const TYPES: Record<NeutronOptionType, () => OsloType<unknown>> = {
  string: () => stringType(),
  boolean: () => booleanType(),
  integer: () => integerType(),
  float: () => floatType(),
  port: () => portType(),
  list: () => listType(),
  multi_string: () => multiType(),
};

const osloOptions = new WeakMap<NeutronOption, OsloOption<unknown>>();

/** The oslo.config option a Neutron option is (one per declaration). */
export function toOsloOption<T extends NeutronOptionType>(option: NeutronOption<T>): OsloOption<NeutronValueOf<T>> {
  let oslo = osloOptions.get(option);
  if (!oslo) {
    oslo = {
      group: option.section,
      name: option.option,
      type: TYPES[option.type](),
      default: option.default,
      deprecatedNames: option.deprecatedNames?.map((d) => ({ group: d.section, name: d.option })),
    };
    osloOptions.set(option, oslo);
  }
  return oslo as OsloOption<NeutronValueOf<T>>;
}

/** `[SECTION] option`, as messages name an option. */
export function describeNeutronOption(option: Pick<NeutronOption, "section" | "option">): string {
  return `[${option.section}] ${option.option}`;
}
