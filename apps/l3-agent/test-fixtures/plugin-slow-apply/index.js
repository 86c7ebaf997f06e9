// A resource handler whose reconcile is slow on purpose: it writes `marker` (so the test knows the
// apply is in flight), sleeps `delay_ms`, then declares a chain with one rule. Its state:
//   { "slow_apply": { "namespace": "NS" } }
import { writeFileSync } from "node:fs";
import { resourceHandlerExtensionPoint } from "@chainwarden/agent";
import { z } from "zod";

const options = z.strictObject({ marker: z.string().min(1), delay_ms: z.number().int().min(0) });

export default {
  name: "slow-apply",
  version: "1.0.0",
  framework: "^0.1.0",
  options,
  register(env) {
    const { marker, delay_ms } = env.options;
    env.addExtension(resourceHandlerExtensionPoint, {
      kind: "slow_apply",
      documentKeys: ["slow_apply"],
      parse(document) {
        const value = document.slow_apply;
        const resources = new Map();
        if (value && typeof value === "object") resources.set("slow", { namespace: value.namespace });
        return { resources, problems: [] };
      },
      namespaceOf(resource) {
        return resource.namespace;
      },
      async reconcile(context, request) {
        if (context.dryRun) return;
        const filter = context.manager().table(4, "filter");
        if (!request.desired.has("slow")) {
          filter.removeChain("slow");
          return;
        }
        writeFileSync(marker, `${process.pid}\n`);
        await new Promise((resolve) => setTimeout(resolve, delay_ms));
        filter.addChain("slow");
        filter.addRule("slow", "-j RETURN");
      },
    });
  },
};
