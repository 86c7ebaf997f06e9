import { describe, expect, it } from "vitest";
import plugin, { auditLogOptions, auditLogPlugin } from "./index.js";

describe("auditLogPlugin", () => {
  it("is the package's default export, built for this framework major", () => {
    expect(plugin).toBe(auditLogPlugin);
    expect(plugin).toMatchObject({ name: "audit-log", framework: "^0.1.0" });
  });

  it("takes exactly { path }", () => {
    expect(auditLogOptions.safeParse({ path: "/tmp/a.jsonl" }).success).toBe(true);
    expect(auditLogOptions.safeParse({}).success).toBe(false);
    expect(auditLogOptions.safeParse({ path: "" }).success).toBe(false);
    const extra = auditLogOptions.safeParse({ path: "/tmp/a", rotate: true });
    expect(extra.success).toBe(false);
    expect(extra.error!.issues[0]).toMatchObject({ code: "unrecognized_keys", keys: ["rotate"] });
  });
});
