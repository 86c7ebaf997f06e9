import { L3NatError } from "./l3-nat-errors.js";
/** Neutron's `ADDRESS_SCOPE_MARK_MASK`: address scopes use the upper 16 bits of the fwmark. */
export const ADDRESS_SCOPE_MARK_MASK = "0xffff0000";
const MARK_ID_MIN = 1024;
const MARK_ID_MAX = 2048;
/** The scope of ports without one (Neutron's `DEFAULT_ADDRESS_SCOPE`). */
export const DEFAULT_ADDRESS_SCOPE = "noscope";

/**
 * The fwmark of each address scope a router has seen, Neutron's `get_address_scope_mark_mask`: ids
 * from 1024 up, in the order scopes are first asked for, the default scope first (so it is always
 * `0x4000000/0xffff0000`), never reused while the router lives. The order of first use is part of the
 * rule text, so callers ask in Neutron's order (see `RouterRules`).
 */
export class AddressScopeMarks {
  private readonly ids = new Map<string, number>();
  private next = MARK_ID_MIN;

  constructor() {
    this.allocate(DEFAULT_ADDRESS_SCOPE);
  }

  /** `0x<id << 16>/0xffff0000`; a null or empty scope is the default one. */
  markFor(scope: string | null | undefined): string {
    const key = scope ? scope : DEFAULT_ADDRESS_SCOPE;
    const id = this.ids.get(key) ?? this.allocate(key);
    return `0x${(id << 16).toString(16)}/${ADDRESS_SCOPE_MARK_MASK}`;
  }

  /** A copy, for dry runs that must not allocate on the live router. */
  clone(): AddressScopeMarks {
    const copy = new AddressScopeMarks();
    copy.ids.clear();
    for (const [k, v] of this.ids) copy.ids.set(k, v);
    copy.next = this.next;
    return copy;
  }

  private allocate(scope: string): number {
    // Neutron raises KeyError from set.pop() here; 1024 scopes on one router is not a real case.
    if (this.next >= MARK_ID_MAX) throw new L3NatError("ADDRESS_SCOPES_EXHAUSTED", `router has more than ${MARK_ID_MAX - MARK_ID_MIN} address scopes`);
    const id = this.next++;
    this.ids.set(scope, id);
    return id;
  }
}
