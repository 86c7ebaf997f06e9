import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { addNamespace, deleteNamespace, ExecaRunner, type IpRunner } from "@chainwarden/core";
import { FakeHost, isRoot, referenceDir } from "@chainwarden/testing";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { FloatingIpAddressError } from "./l3-nat-errors.js";
import { NoopInterfaceDriver } from "./noop-interface-driver.js";
import { floatingIpBatchFailures, syncRouterDevices, type DeviceSyncOptions } from "./router-devices.js";
import { parseRouter, type Router } from "./router.js";

const seed = JSON.parse(readFileSync(join(referenceDir(), "l3_seed_router_fip.json"), "utf8")).steps[0].router;
const ID: string = seed.id;
const QG = "qg-a1b2c3d4-00";
const logger = pino({ level: "silent" });

/** The seed router without internal ports (only its gateway matters here), with these floating IPs. */
function router(...fips: number[]): Router {
  const raw = { ...structuredClone(seed), _interfaces: [], _floatingips: fips.map((n) => ({ id: `fip-${n}`, floating_ip_address: `200.200.128.${n}`, fixed_ip_address: `10.10.10.${n}` })) };
  const { router: parsed, issues } = parseRouter(raw);
  expect(issues).toEqual([]);
  return parsed!;
}

interface Host {
  runner: DeviceSyncOptions["runner"];
  namespace: string;
  dispose(): Promise<void>;
}

const hosts: [string, () => Promise<Host>][] = [
  [
    "FakeHost",
    async () => {
      const host = new FakeHost({ namespaces: ["qrouter-fip"] });
      return { runner: host, namespace: "qrouter-fip", dispose: async () => {} };
    },
  ],
];
if (isRoot()) {
  hosts.push([
    "the kernel",
    async () => {
      const runner = new ExecaRunner({ backend: "nft" });
      const namespace = `cw-fip-${randomBytes(4).toString("hex")}`;
      await addNamespace(runner, namespace);
      return { runner, namespace, dispose: () => deleteNamespace(runner, namespace) };
    },
  ]);
}

let disposing: Host | undefined;
afterEach(async () => {
  await disposing?.dispose();
  disposing = undefined;
});

const ipv4 = async (runner: IpRunner, namespace: string) => {
  const r = await runner.exec("ip", ["-j", "addr", "show", "dev", QG], { namespace });
  const [device] = JSON.parse(r.stdout) as { addr_info: { family: string; local: string; prefixlen: number }[] }[];
  return device!.addr_info.filter((a) => a.family === "inet").map((a) => `${a.local}/${a.prefixlen}`);
};

describe.each(hosts)("floating IP addresses on the gateway after the apply (%s)", (_, make) => {
  it("an address already there or already gone is no error; any other failure names the lines and the namespace", async () => {
    const host = (disposing = await make());
    const { runner, namespace } = host;
    const ip = (...args: string[]) => runner.exec("ip", args, { namespace });
    // The gateway device, as someone else plugs it (noop driver).
    await ip("link", "add", QG, "type", "veth", "peer", "name", "qg-peer");
    await ip("link", "set", "qg-peer", "up");
    await ip("link", "set", QG, "up");
    const sync = async (next: Router, settled: Router | undefined) => {
      const r = await syncRouterDevices({ runner, namespace, logger, driver: new NoopInterfaceDriver(), router: next, settled, full: settled === undefined });
      // Only the addresses: the conntrack cleanup has tests of its own.
      const [addresses, ...others] = r.postApply;
      for (const task of others) task.cancel?.();
      expect(addresses!.description).toMatch(/^floating IP addresses on qg-a1b2c3d4-00/);
      return addresses!;
    };

    const first = router(3);
    await (await sync(first, undefined)).run();
    expect(await ipv4(runner, namespace)).toEqual(["200.200.128.2/24", "200.200.128.3/32"]);

    // Behind our back, the next floating IP's address came, then the last one's went: the line fails, harmlessly.
    await ip("addr", "add", "200.200.128.4/32", "dev", QG);
    const second = router(3, 4);
    await (await sync(second, first)).run();
    expect(await ipv4(runner, namespace)).toEqual(["200.200.128.2/24", "200.200.128.3/32", "200.200.128.4/32"]);
    await ip("addr", "del", "200.200.128.3/32", "dev", QG);
    const third = router(4);
    await (await sync(third, second)).run();
    expect(await ipv4(runner, namespace)).toEqual(["200.200.128.2/24", "200.200.128.4/32"]);

    // The device went: each line fails for it.
    await ip("link", "del", QG);
    const err = await (await sync(router(5), third)).run().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FloatingIpAddressError);
    expect(err).toMatchObject({
      code: "FLOATING_IP_ADDRESSES_FAILED",
      resource: `router/${ID}`,
      namespace,
      failures: [
        { line: 1, command: `address add 200.200.128.5/32 scope global dev ${QG}`, error: `Cannot find device "${QG}"` },
        { line: 2, command: `address del 200.200.128.4/32 dev ${QG}`, error: `Cannot find device "${QG}"` },
      ],
    });
    expect((err as Error).message).toBe(
      `router ${ID}: floating IP addresses in namespace ${namespace} failed: ` +
        `line 1 (address add 200.200.128.5/32 scope global dev ${QG}): Cannot find device "${QG}"; ` +
        `line 2 (address del 200.200.128.4/32 dev ${QG}): Cannot find device "${QG}"`,
    );
  });
});

describe("floatingIpBatchFailures", () => {
  const lines = ["address add 200.200.128.5/32 scope global dev qg", "address del 200.200.128.4/32 dev qg", "address add 2001:db8::5/128 scope global dev qg"];
  const failures = (exitCode: number, stderr: string) => floatingIpBatchFailures(lines, { stdout: "", stderr, exitCode });

  it("lets through exactly ip's words for an address there already (add) or gone already (del), IPv4 and IPv6", () => {
    expect(failures(0, "")).toEqual([]);
    expect(failures(1, "Error: ipv4: Address already assigned.\nCommand failed -:1\nError: ipv4: Address not found.\nCommand failed -:2\nError: ipv6: address already assigned.\nCommand failed -:3\n")).toEqual([]);
    // The right words for the wrong verb are not.
    expect(failures(1, "Error: ipv4: Address not found.\nCommand failed -:1\n")).toEqual([{ line: 1, command: lines[0], error: "Error: ipv4: Address not found." }]);
    expect(failures(1, "Error: ipv6: address not found.\nCommand failed -:3\n")).toEqual([{ line: 3, command: lines[2], error: "Error: ipv6: address not found." }]);
    // Another message, or one with more to it.
    expect(failures(1, "RTNETLINK answers: File exists\nCommand failed -:1\n")).toEqual([{ line: 1, command: lines[0], error: "RTNETLINK answers: File exists" }]);
    expect(failures(1, "Error: ipv4: Address already assigned.\nand more\nCommand failed -:1\n")).toHaveLength(1);
  });

  it("fails the whole batch when ip gave up on it or exited otherwise", () => {
    const gone = 'Cannot open network namespace "qrouter-x": No such file or directory\n';
    expect(failures(255, gone)).toEqual([{ line: 0, command: "ip -force -batch - (exit 255)", error: gone.trim() }]);
    expect(failures(1, "")).toEqual([{ line: 0, command: "ip -force -batch - (exit 1)", error: "" }]);
    expect(failures(1, "Error: ipv4: Address already assigned.\nCommand failed -:1\nError: argument \"x\" is wrong\n")).toEqual([
      { line: 0, command: "ip -force -batch - (exit 1)", error: 'Error: argument "x" is wrong' },
    ]);
  });
});
