import { describe, expect, it } from "vitest";
import { neutronAdminContext } from "./neutron-context.js";

describe("neutronAdminContext", () => {
  it("is neutron-lib's admin context dict with a fresh request id and a Python timestamp", () => {
    const a = neutronAdminContext(new Date("2026-12-06T03:39:39.876Z"));
    const b = neutronAdminContext();
    expect(a).toMatchObject({ is_admin: true, user_id: null, tenant_id: null, project_id: null, roles: [], is_admin_project: true, timestamp: "2026-12-06 03:39:39.876000" });
    expect(a.request_id).toMatch(/^req-[0-9a-f-]{36}$/);
    expect(a.request_id).not.toBe(b.request_id);
  });
});
