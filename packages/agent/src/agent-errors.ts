import { ChainwardenError, type ChainwardenErrorOptions } from "@chainwarden/core";

/**
 * The `code` of the agent's errors, stable for callers and the CLI's exit codes
 * (`EXIT_CODE_BY_ERROR`): `PLUGIN_*` and `CONFIG_INVALID` are the operator's to fix (exit 2);
 * `MANAGER_CONFLICT` is a handler asking for a manager the namespace's wrap name does not have.
 */
export type AgentErrorCode =
  | "AGENT_STATE"
  | "MANAGER_CONFLICT"
  | "PLUGIN_INVALID"
  | "PLUGIN_DUPLICATE"
  | "PLUGIN_INCOMPATIBLE"
  | "PLUGIN_OPTIONS"
  | "PLUGIN_LOAD"
  | "PLUGIN_REGISTER"
  | "EXTENSION_POINT_CLOSED"
  | "CONFIG_INVALID"
  | "NEUTRON_CONFIG_INVALID"
  | "STATE_INVALID";

/** Base of the agent's errors (a `ChainwardenError`): a stable `code` and, where one is to blame, the plugin. */
export class AgentError extends ChainwardenError<AgentErrorCode> {
  constructor(
    code: AgentErrorCode,
    message: string,
    readonly plugin?: string,
    options: ChainwardenErrorOptions = {},
  ) {
    super(code, message, options);
  }
}

export class PluginError extends AgentError {}

/** An extension added after the agent started. */
export class ExtensionPointClosedError extends AgentError {
  constructor(pointId: string, plugin: string) {
    super("EXTENSION_POINT_CLOSED", `plugin ${plugin} added an extension to ${pointId} after the agent started; extensions must be added in register()`, plugin);
  }
}

/** One problem in a config or state file: where and what. */
export interface Problem {
  /** File, or "--flag", or "defaults". */
  source: string;
  /** Dotted path of the field (`plugins.0.options.level`, `routers.r1.gw_port.fixed_ips.0.ip_address`). */
  path: string;
  message: string;
  /** The resource (router id, port id, ...) when the problem is in one. */
  resource?: string;
}

/** Problems one per line, `  - <source> <path> (<resource>): <message>`, for messages and stderr. */
export function formatProblems(problems: readonly Problem[]): string {
  return problems.map((p) => `  - ${p.source}${p.path ? ` ${p.path}` : ""}${p.resource ? ` (${p.resource})` : ""}: ${p.message}`).join("\n");
}

export class ConfigError extends AgentError {
  constructor(readonly problems: readonly Problem[]) {
    super("CONFIG_INVALID", `invalid configuration (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n${formatProblems(problems)}`);
  }
}

export { ChainwardenError };
