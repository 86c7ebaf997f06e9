import type { IptablesManager } from "@chainwarden/core";
import type { ReconcileContext, ReconcileRequest, ResourceHandler, StateDocument } from "@chainwarden/agent";
import { chainName, parseChainSets, resourceName, type ChainSet } from "./chain-set.js";

const JUMP_TAG = "chain-set-jump";

/**
 * The `chain_set` resource handler. Per set it programs one wrapped IPv4 filter chain `cs-<id>`
 * holding the set's rules, and a jump to it from the wrapped INPUT chain. Jumps are kept in id
 * order, so a full pass after any sequence of partial ones asks for the same layout (nothing sent).
 *
 * Bad input removes nothing: a held set (`request.held`: its input is invalid and this process
 * never had a good version, or its apply failed) keeps the chain the kernel has for it, and while
 * the input is incomplete (`request.complete` false) every `cs-` chain the kernel has stays.
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
    const kernel = toProgram.some((id) => request.held.has(id)) || !request.complete ? await manager.kernelChains(4, "filter") : undefined;
    const jumps = new Set(request.desired.keys());
    for (const id of toProgram) {
      const set = request.desired.get(id)!;
      const resource = resourceName(id);
      if (request.held.has(id) || set.standIn) {
        // Kept as the kernel has it; a set the kernel does not have accepts nothing.
        const rules = kernel?.get(`${manager.wrapName}-${chainName(id)}`);
        if (programmed.has(id)) continue;
        if (rules === undefined) {
          jumps.delete(id);
          continue;
        }
        filter.addChain(chainName(id), { resource });
        for (const rule of rules) filter.addRule(chainName(id), rule, { resource });
        programmed.add(id);
        continue;
      }
      // Removing first drops the old rules; re-adding the same ones is no change for the applier,
      // which diffs against the kernel and sends only the difference.
      filter.removeChain(chainName(id));
      filter.addChain(chainName(id), { resource });
      for (const rule of set.rules) filter.addRule(chainName(id), rule, { resource });
      programmed.add(id);
    }

    // Incomplete input: the kernel's chain sets that no desired set explains stay, jumps included.
    if (!request.complete && kernel) {
      const prefix = `${manager.wrapName}-${chainName("")}`;
      for (const [chain, rules] of kernel) {
        const id = chain.startsWith(prefix) ? chain.slice(prefix.length) : undefined;
        if (id === undefined || request.desired.has(id) || programmed.has(id)) continue;
        filter.addChain(chainName(id), { resource: resourceName(id) });
        for (const rule of rules) filter.addRule(chainName(id), rule, { resource: resourceName(id) });
        programmed.add(id);
        jumps.add(id);
      }
    }

    filter.clearRulesByTag(JUMP_TAG);
    for (const id of [...jumps].sort()) {
      filter.addRule("INPUT", `-j $${chainName(id)}`, { tag: JUMP_TAG, resource: resourceName(id) });
    }
    // The context's logger names the namespace.
    context.logger.debug({ sets: request.desired.size, programmed: toProgram.length, removed: stale.length }, "chain sets reconciled");
  }
}
