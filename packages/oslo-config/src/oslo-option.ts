import type { OsloType } from "./oslo-types.js";

/**
 * An option as oslo.config registers it: its group, name, type and default. Options are looked up
 * in the files by group and name; one is read whether or not it was registered anywhere, but only
 * registered ones can be named by `$name` in another value (as in oslo.config).
 */
export interface OsloOption<V> {
  /** `DEFAULT`, or the group as the program registers it (`AGENT`, `oslo_messaging_rabbit`). */
  readonly group: string;
  /** As registered; in a file it is spelled with `_` for `-` (oslo.config's `dest`). */
  readonly name: string;
  readonly type: OsloType<V>;
  /**
   * The value when no file sets it. Text is interpolated and parsed as a file's value would be
   * (`$state_path/metadata_proxy`); anything else is the value itself.
   */
  readonly default?: V | string | undefined;
  /** Older names still read (oslo.config's `deprecated_opts`); a missing group is the option's own. */
  readonly deprecatedNames?: readonly { readonly group?: string; readonly name?: string }[];
}

/** Gives an option literal its type. */
export function osloOption<V>(option: OsloOption<V>): OsloOption<V> {
  return option;
}

/** The name an option has in a file (`-` → `_`). */
export function fileKey(name: string): string {
  return name.replaceAll("-", "_");
}

/** oslo.config's `_normalize_group_name`: sections match case-insensitively, except `DEFAULT`, which is only `DEFAULT`. */
export function normalizeGroup(group: string): string {
  return group === "DEFAULT" ? group : group.toLowerCase();
}

/** Every (group, key) an option is read from in a file, in the order oslo.config tries them. */
export function optionKeys(option: Pick<OsloOption<unknown>, "group" | "name" | "deprecatedNames">): { group: string; key: string }[] {
  const key = fileKey(option.name);
  const keys = [{ group: option.group, key }];
  const dashed: { group: string; key: string }[] = [];
  for (const deprecated of option.deprecatedNames ?? []) {
    if (deprecated.group === undefined && deprecated.name === undefined) continue;
    const group = deprecated.group ?? option.group;
    keys.push({ group, key: deprecated.name ?? key });
    // oslo.config also reads a deprecated name with `-` spelled with `_`, after the others.
    if (deprecated.name?.includes("-")) dashed.push({ group, key: fileKey(deprecated.name) });
  }
  return [...keys, ...dashed];
}
