/**
 * The logging surface core needs: pino's call shape (`logger.info({ fields }, "constant message")`),
 * so an agent passes its pino child logger straight in and core never imports a logging library.
 */
export interface CoreLogger {
  /** Detail for debugging: each command and decision. */
  debug(fields: object, message: string): void;
  /** What an operator wants to see: applies, adoptions, recoveries. */
  info(fields: object, message: string): void;
  /** Something was wrong and was worked around (a retry, a kept rule). */
  warn(fields: object, message: string): void;
  /** Something failed and was not worked around. */
  error(fields: object, message: string): void;
}

const noop = () => undefined;

/** A `CoreLogger` that drops everything (the default when none is given). */
export const silentLogger: CoreLogger = { debug: noop, info: noop, warn: noop, error: noop };
