import { randomUUID } from "node:crypto";
import type { RpcContext } from "./envelope.js";

/**
 * The context a neutron agent sends with its RPCs: neutron-lib's
 * `get_admin_context_without_session().to_dict()` (neutron-lib 3.1, oslo.context 5), field for
 * field. The server rebuilds a `neutron_lib.context.Context` from it (`user_id`, `tenant_id`,
 * `is_admin`, `roles`, `timestamp`, `request_id`, ...). Each call gets a fresh `request_id`
 * (`req-<uuid>`) and `timestamp` (UTC, Python's `str(datetime)`), as each Python admin context has.
 */
export function neutronAdminContext(now: Date = new Date()): RpcContext {
  return {
    user: null,
    project_id: null,
    system_scope: null,
    project: null,
    domain: null,
    user_domain: null,
    project_domain: null,
    is_admin: true,
    read_only: false,
    show_deleted: false,
    auth_token: null,
    request_id: `req-${randomUUID()}`,
    global_request_id: null,
    resource_uuid: null,
    roles: [],
    user_identity: "- - - - -",
    is_admin_project: true,
    user_id: null,
    tenant_id: null,
    timestamp: pythonTimestamp(now),
    tenant_name: null,
    project_name: null,
    user_name: null,
  };
}

/** `str(datetime.utcnow())`: `2026-12-06 03:39:39.876892` (microseconds, which JavaScript has not, as zeros). */
function pythonTimestamp(date: Date): string {
  const iso = date.toISOString(); // 2026-12-06T03:39:39.876Z
  return `${iso.slice(0, 10)} ${iso.slice(11, 23)}000`;
}
