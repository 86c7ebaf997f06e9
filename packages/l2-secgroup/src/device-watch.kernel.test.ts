/**
 * The device monitor on the real host: a FirewallNamespace given a waker runs a real
 * `ip -o monitor link` in a namespace the test creates (and always deletes); a tap the test adds
 * there wakes it, the next reconcile filters the port, and the tap's deletion wakes it again.
 */
import { spawnSync } from "node:child_process";
import { ExecaRunner, IptablesManager, NamespaceGoneError, normalizeSave } from "@chainwarden/core";
import { createNetns, isRoot, type TestNetns } from "@chainwarden/testing";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { iptablesFlavor } from "./firewall-flavor.js";
import { FirewallNamespace } from "./firewall-namespace.js";
import { resources } from "./test-support/fixtures.js";

describe("the device monitor on the real kernel", () => {
  let runner: ExecaRunner;
  let netns: TestNetns | undefined;
  let fw: FirewallNamespace | undefined;

  beforeAll(() => {
    if (!isRoot()) throw new Error("these tests create network namespaces: run them as root");
    runner = new ExecaRunner({ backend: "nft" });
  });
  afterEach(async () => {
    fw?.stopWatching();
    await netns?.delete();
    netns = undefined;
  });
  afterAll(() => runner.close());

  const until = async (what: string, check: () => boolean | Promise<boolean>) => {
    for (let i = 0; i < 400; i++) {
      if (await check()) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`timed out waiting for ${what}`);
  };

  it("a tap that appears, then goes, wakes the namespace each time; nothing runs after stopWatching", async () => {
    netns = await createNetns("cw-devw");
    const ns = netns.name;
    const manager = new IptablesManager({ runner, namespace: ns, wrapName: iptablesFlavor.defaultWrapName, stateless: true });
    fw = new FirewallNamespace({ runner, namespace: ns, flavor: iptablesFlavor, enableIpset: false });
    let wakes = 0;
    const wake = () => void wakes++;
    // p0's tap is a probe: seen reported once, the monitor has subscribed (ip subscribes right
    // after it starts; a device added before that is left to the poll, which this test has not).
    const desired = resources({ ports: [{ id: "p0", device: "tapdevw0000-00", ip: "10.0.0.4" }, { id: "p1", device: "tapdevw0001-01", ip: "10.0.0.5" }] });
    const reconcile = async () => (await manager.deferApply(() => fw!.reconcile(manager, desired, { wake }))).value;
    const save = async () => normalizeSave(await runner.save({ namespace: ns, family: 4 }));
    const ip = async (...args: string[]) => {
      const r = await runner.exec("ip", args, { namespace: ns, reject: false });
      expect(r.exitCode, r.stderr).toBe(0);
    };

    expect((await reconcile()).waitingForDevice).toEqual(["p0", "p1"]);
    expect(fw.watchingDevices).toBe(true);
    const pids = async () => (await runner.exec("ip", ["netns", "pids", ns])).stdout.split("\n").filter(Boolean);
    expect(await pids()).toHaveLength(1);
    for (let i = 0; wakes === 0 && i < 20; i++) {
      await ip("link", "add", "tapdevw0000-00", "type", "veth", "peer", "name", "vmdevw0000");
      for (let j = 0; wakes === 0 && j < 20; j++) await new Promise((r) => setTimeout(r, 10));
      if (wakes === 0) await ip("link", "del", "tapdevw0000-00");
    }
    expect(wakes).toBe(1);
    expect((await reconcile()).waitingForDevice).toEqual(["p1"]);
    wakes = 0;

    // Another device wakes nothing; the port's tap does.
    await ip("link", "add", "eth9", "type", "veth", "peer", "name", "eth9p");
    await ip("link", "add", "tapdevw0001-01", "type", "veth", "peer", "name", "vmdevw0001");
    await until("the tap to wake the namespace", () => wakes >= 1);
    expect(wakes).toBe(1);
    expect((await reconcile()).waitingForDevice).toEqual([]);
    expect(await save()).toContain("-A neutron-linuxbri-sg-chain -m physdev --physdev-out tapdevw0001-01 --physdev-is-bridged");

    // Up and down on a tap already filtered: no wake. Nor when it joins a bridge and leaves it
    // (which the monitor prints as a Deleted line of the bridge's port, the device staying).
    await ip("link", "set", "tapdevw0001-01", "up");
    await ip("link", "add", "brqdevw", "type", "bridge");
    await ip("link", "set", "tapdevw0001-01", "master", "brqdevw");
    await ip("link", "set", "tapdevw0001-01", "nomaster");
    await new Promise((r) => setTimeout(r, 200));
    expect(wakes).toBe(1);

    await ip("link", "del", "tapdevw0001-01");
    await until("the deletion to wake the namespace", () => wakes >= 2);
    expect((await reconcile()).waitingForDevice).toEqual(["p1"]);
    expect(await save()).not.toContain("tapdevw0001-01");

    fw.stopWatching();
    await until("the monitor to end", async () => (await pids()).length === 0);
    await ip("link", "add", "tapdevw0001-01", "type", "veth", "peer", "name", "vmdevw0001");
    await new Promise((r) => setTimeout(r, 200));
    expect(wakes).toBe(2);
  });

  it("a namespace deleted under it: the next reconcile fails as NamespaceGone and the monitor goes", async () => {
    netns = await createNetns("cw-devw");
    const ns = netns.name;
    const manager = new IptablesManager({ runner, namespace: ns, wrapName: iptablesFlavor.defaultWrapName, stateless: true });
    fw = new FirewallNamespace({ runner, namespace: ns, flavor: iptablesFlavor, enableIpset: false });
    const desired = resources({ ports: [{ id: "p1", device: "tapdevw0002-02", ip: "10.0.0.6" }] });
    const reconcile = () => manager.deferApply(() => fw!.reconcile(manager, desired, { wake: () => undefined }));
    await reconcile();
    expect(fw.watchingDevices).toBe(true);
    const monitors = async () => spawnSync("pgrep", ["-f", `^ip -n ${ns} -o monitor link`], { encoding: "utf8" }).stdout.split("\n").filter(Boolean);
    expect(await monitors()).toHaveLength(1);
    await netns.delete();
    netns = undefined;
    await expect(reconcile()).rejects.toBeInstanceOf(NamespaceGoneError);
    expect(fw.watchingDevices).toBe(false);
    await until("the monitor process to end", async () => (await monitors()).length === 0);
  });
});
