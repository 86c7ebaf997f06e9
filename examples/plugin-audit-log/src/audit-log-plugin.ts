import { applyObserverExtensionPoint, createPlugin } from "@chainwarden/agent";
import { z } from "zod";
import { AuditLogObserver } from "./audit-log-observer.js";

/** `{ path }`: the file the audit lines are appended to (created when missing). Nothing else is accepted. */
export const auditLogOptions = z.strictObject({
  path: z.string().min(1, "path must name the audit log file"),
});

export type AuditLogOptions = z.infer<typeof auditLogOptions>;

export const auditLogPlugin = createPlugin<AuditLogOptions>({
  name: "audit-log",
  version: "0.1.0",
  framework: "^0.1.0",
  options: auditLogOptions,
  register(env) {
    env.addExtension(applyObserverExtensionPoint, new AuditLogObserver(env.options.path));
    env.logger.info({ path: env.options.path }, "audit log enabled");
  },
});
