/**
 * @chainwarden/example-plugin-audit-log: a third-party-style plugin that observes every apply and
 * appends one JSON line per apply to a file. The default export is what the agent's plugin loader
 * takes when the package is named in a config file.
 */
import { auditLogPlugin } from "./audit-log-plugin.js";

export { auditLogPlugin };
export { auditLogOptions, type AuditLogOptions } from "./audit-log-plugin.js";
export { AuditLogObserver, auditRecord, type AuditRecord } from "./audit-log-observer.js";
export default auditLogPlugin;
