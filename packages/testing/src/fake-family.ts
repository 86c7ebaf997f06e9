import type { Backend } from "@chainwarden/core";
import { FakeTable } from "./fake-table.js";

/**
 * iptables-nft-save prints the tables it finds in this fixed order, whatever order they were
 * created in (probed: creating nat, filter, raw, security, mangle one by one, or all in one input
 * in any order, always prints mangle, security, raw, filter, nat).
 */
const NFT_TABLE_ORDER: readonly string[] = ["mangle", "security", "raw", "filter", "nat"];

/**
 * The tables of one (namespace, IP family) in the fake kernel.
 *
 * Which tables exist, and the order `*-save` prints them in, differs by backend (probed on 1.8.9):
 * - legacy: a table is registered in the namespace the first time any tool touches it (an
 *   `iptables-restore` reaching its `*table` line, even if the input then fails; `iptables-save -t
 *   T`; `iptables -t T -S`). It never goes away. `iptables-legacy-save` prints the newest first.
 * - nft: a table exists once a committed restore block names one of its chains (or declares one);
 *   an empty `*raw` / `COMMIT` block, or `-F`/`-X`/`-Z` without a chain, creates nothing. It stays
 *   when its chains are deleted. The print order is fixed (see NFT_TABLE_ORDER).
 * A fresh namespace prints nothing on either backend.
 */
export class FakeFamily {
  readonly tables = new Map<string, FakeTable>();
  /** Legacy registration order, newest first. */
  private registration: string[] = [];

  /** Legacy: makes the table exist (fresh) if it does not. */
  register(name: string): void {
    if (this.tables.has(name)) return;
    this.tables.set(name, FakeTable.fresh(name));
    this.registration.unshift(name);
  }

  /** Stores a table; a table new to the namespace counts as registered now. */
  put(table: FakeTable): void {
    if (!this.tables.has(table.name)) this.registration.unshift(table.name);
    this.tables.set(table.name, table);
  }

  /** Seeding: the given tables become the newest, in the given print order. */
  putInPrintOrder(tables: readonly FakeTable[]): void {
    const names = tables.map((t) => t.name);
    this.registration = [...names, ...this.registration.filter((n) => !names.includes(n))];
    for (const t of tables) this.tables.set(t.name, t);
  }

  /** The tables in the order `*-save` prints them for the backend. */
  ordered(variant: Backend): FakeTable[] {
    const names = variant === "nft" ? NFT_TABLE_ORDER.filter((n) => this.tables.has(n)) : this.registration;
    return names.map((n) => this.tables.get(n)).filter((t): t is FakeTable => t !== undefined);
  }
}
