import type { DependencyContainer } from "tsyringe";
import type { Logger } from "pino";
import type { z } from "zod";
import type { ExtensionPoint } from "./extension-point.js";
import type { AgentConfig } from "./config-schema.js";

/**
 * A plugin: a value with a name, the framework versions it was built for, an options schema, and a
 * register step. `register` runs once, before the agent starts; there it adds providers to the
 * agent's own container and extensions to extension points. Nothing is registered anywhere else:
 * each agent has its own container, and tsyringe's global container is never used.
 */
export interface AgentPlugin<TOptions = Record<string, never>> {
  /** Unique within an agent; kebab-case. */
  readonly name: string;
  /** The plugin's own version. */
  readonly version: string;
  /** semver range of `@chainwarden/agent` the plugin was built against, e.g. `^0.1.0`. */
  readonly framework: string;
  /** Validates the plugin's options; unknown keys must be rejected (use `z.strictObject`). */
  readonly options?: z.ZodType<TOptions>;
  register(env: PluginEnvironment<TOptions>): void | Promise<void>;
}

/** What a plugin sees while it registers. */
export interface PluginEnvironment<TOptions> {
  /** The plugin's name (for messages). */
  readonly plugin: string;
  readonly options: TOptions;
  /** The agent's validated configuration. */
  readonly config: AgentConfig;
  /** A child logger bound to `{ plugin }`. */
  readonly logger: Logger;
  /** The agent's own container: register providers here (`env.container.register(token, ...)`). */
  readonly container: DependencyContainer;
  addExtension<T>(point: ExtensionPoint<T>, extension: T): void;
}

/** Identity helper that gives a plugin literal its types. */
export function createPlugin<TOptions = Record<string, never>>(plugin: AgentPlugin<TOptions>): AgentPlugin<TOptions> {
  return plugin;
}
