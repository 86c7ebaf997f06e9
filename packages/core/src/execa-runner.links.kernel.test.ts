/**
 * `ExecaRunner.listLinks` on the real host: the devices of a namespace the test creates (and always
 * deletes), of the host's own namespace (only read), and of a namespace that is not there.
 */
import { describe, expect, it } from "vitest";
import { NamespaceGoneError } from "./errors.js";
import { namespacePerTest } from "./test-support/namespace-per-test.js";

describe("ExecaRunner.listLinks (real devices)", () => {
  const lab = namespacePerTest("cw-links");

  /** Device names as `ip -o link show` prints them (`tap1@peer1` is `tap1`). */
  const fromIp = async (namespace?: string) =>
    (await lab.runner.exec("ip", ["-o", "link", "show"], { namespace })).stdout
      .split("\n")
      .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1])
      .filter((n): n is string => n !== undefined)
      .sort();

  it("names the namespace's devices, as ip -o link show does", async () => {
    expect(await lab.runner.listLinks(lab.ns)).toEqual(["lo"]);
    const r = await lab.runner.exec("ip", ["link", "add", "tapl1-00", "type", "veth", "peer", "name", "vml1"], { namespace: lab.ns, reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    expect((await lab.runner.listLinks(lab.ns)).sort()).toEqual(["lo", "tapl1-00", "vml1"]);
    expect((await lab.runner.listLinks(lab.ns)).sort()).toEqual(await fromIp(lab.ns));
  });

  it("the host's own namespace: read directly, the same names as ip -o link show", async () => {
    expect((await lab.runner.listLinks()).sort()).toEqual(await fromIp());
  });

  it("a namespace that is not there: NamespaceGoneError", async () => {
    await expect(lab.runner.listLinks(`${lab.ns}-none`)).rejects.toBeInstanceOf(NamespaceGoneError);
  });
});
