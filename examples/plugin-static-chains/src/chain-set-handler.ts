import type { IptablesManager } from "@chainwarden/core";
import type { ReconcileContext, ReconcileRequest, ResourceHandler, StateDocument } from "@chainwarden/agent";
import { chainName, parseChainSets, resourceName, type ChainSet } from "./chain-set.js";

const JUMP_TAG = "chain-set-jump";

/**
 * The `chain_set` resource handler. Per set it programs one wrapped IPv4 filter chain `cs-<id>`
 * holding the set's rules, and a jump to it from the wrapped INPUT chain. Jumps are kept in id
 * order, so a full pass after any sequence of partial ones asks for the same layout (nothing sent).
 */
export class ChainSetHandler implements ResourceHandler<ChainSet> {
  readonly kind = "chain_set";
  /** The state document's key this handler reads. */
  readonly documentKeys = ["chain_sets"];
  /** The sets this handler put into each manager (a manager is one namespace, kept between passes). */
  private readonly programmed = new WeakMap<IptablesManager, Set<string>>();

  parse(document: StateDocument, origin: string) {
    return parseChainSets(document, origin);
  }

  namespaceOf(set: ChainSet): string | undefined {
    return set.namespace;
  }

  async reconcile(context: ReconcileContext, request: ReconcileRequest<ChainSet>): Promise<void> {
    const manager = context.manager();
    const filter = manager.table(4, "filter");
    let programmed = this.programmed.get(manager);
    if (!programmed) this.programmed.set(manager, (programmed = new Set()));

    // A full pass rebuilds: whatever we programmed that is no longer desired goes.
    const stale = request.full ? [...programmed].filter((id) => !request.desired.has(id)) : [...request.removed.keys()];
    for (const id of stale) {
      filter.removeChain(chainName(id)); // also removes the jump from INPUT
      programmed.delete(id);
    }

    const toProgram = request.full ? [...request.desired.keys()] : [...request.changed].filter((id) => request.desired.has(id));
    for (const id of toProgram) {
      const set = request.desired.get(id)!;
      const resource = resourceName(id);
      // Removing first drops the old rules; re-adding the same ones is no change for the applier,
      // which diffs against the kernel and sends only the difference.
      filter.removeChain(chainName(id));
      filter.addChain(chainName(id), { resource });
      for (const rule of set.rules) filter.addRule(chainName(id), rule, { resource });
      programmed.add(id);
    }

    filter.clearRulesByTag(JUMP_TAG);
    for (const id of [...request.desired.keys()].sort()) {
      filter.addRule("INPUT", `-j $${chainName(id)}`, { tag: JUMP_TAG, resource: resourceName(id) });
    }
    context.logger.debug({ namespace: context.namespace, sets: request.desired.size, programmed: toProgram.length, removed: stale.length }, "chain sets reconciled");
  }
}
