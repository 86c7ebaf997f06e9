import { existsSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { FifoInput } from "./fifo-input.js";

const mkfifo = async (path: string) => void (await execa("mkfifo", ["-m", "600", path]));

describe("FifoInput", () => {
  it("makes a FIFO in a private directory; a reader that opens it later gets all of the input", async () => {
    const input = await FifoInput.create(mkfifo);
    expect(statSync(input.path).isFIFO()).toBe(true);
    expect(statSync(dirname(input.path)).mode & 0o777).toBe(0o700);
    // The writer waits for the reader (here: one started 100 ms later), and for it to drain a
    // full pipe (200 KB is more than the 64 KiB a pipe holds).
    const text = "x".repeat(200_000) + "\n";
    let reader: ReturnType<typeof execa> | undefined;
    setTimeout(() => (reader = execa("wc", ["-c", input.path])), 100);
    expect(await input.writeAndClose(text, () => true)).toBe(true);
    expect(existsSync(dirname(input.path))).toBe(false);
    while (!reader) await new Promise((r) => setTimeout(r, 5));
    expect((await reader).stdout).toBe(`${text.length} ${input.path}`);
  });

  it("gives up when the command is gone without opening it, and leaves nothing behind", async () => {
    const input = await FifoInput.create(mkfifo);
    expect(await input.writeAndClose("-D -d 192.0.2.1\n", () => false)).toBe(false);
    expect(existsSync(dirname(input.path))).toBe(false);
  });

  it("connect() removes the name once the reader has the FIFO open; the write goes later", async () => {
    const input = await FifoInput.create(mkfifo);
    const reader = execa("cat", [input.path]);
    expect(await input.connect(() => true)).toBe(true);
    expect(existsSync(dirname(input.path))).toBe(false);
    expect(await input.writeAndClose("late\n", () => true)).toBe(true);
    expect((await reader).stdout).toBe("late");
  });

  it("close() before any write removes the FIFO", async () => {
    const input = await FifoInput.create(mkfifo);
    input.close();
    input.close();
    expect(existsSync(dirname(input.path))).toBe(false);
  });

  it("a failing mkfifo leaves no directory", async () => {
    let made = "";
    await expect(
      FifoInput.create(async (path) => {
        made = path;
        throw new Error("mkfifo: no");
      }),
    ).rejects.toThrow("mkfifo: no");
    expect(existsSync(dirname(made))).toBe(false);
  });
});
