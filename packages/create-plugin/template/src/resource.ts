import type { ParsedResources, Problem, StateDocument } from "@chainwarden/agent";
import { z } from "zod";

/**
 * One `{{KIND}}` resource: accept traffic from `sources` in the IPv4 filter table of `namespace`
 * (a chain of its own, jumped to from the agent's wrapped INPUT). Everything that reaches a rule is
 * validated here: an id and addresses of a strict shape, never free text.
 */
export interface {{RESOURCE_TYPE}}Resource {
  id: string;
  namespace: string;
  sources: string[];
  /** Set on the stand-in of an invalid resource (the agent holds it: keep what the kernel has). */
  standIn?: boolean;
}

const resourceSchema = z.strictObject({
  // Short: the chain is `{{CHAIN_PREFIX}}-<id>` behind the wrap name (iptables allows 28 characters in all).
  id: z.string().regex(/^[a-z0-9]{1,7}$/, "1–7 lower-case letters or digits"),
  namespace: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, "a network namespace name"),
  sources: z.array(z.union([z.ipv4(), z.cidrv4()])).max(1000),
});

/** The state key this plugin reads: `{{STATE_KEY}}: [{ id, namespace, sources }]`. */
export const STATE_KEY = "{{STATE_KEY}}";

/** What can be read of an invalid entry to keep what the kernel has for it. */
const standInSchema = resourceSchema.pick({ id: true, namespace: true });

/**
 * Parses a state document's `{{STATE_KEY}}`; a bad entry is a problem of that resource only. An
 * invalid entry whose id and namespace read cleanly also gets a stand-in in `held`, so that after a
 * restart (no last good version in the process) the handler keeps the chain the kernel has for it
 * instead of removing it. One whose id cannot be read names no resource: the kind's input is then
 * incomplete, and nothing of it is removed until a complete state arrives.
 */
export function parse{{RESOURCE_TYPE}}Input(document: StateDocument, origin: string): ParsedResources<{{RESOURCE_TYPE}}Resource> {
  const resources = new Map<string, {{RESOURCE_TYPE}}Resource>();
  const held = new Map<string, {{RESOURCE_TYPE}}Resource>();
  const problems: Problem[] = [];
  const raw = document[STATE_KEY];
  if (raw === undefined) return { resources, problems };
  if (!Array.isArray(raw)) return { resources, problems: [{ source: origin, path: STATE_KEY, message: "expected an array" }] };
  raw.forEach((entry, i) => {
    const r = resourceSchema.safeParse(entry);
    if (r.success) {
      resources.set(r.data.id, r.data);
      return;
    }
    const message = r.error.issues.map((x) => `${x.path.join(".")}: ${x.message}`).join("; ");
    const standIn = standInSchema.safeParse({ id: (entry as { id?: unknown } | null)?.id, namespace: (entry as { namespace?: unknown } | null)?.namespace });
    const id = resourceSchema.shape.id.safeParse((entry as { id?: unknown } | null)?.id);
    problems.push({ source: origin, path: `${STATE_KEY}.${i}`, message, ...(id.success ? { resource: id.data } : {}) });
    if (standIn.success) held.set(standIn.data.id, { ...standIn.data, sources: [], standIn: true });
  });
  return { resources, problems, held };
}
