import { InvalidChainNameError } from "./errors.js";

/**
 * Chain naming, as Neutron does it. The kernel allows 28 characters (XT_EXTENSION_MAXNAMELEN - 1 for
 * the terminating NUL is 29 on some builds; iptables itself enforces 28). Neutron keeps the agent's
 * wrap name to 16 characters so `<wrap>-POSTROUTING` fits, and cuts the own part of a wrapped chain to
 * 11 characters (`neutron-l3-agent-iv480daec7b`); an unwrapped chain is cut to 28.
 */
export const MAX_CHAIN_NAME_LENGTH = 28;
/** The longest wrap name (Neutron's `get_binary_name` cut). */
export const MAX_WRAP_NAME_LENGTH = 16;
/** The longest own part of a wrapped chain name; longer names are cut to it, as Neutron does. */
export const MAX_WRAPPED_PART_LENGTH = 11;

// Whitespace, quotes, `!`, and control characters can't be in a chain name that round-trips through
// iptables-restore; a leading `-` would be read as an option.
const SAFE_CHAIN = /^[A-Za-z0-9_.+@%:=,/-]+$/;

/** Neutron's `get_binary_name`: the agent's name cut to 16 characters, spaces replaced. */
export function wrapNameFor(binaryName: string): string {
  const base = binaryName.split("/").pop() ?? binaryName;
  const wrap = base.slice(0, MAX_WRAP_NAME_LENGTH).replace(/ /g, "_");
  validateChainName(wrap, "wrap name");
  return wrap;
}

/** Neutron's `get_chain_name`: the part of the name that is kept. */
export function cutChainName(name: string, wrap: boolean): string {
  return name.slice(0, wrap ? MAX_WRAPPED_PART_LENGTH : MAX_CHAIN_NAME_LENGTH);
}

/** The name the kernel sees. */
export function kernelChainName(wrapName: string, name: string, wrap: boolean): string {
  const cut = cutChainName(name, wrap);
  return wrap ? `${wrapName}-${cut}` : cut;
}

/** Throws `InvalidChainNameError` (naming `what` and the resource) for an empty name or one longer than the kernel allows. */
export function validateChainName(name: string, what = "chain name", resource?: string): void {
  const opts = resource === undefined ? {} : { resource };
  if (name.length === 0) throw new InvalidChainNameError(name, `${what} is empty`, opts);
  if (name.length > MAX_CHAIN_NAME_LENGTH)
    throw new InvalidChainNameError(name, `${what} is ${name.length} characters, the kernel allows ${MAX_CHAIN_NAME_LENGTH}`, opts);
  if (!SAFE_CHAIN.test(name) || name.startsWith("-"))
    throw new InvalidChainNameError(name, `${what} may only hold letters, digits and _ . + @ % : = , / - (not first)`, opts);
}
