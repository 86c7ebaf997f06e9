import { pino, type DestinationStream, type Level, type Logger } from "pino";
import pretty from "pino-pretty";

export interface CreateLoggerOptions {
  /** pino level, or `silent`. */
  level: Level | "silent";
  /** Bound as `name` on every line (the agent's name, e.g. `l3-agent`). */
  name: string;
  /** Where JSON lines go; default stdout. Given a destination, output is always JSON. */
  destination?: DestinationStream;
  /** Human-readable lines (pino-pretty); default: when stdout is a terminal and no destination is given. */
  pretty?: boolean;
}

/**
 * The agent's logger: pino JSON lines, pretty-printed on a terminal. Callers log constant messages
 * and put the data in fields (`logger.info({ namespace }, "namespace applied")`), so log lines can be
 * grouped and searched by message.
 */
export function createLogger(options: CreateLoggerOptions): Logger {
  const settings = { name: options.name, level: options.level };
  if (options.destination) return pino(settings, options.destination);
  const usePretty = options.pretty ?? process.stdout.isTTY === true;
  // pino-pretty as an in-process stream rather than a worker transport: a terminal is an
  // interactive run where throughput does not matter, and a stream needs no worker thread to flush
  // before exit.
  if (usePretty) return pino(settings, pretty({ colorize: process.stdout.isTTY === true, sync: true, destination: 1 }));
  return pino(settings, pino.destination({ dest: 1, sync: true }));
}
