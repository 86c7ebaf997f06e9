import type { ReconcileContext, ReconcileRequest, ResourceHandler, StateDocument } from "@chainwarden/agent";
import { parse{{RESOURCE_TYPE}}Input, type {{RESOURCE_TYPE}}Resource } from "./resource.js";

const chain = (id: string) => `{{CHAIN_PREFIX}}-${id}`;

/**
 * The `{{KIND}}` handler: per resource, a wrapped IPv4 filter chain accepting its sources, and a
 * jump to it from the wrapped INPUT. The agent calls `reconcile` once per namespace run, inside a
 * deferred apply: everything written to the manager goes to the kernel in one `iptables-restore`.
 *
 * Bad input removes nothing: a held resource (invalid input, or its apply failed) keeps the chain
 * the kernel has; a full pass rebuilds from the desired state.
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
    const ids = request.full ? [...request.desired.keys()] : [...request.changed, ...request.removed.keys()];
    for (const id of ids) {
      const wanted = request.desired.get(id);
      const resource = `{{KIND}}/${id}`;
      if (wanted && (request.held.has(id) || wanted.standIn)) {
        // Held: what this process programmed stays; after a restart, what the kernel has is taken
        // over as it is; a resource the kernel has nothing for accepts nothing (fail closed).
        if (filter.hasChain(chain(id))) continue;
        const kept = (await manager.kernelChains(4, "filter")).get(`${manager.wrapName}-${chain(id)}`);
        if (kept === undefined) continue;
        filter.addChain(chain(id), { resource });
        for (const rule of kept) filter.addRule(chain(id), rule, { resource });
        filter.addRule("INPUT", `-j $${chain(id)}`, { resource });
        continue;
      }
      filter.removeChain(chain(id)); // also removes the jump to it
      if (!wanted) continue;
      filter.addChain(chain(id), { resource });
      for (const source of wanted.sources) filter.addRule(chain(id), `-s ${source.includes("/") ? source : `${source}/32`} -j ACCEPT`, { resource });
      filter.addRule("INPUT", `-j $${chain(id)}`, { resource });
    }
    context.logger.debug({ resources: request.desired.size, changed: ids.length }, "{{KIND}} reconciled");
  }
}
