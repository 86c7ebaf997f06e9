import { AgentError } from "./agent-errors.js";
/**
 * Extension points are typed handles, not strings: `createExtensionPoint<T>({ id })` gives a value
 * that carries the type `T` of its extensions and a unique injection token. Plugins add extensions
 * in their register step (`env.addExtension(point, value)`); the agent resolves them all with
 * `agent.extensions(point)`. The set is closed when the agent starts: a late `addExtension` throws.
 *
 * The handle is recognised by `$$type` rather than `instanceof`, so it still works when two copies
 * of this package are installed (a third-party plugin bringing its own).
 */
export interface ExtensionPoint<T> {
  readonly id: string;
  /** The injection token extensions are registered under in the agent's container. */
  readonly token: symbol;
  readonly $$type: "@chainwarden/ExtensionPoint";
  /** Phantom field that carries `T`; never read at runtime. */
  readonly T?: T;
}

const ID = /^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)+$/;

/** A new extension point; `id` looks like `plugin.name` (`l3-nat.router-extension`) and is unique per point. */
export function createExtensionPoint<T>(options: { id: string }): ExtensionPoint<T> {
  if (!ID.test(options.id)) throw new AgentError("PLUGIN_INVALID", `extension point id ${JSON.stringify(options.id)} must look like "plugin.name"`);
  return Object.freeze({ id: options.id, token: Symbol.for(`@chainwarden/extension-point/${options.id}`), $$type: "@chainwarden/ExtensionPoint" as const });
}

/** Whether a value is an extension point (from any installed copy of this package). */
export function isExtensionPoint(value: unknown): value is ExtensionPoint<unknown> {
  return typeof value === "object" && value !== null && (value as { $$type?: unknown }).$$type === "@chainwarden/ExtensionPoint";
}
