/**
 * `ExecaRunner.close()` as a program's last step, in a Node process of its own: the spawn helper is
 * unreferenced while idle, so waiting for it to exit must hold the process open, or the program ends
 * with an unsettled promise (exit code 13). Here, not in core, because the program imports core's
 * built package, which exists once core is built (this package's tests run after that).
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

describe("ExecaRunner.close() at the end of a program", () => {
  it("waits for the spawn helper to exit and the program exits 0", () => {
    const program = [
      'import { ExecaRunner } from "@chainwarden/core";',
      "const runner = new ExecaRunner();",
      'const r = await runner.exec("ip", ["-V"]);',
      "await runner.close();",
      'console.log(r.exitCode === 0 ? "closed" : "ip -V failed");',
    ].join("\n");
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", program], { cwd: fileURLToPath(new URL("..", import.meta.url)), encoding: "utf8", timeout: 30_000 });
    expect({ exitCode: r.status, stdout: r.stdout.trim(), stderr: r.stderr }).toEqual({ exitCode: 0, stdout: "closed", stderr: "" });
  });
});
