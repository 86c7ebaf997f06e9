/**
 * The logging surface core needs: pino's call shape (`logger.info({ fields }, "constant message")`),
 * so an agent passes its pino child logger straight in and core never imports a logging library.
 */
export interface CoreLogger {
  debug(fields: object, message: string): void;
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

const noop = () => undefined;

export const silentLogger: CoreLogger = { debug: noop, info: noop, warn: noop, error: noop };
