import type { CoreLogger } from "@chainwarden/core";

export interface LogRecord {
  level: "debug" | "info" | "warn" | "error";
  fields: Record<string, unknown>;
  message: string;
}

/** A pino-shaped logger keeping what it was given, for tests that check what was logged. */
export function memoryLogger(): CoreLogger & { records: LogRecord[]; messages(level?: LogRecord["level"]): string[] } {
  const records: LogRecord[] = [];
  const at =
    (level: LogRecord["level"]) =>
    (fields: object, message: string): void => {
      records.push({ level, fields: fields as Record<string, unknown>, message });
    };
  return {
    records,
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    messages: (level) => records.filter((r) => level === undefined || r.level === level).map((r) => r.message),
  };
}
