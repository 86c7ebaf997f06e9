import { ChainwardenError, type ChainwardenErrorOptions } from "@chainwarden/core";

export type OsloConfigErrorCode =
  /** A file oslo.config would refuse to parse (the line is named). */
  | "OSLO_CONFIG_PARSE"
  /** A `--config-file` that does not exist or cannot be read, a `--config-dir` that does not exist. */
  | "OSLO_CONFIG_UNREADABLE"
  /** A value its option's type refuses (`report_interval = soon`). */
  | "OSLO_CONFIG_VALUE"
  /** A `$name` a value refers to that is no option, or refers back to itself. */
  | "OSLO_CONFIG_INTERPOLATION";

/** Where a problem is: as much of file, line, section, option and value as is known. */
export interface OsloConfigLocation {
  readonly file?: string | undefined;
  /** 1-based. */
  readonly line?: number | undefined;
  /** The section as the file spells it (`agent`, `DEFAULT`). */
  readonly section?: string | undefined;
  readonly option?: string | undefined;
  /** The value as written (before `$name` interpolation). */
  readonly value?: string | undefined;
}

/**
 * A config file oslo.config would refuse, or a value its option's type refuses. The message names
 * the file and line, the section and option, and the value (`/etc/neutron/l3_agent.ini line 12:
 * [AGENT] report_interval = "soon": not a number`).
 */
export class OsloConfigError extends ChainwardenError<OsloConfigErrorCode> {
  readonly file: string | undefined;
  readonly line: number | undefined;
  readonly section: string | undefined;
  readonly option: string | undefined;
  readonly value: string | undefined;
  /** The reason alone, without the location (for a caller that formats the location itself). */
  readonly reason: string;

  constructor(code: OsloConfigErrorCode, reason: string, location: OsloConfigLocation = {}, options: ChainwardenErrorOptions = {}) {
    super(code, `${describeLocation(location)}${reason}`, options);
    this.file = location.file;
    this.line = location.line;
    this.section = location.section;
    this.option = location.option;
    this.value = location.value;
    this.reason = reason;
  }
}

/** `FILE line N: [SECTION] option = "value": ` (the parts that are known). */
export function describeLocation(location: OsloConfigLocation): string {
  const where = [location.file, location.line !== undefined ? `line ${location.line}` : undefined].filter((p) => p !== undefined).join(" ");
  const what =
    location.option !== undefined
      ? `[${location.section ?? "DEFAULT"}] ${location.option}${location.value !== undefined ? ` = ${JSON.stringify(location.value)}` : ""}`
      : location.section !== undefined
        ? `[${location.section}]`
        : "";
  const parts = [where, what].filter((p) => p !== "");
  return parts.length > 0 ? `${parts.join(": ")}: ` : "";
}
