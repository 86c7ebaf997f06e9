import type { ReconcileContext, ReconcileRequest, ResourceHandler, StateDocument } from "@chainwarden/agent";
import type { IptablesTable } from "@chainwarden/core";
import { parse{{RESOURCE_TYPE}}Input, type {{RESOURCE_TYPE}}Resource } from "./resource.js";

const chain = (id: string) => `{{CHAIN_PREFIX}}-${id}`;

/** A resource's chain and its jump, with the rules the kernel has for it: the apply leaves them as they are. */
function keepAsKernelHas(filter: IptablesTable, id: string, rules: readonly string[]): void {
  const resource = `{{KIND}}/${id}`;
  filter.addChain(chain(id), { resource });
  for (const rule of rules) filter.addRule(chain(id), rule, { resource });
  filter.addRule("INPUT", `-j $${chain(id)}`, { resource });
}

/**
 * The `{{KIND}}` handler: per resource, a wrapped IPv4 filter chain accepting its sources, and a
 * jump to it from the wrapped INPUT. The agent calls `reconcile` once per namespace run, inside a
 * deferred apply: everything written to the manager goes to the kernel in one `iptables-restore`.
 *
 * Bad input removes nothing: a held resource (invalid input, or its apply failed) keeps the chain
 * the kernel has, and so does a chain no resource explains while the input is incomplete; a full
 * pass rebuilds from the desired state.
 */
export class {{HANDLER_CLASS}} implements ResourceHandler<{{RESOURCE_TYPE}}Resource> {
  readonly kind = "{{KIND}}";
  readonly documentKeys = ["{{STATE_KEY}}"];

  parse(document: StateDocument, origin: string) {
    return parse{{RESOURCE_TYPE}}Input(document, origin);
  }

  namespaceOf(resource: {{RESOURCE_TYPE}}Resource): string | undefined {
    return resource.namespace;
  }

  async reconcile(context: ReconcileContext, request: ReconcileRequest<{{RESOURCE_TYPE}}Resource>): Promise<void> {
    const manager = context.manager();
    const filter = manager.table(4, "filter");
    const kernelName = (id: string) => `${manager.wrapName}-${chain(id)}`;
    const ids = request.full ? [...request.desired.keys()] : [...request.changed, ...request.removed.keys()];
    for (const id of ids) {
      const wanted = request.desired.get(id);
      if (wanted && (request.held.has(id) || wanted.standIn)) {
        // Held: what this process programmed stays; after a restart, what the kernel has is taken
        // over as it is; a resource the kernel has nothing for accepts nothing (fail closed).
        if (filter.hasChain(chain(id))) continue;
        const kept = (await manager.kernelChains(4, "filter")).get(kernelName(id));
        if (kept !== undefined) keepAsKernelHas(filter, id, kept);
        continue;
      }
      filter.removeChain(chain(id)); // also removes the jump to it
      if (!wanted) continue;
      const resource = `{{KIND}}/${id}`;
      filter.addChain(chain(id), { resource });
      for (const source of wanted.sources) filter.addRule(chain(id), `-s ${source.includes("/") ? source : `${source}/32`} -j ACCEPT`, { resource });
      filter.addRule("INPUT", `-j $${chain(id)}`, { resource });
    }
    if (!request.complete) {
      // Incomplete input (an entry whose id could not be read): a chain of ours in the kernel that no
      // desired resource explains may be that entry's. Kept as it is, not removed.
      const ours = kernelName("");
      for (const [name, rules] of await manager.kernelChains(4, "filter")) {
        const id = name.startsWith(ours) ? name.slice(ours.length) : undefined;
        if (id !== undefined && !request.desired.has(id) && !filter.hasChain(chain(id))) keepAsKernelHas(filter, id, rules);
      }
    }
    context.logger.debug({ resources: request.desired.size, changed: ids.length }, "{{KIND}} reconciled");
  }
}
