import { afterEach, describe, expect, it } from "vitest";
import { ExecaRunner } from "./execa-runner.js";
import { CommandError } from "./errors.js";
import { SpawnHelper } from "./spawn-helper.js";

describe("SpawnHelper", () => {
  const helpers: SpawnHelper[] = [];
  const helper = () => {
    const h = new SpawnHelper();
    helpers.push(h);
    return h;
  };
  afterEach(async () => {
    await Promise.all(helpers.splice(0).map((h) => h.stop()));
  });

  it("runs a command with stdin, and returns stdout, stderr and the exit code", async () => {
    const h = helper();
    const text = "line one\nline two\n".repeat(5000);
    expect(await h.run("cat", [], {}, text)).toEqual({ stdout: text, stderr: "", exitCode: 0 });
    const failed = await h.run("sh", ["-c", "echo out; echo err >&2; exit 3"], {});
    expect(failed).toEqual({ stdout: "out\n", stderr: "err\n", exitCode: 3 });
  });

  it("a command that exits without reading its input still reports its own exit code and output", async () => {
    // iptables-restore stops at the first bad line; the rest of a large input meets a closed pipe.
    const r = await helper().run("sh", ["-c", "echo refused >&2; exit 2"], {}, "x".repeat(900_000));
    expect(r).toEqual({ stdout: "", stderr: "refused\n", exitCode: 2 });
  });

  it("passes the runner's variables over its own environment", async () => {
    const r = await helper().run("printenv", ["LC_ALL", "CW_PROBE"], { LC_ALL: "C", CW_PROBE: "42" });
    expect(r.stdout).toBe("C\n42\n");
  });

  it("serves concurrent calls from one process", async () => {
    const h = helper();
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => h.run("echo", [String(i)], {})));
    expect(results.map((r) => r.stdout)).toEqual(Array.from({ length: 20 }, (_, i) => `${i}\n`));
    expect(h.pid).toBeGreaterThan(0);
  });

  it("a command that cannot start is an error that names it", async () => {
    await expect(helper().run("/nonexistent/cw-tool", ["x"], {})).rejects.toThrow(/cw-tool/);
  });

  it("when the helper dies, calls in flight fail with the reason and the next call starts a new one", async () => {
    const h = helper();
    await h.run("true", [], {});
    const first = h.pid!;
    const inFlight = h.run("sleep", ["5"], {});
    process.kill(first, "SIGKILL");
    await expect(inFlight).rejects.toThrow(/spawn helper exited/);
    expect((await h.run("echo", ["again"], {})).stdout).toBe("again\n");
    expect(h.pid).not.toBe(first);
  });
});

describe("ExecaRunner with and without the spawn helper", () => {
  it("gives the same result and the same errors", async () => {
    const viaHelper = new ExecaRunner({ backend: "nft" });
    const direct = new ExecaRunner({ backend: "nft", spawnHelper: false });
    try {
      for (const r of [viaHelper, direct]) {
        const ok = await r.exec("ip", ["-V"]);
        expect(ok.exitCode).toBe(0);
        expect(ok.stdout).toMatch(/^ip utility/);
        const bad = await r.exec("ip", ["link", "show", "cw-no-such-device"], { reject: false });
        expect(bad.exitCode).not.toBe(0);
        expect(bad.stderr).toMatch(/cw-no-such-device/);
        await expect(r.exec("ip", ["link", "show", "cw-no-such-device"])).rejects.toBeInstanceOf(CommandError);
      }
      expect(viaHelper.helperPid).toBeGreaterThan(0);
      expect(direct.helperPid).toBeUndefined();
    } finally {
      await viaHelper.close();
    }
  });
});
