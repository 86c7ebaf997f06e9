/**
 * Small shared pieces of input validation: the identifier and device-name shapes that may flow into
 * chain names, interface matches, ipset names and comments, and a collector for field-level issues.
 */
import { misspelledKeys } from "@chainwarden/agent";
import { z } from "zod";

/**
 * Neutron ids (ports, networks, security groups, address groups) are UUIDs; we accept any id made of
 * characters that are safe in every place an id can end up: chain names, bridge names (`brq` + id),
 * ipset names, `conntrack` arguments and rule comments.
 */
export const NEUTRON_ID = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$/;
export const NEUTRON_ID_MESSAGE = "expected an id of letters, digits, _ . - (not first), at most 255 characters";

/**
 * Device names go into `--physdev-in/--physdev-out` and `-i`: no `+` (the iptables wildcard), no
 * leading `-` (it would read as an option), no spaces, quotes or line breaks.
 */
export const DEVICE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

export const idSchema = z.string().regex(NEUTRON_ID, NEUTRON_ID_MESSAGE);

/** One validation finding: the path below the object being validated, and what is wrong. */
export interface Issue {
  readonly path: readonly (string | number)[];
  readonly message: string;
}

export function zodIssues(error: z.ZodError, prefix: readonly (string | number)[] = []): Issue[] {
  return error.issues.map((i) => ({ path: [...prefix, ...i.path.map((p) => (typeof p === "symbol" ? String(p) : p))], message: i.message }));
}

export function joinPath(path: readonly (string | number)[]): string {
  return path.map(String).join(".");
}

/** Describes a value in a message without echoing unbounded input. */
export function describe(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** A non-negative integer given as a number or a decimal string (YAML users write either). */
export const integerSchema = z.union([
  z.number().int("expected an integer"),
  z
    .string()
    .regex(/^(?:0|[1-9][0-9]{0,9})$/, "expected an integer")
    .transform(Number),
]);

/**
 * Keys of a Neutron dict that look like a typo of a key we read that is missing
 * (`mac_adress`): an issue each. A server sends many keys we do not read; those are accepted.
 */
export function misspelledIssues(value: unknown, shape: z.ZodObject, prefix: readonly (string | number)[] = []): Issue[] {
  return misspelledKeys(value, Object.keys(shape.shape)).map((m) => ({ path: [...prefix, m.key], message: m.message }));
}
