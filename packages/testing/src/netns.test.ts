import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { createNetns, isRoot, withNetns } from "./netns.js";
import { runCommand } from "./run-command.js";

const namespaces = async () => (await runCommand(["ip", "netns", "list"])).stdout.split("\n").map((l) => l.split(" ")[0]);

describe.skipIf(!isRoot())("netns helpers (root)", () => {
  it("creates a uniquely named namespace, runs commands in it and deletes it", async () => {
    const a = await createNetns("cw-t");
    const b = await createNetns("cw-t");
    try {
      expect(a.name).toMatch(new RegExp(`^cw-t-${process.pid}-[0-9a-f]{6}$`));
      expect(a.name).not.toBe(b.name);
      expect(await namespaces()).toEqual(expect.arrayContaining([a.name, b.name]));
      const links = await a.exec(["ip", "-o", "link", "show"]);
      expect(links.stdout).toMatch(/^1: lo:/);
      expect((await a.exec(["cat"], { input: "hello" })).stdout).toBe("hello");
      const failed = await a.exec(["ip", "link", "show", "cw-nope"], { reject: false });
      expect(failed.exitCode).not.toBe(0);
      await expect(a.exec(["ip", "link", "show", "cw-nope"])).rejects.toThrow(/failed \(exit/);
    } finally {
      await a.delete();
      await b[Symbol.asyncDispose]();
    }
    expect(await namespaces()).not.toContain(a.name);
    expect(await namespaces()).not.toContain(b.name);
    await a.delete(); // twice is fine
  });

  it("withNetns deletes the namespace when the callback throws", async () => {
    let name = "";
    await expect(
      withNetns(async (ns) => {
        name = ns.name;
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
    expect(name).not.toBe("");
    expect(await namespaces()).not.toContain(name);
  });

  it("kills processes left inside before deleting", async () => {
    await withNetns(async (ns) => {
      const child = spawn("ip", ["netns", "exec", ns.name, "sleep", "60"], { stdio: "ignore" });
      const exited = new Promise<unknown>((resolve) => child.on("exit", (code, signal) => resolve(signal ?? code)));
      for (let i = 0; i < 50 && (await runCommand(["ip", "netns", "pids", ns.name])).stdout.trim() === ""; i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      expect((await runCommand(["ip", "netns", "pids", ns.name])).stdout.trim()).not.toBe("");
      await ns.delete();
      expect(await exited).toBe("SIGKILL");
    });
  });
});

describe("isRoot", () => {
  it("tells whether the process runs as root", () => {
    expect(isRoot()).toBe(process.getuid?.() === 0);
  });
});
