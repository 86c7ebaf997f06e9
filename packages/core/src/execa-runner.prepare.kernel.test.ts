/**
 * `ExecaRunner.prepare` on the real host: commands started in a network namespace the test creates
 * (and always deletes) before their input is known. `ip netns pids` shows whether a process of the
 * test is running in its namespace.
 */
import { existsSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CommandError, NamespaceGoneError } from "./errors.js";
import { namespacePerTest } from "./test-support/namespace-per-test.js";
import { PREPARED_INPUT } from "./command-runner.js";

describe("ExecaRunner.prepare (real commands in a namespace)", () => {
  const lab = namespacePerTest("cw-prep");

  const pids = async () => (await lab.runner.exec("ip", ["netns", "pids", lab.ns])).stdout.split("\n").filter(Boolean);
  const until = async (what: string, check: () => Promise<boolean>) => {
    for (let i = 0; i < 200; i++) {
      if (await check()) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`timed out waiting for ${what}`);
  };
  const conntrack = (args: string[]) => lab.runner.exec("conntrack", args, { namespace: lab.ns, reject: false });
  /** An established TCP entry from `src` to `dst`, with the reply coming from `replySrc` to `replyDst`. */
  const insert = async (src: string, dst: string, replySrc: string, replyDst: string, sport: number) => {
    const r = await conntrack(["-I", "-s", src, "-d", dst, "-r", replySrc, "-q", replyDst, "-p", "tcp", "--sport", String(sport), "--dport", "22", "--reply-port-src", "22", "--reply-port-dst", String(sport), "--state", "ESTABLISHED", "-t", "120", "-u", "SEEN_REPLY"]);
    expect(r.exitCode, r.stderr).toBe(0);
  };
  const listed = async () => (await conntrack(["-L"])).stdout.split("\n").filter(Boolean);

  it("conntrack -R <input> runs in the namespace before its input and deletes both directions of an address", async () => {
    // To the floating IP (DNATed to 10.0.0.5), from 10.0.0.5 SNATed to it, and one that stays.
    await insert("198.51.100.7", "203.0.113.10", "10.0.0.5", "198.51.100.7", 40001);
    await insert("10.0.0.5", "198.51.100.9", "198.51.100.9", "203.0.113.10", 40002);
    await insert("198.51.100.7", "203.0.113.11", "10.0.0.6", "198.51.100.7", 40003);
    expect(await listed()).toHaveLength(3);

    const prepared = lab.runner.prepare("conntrack", ["-R", PREPARED_INPUT], { namespace: lab.ns });
    await until("the prepared conntrack to run in the namespace", async () => (await pids()).length === 1);
    // It reads a FIFO whose name is gone once the command has it open.
    const [pid] = await pids();
    const fifo = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").find((a) => a.includes("chainwarden-fifo-"))!;
    expect(fifo).toBeDefined();
    await until("the FIFO's name to go", async () => !existsSync(fifo));
    const r = await prepared.run("-D -d 203.0.113.10\n-D -q 203.0.113.10\n");
    expect(r.exitCode).toBe(0);
    const left = await listed();
    expect(left).toHaveLength(1);
    expect(left[0]).toContain("dst=203.0.113.11");
    expect(await pids()).toEqual([]);
    await expect(prepared.run("")).rejects.toThrow(/run twice/);
  });

  it("cancel() stops a command that never got input; run() after it rejects", async () => {
    const prepared = lab.runner.prepare("conntrack", ["-R", PREPARED_INPUT], { namespace: lab.ns });
    await until("the prepared conntrack to start", async () => (await pids()).length === 1);
    expect(prepared.waiting).toBe(true);
    prepared.cancel();
    expect(prepared.waiting).toBe(false);
    await until("the cancelled conntrack to stop", async () => (await pids()).length === 0);
    await expect(prepared.run("-D -d 203.0.113.10\n")).rejects.toThrow(/cancelled/);
  });

  it("a prepared command not run within expireMs stops by itself", async () => {
    const prepared = lab.runner.prepare("conntrack", ["-R", PREPARED_INPUT], { namespace: lab.ns, expireMs: 1500 });
    // On a loaded machine a poll of `ip netns pids` can take longer than the expiry: seeing it stopped counts too.
    await until("the prepared conntrack to start (or to have expired already)", async () => (await pids()).length === 1 || !prepared.waiting);
    await until("the expired conntrack to stop", async () => !prepared.waiting && (await pids()).length === 0);
    expect(prepared.waiting).toBe(false);
    await expect(prepared.run("")).rejects.toBeInstanceOf(CommandError);
  });

  it("a bad line fails with the tool's message (or returns it with reject: false)", async () => {
    const failing = lab.runner.prepare("conntrack", ["-R", PREPARED_INPUT], { namespace: lab.ns });
    const err = await failing.run("-D -d not-an-address\n").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).message).toMatch(/^conntrack -R <prepared input> failed \(exit [1-9]\d*\): .+/);
    expect((err as CommandError).namespace).toBe(lab.ns);
    const tolerated = await lab.runner.prepare("conntrack", ["-R", PREPARED_INPUT], { namespace: lab.ns, reject: false }).run("-D -d not-an-address\n");
    expect(tolerated.exitCode).not.toBe(0);
    expect(tolerated.stderr).not.toBe("");
  });

  it("an input larger than a pipe holds reaches the command whole", async () => {
    // ~150 KB: more than the 64 KiB a pipe buffers, so the writer waits for the reader.
    const lines = Array.from({ length: 6000 }, (_, i) => `address show dev lo label lo${i % 10}`).join("\n") + "\n";
    const r = await lab.runner.prepare("ip", ["-force", "-batch", PREPARED_INPUT], { namespace: lab.ns }).run(lines);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe("");
  });

  it("a command that cannot be started (no FIFO can be made) rejects without an exit status", async () => {
    const tmp = process.env["TMPDIR"];
    let err: unknown;
    try {
      process.env["TMPDIR"] = `/nonexistent-${lab.ns}`;
      err = await lab.runner.prepare("conntrack", ["-R", PREPARED_INPUT], { namespace: lab.ns, reject: false }).run("-D -d 203.0.113.10\n").catch((e: unknown) => e);
    } finally {
      if (tmp === undefined) delete process.env["TMPDIR"];
      else process.env["TMPDIR"] = tmp;
    }
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).exitCode).toBeUndefined();
    expect((err as CommandError).message).toMatch(/could not be started: .*nonexistent/);
    expect(await pids()).toEqual([]);
  });

  it("refuses arguments without PREPARED_INPUT", () => {
    expect(() => lab.runner.prepare("conntrack", ["-R", "-"], { namespace: lab.ns })).toThrow(/PREPARED_INPUT/);
  });

  it("a namespace gone before run() is reported as such", async () => {
    const prepared = lab.runner.prepare("conntrack", ["-R", PREPARED_INPUT], { namespace: `${lab.ns}-missing` });
    await expect(prepared.run("-D -d 203.0.113.10\n")).rejects.toBeInstanceOf(NamespaceGoneError);
  });
});
