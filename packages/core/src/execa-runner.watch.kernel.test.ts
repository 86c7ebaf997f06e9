/**
 * `ExecaRunner.watch` on the real host: `ip -o monitor link` in a network namespace the test creates
 * (and always deletes), fed by devices the test adds there. `ip netns pids` shows whether the
 * watcher still runs in the namespace.
 */
import { describe, expect, it } from "vitest";
import { CommandError, NamespaceGoneError } from "./errors.js";
import { ExecaRunner } from "./execa-runner.js";
import { namespacePerTest } from "./test-support/namespace-per-test.js";

describe("ExecaRunner.watch (a real ip monitor in a namespace)", () => {
  const lab = namespacePerTest("cw-watch");

  const pids = async () => (await lab.runner.exec("ip", ["netns", "pids", lab.ns])).stdout.split("\n").filter(Boolean);
  const until = async (what: string, check: () => boolean | Promise<boolean>) => {
    for (let i = 0; i < 200; i++) {
      if (await check()) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`timed out waiting for ${what}`);
  };
  const ip = async (...args: string[]) => {
    const r = await lab.runner.exec("ip", args, { namespace: lab.ns, reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
  };

  it("reports each device event as a line while it runs, and nothing after stop", async () => {
    const lines: string[] = [];
    const exits: Error[] = [];
    const watch = lab.runner.watch("ip", ["-o", "monitor", "link"], { namespace: lab.ns, onLine: (l) => lines.push(l), onExit: (e) => exits.push(e) });
    await watch.started;
    await until("the monitor to run in the namespace", async () => (await pids()).length === 1);
    // ip subscribes right after it starts; a device added before that would be missed, so add
    // until one is seen (the first try nearly always is).
    for (let i = 0; lines.length === 0 && i < 20; i++) {
      await ip("link", "add", `tapw${i}`, "type", "veth", "peer", "name", `peerw${i}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    await until("the add to be reported", () => lines.some((l) => /^\d+: tapw\d+@peerw\d+: </.test(l)));
    await ip("link", "add", "tapcw-1", "type", "veth", "peer", "name", "peercw-1");
    await ip("link", "del", "tapcw-1");
    await until("the veth's add and delete", () => lines.some((l) => /^Deleted \d+: tapcw-1@/.test(l)));
    expect(lines.some((l) => /^\d+: tapcw-1@peercw-1: </.test(l))).toBe(true);
    // One event per line (`-o`): nothing spans two.
    expect(lines.every((l) => /^(Deleted )?\d+: \S+: </.test(l))).toBe(true);

    watch.stop();
    await until("the monitor to end", async () => (await pids()).length === 0);
    const seen = lines.length;
    await ip("link", "add", "tapafter", "type", "veth", "peer", "name", "peerafter");
    await new Promise((r) => setTimeout(r, 100));
    expect(lines).toHaveLength(seen);
    expect(exits).toEqual([]);
    watch.stop();
  });

  it("reports a monitor killed from outside through onExit", async () => {
    const exits: Error[] = [];
    const watch = lab.runner.watch("ip", ["-o", "monitor", "link"], { namespace: lab.ns, onLine: () => undefined, onExit: (e) => exits.push(e) });
    await watch.started;
    await until("the monitor to run", async () => (await pids()).length === 1);
    process.kill(Number((await pids())[0]), "SIGKILL");
    await until("the exit to be reported", () => exits.length === 1);
    expect(exits[0]).toBeInstanceOf(CommandError);
    expect(exits[0]!.message).toContain("monitor link");
    expect(exits[0]!.message).toContain("killed by SIGKILL");
    watch.stop();
  });

  it("a namespace that is not there: onExit says so", async () => {
    const exits: Error[] = [];
    const watch = lab.runner.watch("ip", ["-o", "monitor", "link"], { namespace: `${lab.ns}-none`, onLine: () => undefined, onExit: (e) => exits.push(e) });
    // ip itself starts, then finds no namespace to enter.
    await watch.started.catch(() => undefined);
    await until("the exit to be reported", () => exits.length === 1);
    expect(exits[0]).toBeInstanceOf(NamespaceGoneError);
  });

  it("a command that cannot be started: started rejects and onExit says so", async () => {
    const exits: Error[] = [];
    const bare = new ExecaRunner({ env: { PATH: "/nonexistent" } });
    try {
      const watch = bare.watch("conntrack", ["-E"], { onLine: () => undefined, onExit: (e) => exits.push(e) });
      await expect(watch.started).rejects.toBeInstanceOf(CommandError);
      expect(exits).toHaveLength(1);
      expect(exits[0]!.message).toContain("conntrack -E");
    } finally {
      bare.close();
    }
  });
});
