import { AgentError } from "./agent-errors.js";
/**
 * Services one plugin offers another, as typed handles: `createServiceToken<T>({ id })` gives a value
 * that carries the service's type `T`. A plugin offers one in its register step
 * (`env.provide(token, value)`); a plugin registered after it takes it with `env.use(token)` (the
 * l3 plugin's settings, which FWaaS reads). Like extension points, the handle is recognised by
 * `$$type`, so two installed copies of this package agree on it.
 */
export interface ServiceToken<T> {
  readonly id: string;
  /** The injection token the service is registered under in the agent's container. */
  readonly token: symbol;
  readonly $$type: "@chainwarden/ServiceToken";
  /** Phantom field that carries `T`; never read at runtime. */
  readonly T?: T;
}

const ID = /^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)+$/;

/** A new service token; `id` looks like `plugin.name` (`l3-nat.settings`) and is unique per service. */
export function createServiceToken<T>(options: { id: string }): ServiceToken<T> {
  if (!ID.test(options.id)) throw new AgentError("PLUGIN_INVALID", `service id ${JSON.stringify(options.id)} must look like "plugin.name"`);
  return Object.freeze({ id: options.id, token: Symbol.for(`@chainwarden/service/${options.id}`), $$type: "@chainwarden/ServiceToken" as const });
}

/** Whether a value is a service token (from any installed copy of this package). */
export function isServiceToken(value: unknown): value is ServiceToken<unknown> {
  return typeof value === "object" && value !== null && (value as { $$type?: unknown }).$$type === "@chainwarden/ServiceToken";
}
