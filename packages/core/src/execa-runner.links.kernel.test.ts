/**
 * `ExecaRunner.listLinks` on the real host: the devices of a namespace the test creates (and always
 * deletes), of the host's own namespace (only read), and of a namespace that is not there.
 */
import { randomBytes } from "node:crypto";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { NamespaceGoneError } from "./errors.js";
import { ExecaRunner } from "./execa-runner.js";
import { addNamespace, deleteNamespace } from "./netns.js";

describe("ExecaRunner.listLinks (real devices)", () => {
  let runner: ExecaRunner;
  let ns: string;

  beforeAll(() => {
    if (process.getuid?.() !== 0) throw new Error("these tests create network namespaces: run them as root");
    runner = new ExecaRunner();
  });
  afterAll(() => runner.close());
  beforeEach(async () => {
    ns = `cw-links-${randomBytes(4).toString("hex")}`;
    await addNamespace(runner, ns);
  });
  afterEach(async () => {
    await deleteNamespace(runner, ns);
  });

  /** Device names as `ip -o link show` prints them (`tap1@peer1` is `tap1`). */
  const fromIp = async (namespace?: string) =>
    (await runner.exec("ip", ["-o", "link", "show"], { namespace })).stdout
      .split("\n")
      .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1])
      .filter((n): n is string => n !== undefined)
      .sort();

  it("names the namespace's devices, as ip -o link show does", async () => {
    expect(await runner.listLinks(ns)).toEqual(["lo"]);
    const r = await runner.exec("ip", ["link", "add", "tapl1-00", "type", "veth", "peer", "name", "vml1"], { namespace: ns, reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    expect((await runner.listLinks(ns)).sort()).toEqual(["lo", "tapl1-00", "vml1"]);
    expect((await runner.listLinks(ns)).sort()).toEqual(await fromIp(ns));
  });

  it("the host's own namespace: read directly, the same names as ip -o link show", async () => {
    expect((await runner.listLinks()).sort()).toEqual(await fromIp());
  });

  it("a namespace that is not there: NamespaceGoneError", async () => {
    await expect(runner.listLinks(`${ns}-none`)).rejects.toBeInstanceOf(NamespaceGoneError);
  });
});
