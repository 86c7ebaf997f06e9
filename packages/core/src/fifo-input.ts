import { closeSync, constants, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * The input of a command started before its input is known (`ExecaRunner.prepare`): a FIFO the
 * command opens by name and reads to its end.
 *
 * Why a named FIFO, not the command's stdin: Node gives a child a socket pair for
 * `stdin: "pipe"`, which a tool that reopens `/dev/stdin` (`conntrack -R -`) cannot open (ENXIO).
 * And a FIFO passed as stdin does not work either: the tool's reopen blocks until a writer
 * exists, so if we wrote and closed before the tool got that far it would wait forever. Opened by
 * name, the FIFO is its own handshake: our non-blocking open for writing fails (ENXIO) until the
 * command has opened it for reading, so we retry while the command runs, then write and close,
 * and the command reads end-of-file after the last byte.
 *
 * The FIFO lives in a private (0700) directory, removed as soon as the command has opened it
 * (`connect`, started right after the command), or when the command is run, cancelled or gone:
 * only an agent killed in the few milliseconds before the command opens it leaves one behind.
 */
export class FifoInput {
  private fd: number | undefined;
  private dir: string | undefined;
  private connecting: Promise<boolean> | undefined;
  private closed = false;

  private constructor(
    dir: string,
    /** The FIFO's name, for the command's arguments. */
    readonly path: string,
  ) {
    this.dir = dir;
  }

  /** Makes the FIFO with `makeFifo(path)` (the `mkfifo` tool: Node has no mkfifo). */
  static async create(makeFifo: (path: string) => Promise<void>): Promise<FifoInput> {
    const dir = mkdtempSync(join(tmpdir(), "chainwarden-fifo-"));
    const path = join(dir, "input");
    try {
      await makeFifo(path);
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
    return new FifoInput(dir, path);
  }

  /**
   * Opens our end once the command has opened its end (polling every millisecond while
   * `running()`), and removes the name, which nobody needs any more. False when the command ended
   * (or this was closed) first. Once only: later calls get the first call's answer.
   */
  connect(running: () => boolean): Promise<boolean> {
    this.connecting ??= (async () => {
      while (!this.closed) {
        try {
          this.fd = openSync(this.path, constants.O_WRONLY | constants.O_NONBLOCK);
          this.removeName();
          return true;
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          // ENOENT: closed already (the command ended and its caller cleaned up).
          if (code === "ENOENT" || (code === "ENXIO" && !running())) return false;
          if (code !== "ENXIO") throw err;
          await pause();
        }
      }
      return false;
    })();
    return this.connecting;
  }

  /**
   * Writes all of `text` and closes: waits for the command to open the FIFO (`connect`) and, while
   * the pipe is full, for it to read, as long as `running()`. Returns false when the command
   * stopped before taking it all (its exit status says why).
   */
  async writeAndClose(text: string, running: () => boolean): Promise<boolean> {
    try {
      if (!(await this.connect(running)) || this.fd === undefined) return false;
      const data = Buffer.from(text);
      let offset = 0;
      while (offset < data.length) {
        try {
          offset += writeSync(this.fd, data, offset);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === "EPIPE") return false;
          if (code !== "EAGAIN") throw err;
          if (!running()) return false;
          await pause();
        }
      }
      return true;
    } finally {
      this.close();
    }
  }

  /** Closes our end (if open) and removes the name. Idempotent. */
  close(): void {
    this.closed = true;
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    this.removeName();
  }

  private removeName(): void {
    if (this.dir !== undefined) rmSync(this.dir, { recursive: true, force: true });
    this.dir = undefined;
  }
}

function pause(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 1));
}
