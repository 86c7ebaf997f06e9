/**
 * What the loop reads off the errors handlers and the core throw: their code, the resources they
 * name, and the fields worth a log line. Errors from plugins are plain objects as often as
 * `ChainwardenError`s, so everything here reads fields by name and never assumes a class.
 */

export function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

export function errorCode(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" ? code : undefined;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** How deep along `cause` to look: far enough for wrapped errors, bounded against cycles. */
const CAUSE_DEPTH = 8;

/** The resources an error names (`resources`, else `resource`, as `kind/id`), along its `cause` chain. */
export function resourcesOf(err: unknown): string[] {
  const out: string[] = [];
  for (let e: unknown = err, depth = 0; typeof e === "object" && e !== null && depth < CAUSE_DEPTH; e = (e as { cause?: unknown }).cause, depth++) {
    const { resources, resource } = e as { resources?: unknown; resource?: unknown };
    if (Array.isArray(resources)) out.push(...resources.filter((r): r is string => typeof r === "string"));
    else if (typeof resource === "string") out.push(resource);
  }
  return out;
}

const LOGGED_FIELDS = ["code", "resource", "resources", "line", "lineText", "chain", "table", "exitCode", "plugin"] as const;

/**
 * The fields of an error worth a log line. Typed errors (with a `code`) give their fields (code,
 * resource, line, context, ...) and the first line of their message; anything else (a handler's
 * bug) is logged whole, stack included. `namespace` is left to the caller's logger bindings.
 */
export function errorFields(err: unknown): Record<string, unknown> {
  if (typeof err !== "object" || err === null) return { error: String(err) };
  const e = err as Record<string, unknown>;
  if (typeof e.code !== "string") return { err };
  const out: Record<string, unknown> = { error: String(e.message ?? "").split("\n")[0], type: e.name };
  for (const k of LOGGED_FIELDS) if (e[k] !== undefined) out[k] = e[k];
  if (typeof e.stderr === "string" && e.stderr) out.stderr = e.stderr.trim();
  if (Array.isArray(e.context) && e.context.length > 0) {
    out.context = (e.context as { number: number; text: string; failing: boolean }[]).map((c) => `${c.failing ? ">" : " "}${c.number}: ${c.text}`);
  }
  return out;
}
