import { describe, expect, it } from "vitest";
import { parse{{RESOURCE_TYPE}}Input } from "./resource.js";

describe("parse{{RESOURCE_TYPE}}Input", () => {
  it("a bad entry is a problem of its own; the others parse", () => {
    const parsed = parse{{RESOURCE_TYPE}}Input({ {{STATE_KEY}}: [{ id: "ok", namespace: "lab", sources: ["10.0.0.1"] }, { id: "bad", namespace: "lab", sources: ["10.0.0.1; rm -rf /"] }] }, "state.yaml");
    expect([...parsed.resources.keys()]).toEqual(["ok"]);
    expect(parsed.problems).toEqual([expect.objectContaining({ source: "state.yaml", path: "{{STATE_KEY}}.1", resource: "bad" })]);
  });

  it("an invalid entry whose id and namespace read cleanly gets a stand-in, so the kernel's chain for it is kept", () => {
    const parsed = parse{{RESOURCE_TYPE}}Input({ {{STATE_KEY}}: [{ id: "web", namespace: "lab", sources: "not a list" }] }, "state.yaml");
    expect(parsed.held?.get("web")).toEqual({ id: "web", namespace: "lab", sources: [], standIn: true });
  });

  it("an entry whose id cannot be read names no resource (the input is incomplete: nothing is removed)", () => {
    const parsed = parse{{RESOURCE_TYPE}}Input({ {{STATE_KEY}}: [{ id: "-j ACCEPT", namespace: "lab", sources: [] }] }, "state.yaml");
    expect(parsed.problems).toHaveLength(1);
    expect(parsed.problems[0]).not.toHaveProperty("resource");
    expect(parsed.held?.size ?? 0).toBe(0);
  });
});
