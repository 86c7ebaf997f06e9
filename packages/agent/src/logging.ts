import { pino, type DestinationStream, type Level, type Logger, type LoggerOptions } from "pino";
import pretty from "pino-pretty";

/** How log lines are written: pino's JSON lines, pino-pretty's text, or JSON unless the output is a terminal. */
export type LogFormat = "auto" | "json" | "pretty";

/** The `time` of a line: pino's milliseconds since the epoch (a number), or ISO 8601 UTC text. */
export type LogTime = "epoch" | "iso";

/** How `createLogger` makes the agent's logger: level, name, where lines go and in which format. */
export interface CreateLoggerOptions {
  /** pino level, or `silent`. */
  level: Level | "silent";
  /** Bound as `name` on every line (the agent's name, e.g. `l3-agent`). */
  name: string;
  /**
   * Where lines go; default stdout (fd 1). A destination stream is written JSON unless `format` is
   * `pretty`; `fd` picks another file descriptor (2: stderr) with the same rules as stdout.
   */
  destination?: DestinationStream;
  /** The file descriptor lines go to when no destination is given (default 1). */
  fd?: 1 | 2;
  /** Default `auto`: JSON, or pino-pretty when the output (`fd`) is a terminal. */
  format?: LogFormat;
  /** Default `epoch`, pino's own. */
  time?: LogTime;
  /** Legacy switch: true is `format: "pretty"`, false `format: "json"`. */
  pretty?: boolean;
}

/**
 * The agent's logger: pino JSON lines (config `log_format`, `log_time`), or pino-pretty's text for a
 * human at a terminal. Callers log constant messages and put the data in fields
 * (`logger.info({ namespace }, "namespace applied")`), so log lines can be grouped and searched by
 * message.
 */
export function createLogger(options: CreateLoggerOptions): Logger {
  const iso = options.time === "iso";
  const settings: LoggerOptions = { name: options.name, level: options.level, ...(iso ? { timestamp: pino.stdTimeFunctions.isoTime } : {}) };
  const fd = options.fd ?? 1;
  const format = options.format ?? (options.pretty === undefined ? "auto" : options.pretty ? "pretty" : "json");
  if (options.destination && format !== "pretty") return pino(settings, options.destination);
  const terminal = (fd === 2 ? process.stderr : process.stdout).isTTY === true;
  const usePretty = format === "pretty" || (format === "auto" && terminal && !options.destination);
  // pino-pretty as an in-process stream rather than a worker transport: a terminal is an
  // interactive run where throughput does not matter, and a stream needs no worker thread to flush
  // before exit.
  if (usePretty) {
    return pino(
      settings,
      pretty({
        colorize: terminal && !options.destination,
        sync: true,
        ...(options.destination ? { destination: options.destination as unknown as NodeJS.WritableStream } : { destination: fd }),
        // ISO: the date and time in UTC as written; epoch: pino-pretty's local clock time.
        ...(iso ? { translateTime: "UTC:yyyy-mm-dd'T'HH:MM:ss.l'Z'" } : {}),
      }),
    );
  }
  return pino(settings, pino.destination({ dest: fd, sync: true }));
}
