import { createPlugin, resourceHandlerExtensionPoint, type ReconcileContext, type ReconcileRequest, type ResourceHandler } from "@chainwarden/agent";
import { isRoot, listNetns } from "@chainwarden/testing";
import { describe, expect, it } from "vitest";
import { PluginHarness } from "./plugin-harness.js";

interface Mark {
  id: string;
  namespace: string;
}

class MarkHandler implements ResourceHandler<Mark> {
  readonly kind = "mark";
  readonly documentKeys = ["marks"];
  parse(document: Record<string, unknown>) {
    const resources = new Map<string, Mark>();
    for (const m of (document.marks as Mark[] | undefined) ?? []) resources.set(m.id, m);
    return { resources, problems: [] };
  }
  namespaceOf(m: Mark) {
    return m.namespace;
  }
  async reconcile(context: ReconcileContext, request: ReconcileRequest<Mark>) {
    const filter = context.manager().table(4, "filter");
    for (const id of request.desired.keys()) filter.addChain(`mark-${id}`, { resource: `mark/${id}` });
  }
}

const markPlugin = createPlugin({
  name: "mark",
  version: "0.1.0",
  framework: "^0.1.0",
  register(env) {
    env.addExtension(resourceHandlerExtensionPoint, new MarkHandler());
  },
});

describe.skipIf(!isRoot())("PluginHarness on the kernel", () => {
  it("applies with the real tools in a namespace of its own, and deletes it at the end", async () => {
    let real: string;
    {
      await using h = await PluginHarness.start({ plugins: [markPlugin], host: "kernel", namespaces: ["lab"] });
      real = h.namespace("lab");
      expect(real).toMatch(/^cwh[0-9a-f]{6}0$/);
      const r = await h.apply({ marks: [{ id: "x", namespace: real }] });
      expect(r.errors).toEqual([]);
      expect(await h.rules("lab")).toContain(":test-agent-mark-x - [0:0]");
    }
    expect(await listNetns()).not.toContain(real);
  });
});
