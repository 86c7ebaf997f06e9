/**
 * TapDevices on the fake host: taps come and go with `host.ip.addDevice`/`removeDevice` (as Nova
 * plugs them) and real `ip` commands through the host, the link monitor is FakeIp's (checked against
 * the real `ip -o monitor link` by its contract suite).
 */
import { FakeHost } from "@chainwarden/testing";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { parseLinkNames, tapName, TapDevices } from "./tap-devices.js";

const NS = "compute";
const A = tapName("8efcae70-0912-4043-b35a-05cc8666074e");
const B = tapName("0b878899-98b8-4890-bb7c-5e0591fe2ebe");

const watched: TapDevices[] = [];
afterEach(() => {
  for (const t of watched.splice(0)) t.stop();
});

function setup(options: { host?: FakeHost; pollMs?: number } = {}) {
  const host = options.host ?? new FakeHost({ namespaces: [NS] });
  const changes: { added: string[]; removed: string[] }[] = [];
  const taps = new TapDevices({
    runner: host,
    namespace: NS,
    pollMs: options.pollMs ?? 60_000,
    logger: pino({ level: "silent" }),
    onChange: (added, removed) => changes.push({ added: [...added], removed: [...removed] }),
  });
  watched.push(taps);
  return { host, taps, changes };
}

describe("TapDevices", () => {
  it("lists the taps Neutron names for ports, nothing else, and reports them as added", async () => {
    const t = setup();
    t.host.ip.addDevice(NS, A, "brq0123456789a", "vxlan-1916", "tap-not-a-port", "tapdhcp");
    await t.taps.start();
    expect([...t.taps.devices]).toEqual([A]);
    expect(t.changes).toEqual([{ added: [A], removed: [] }]);
  });

  it("the link monitor reports a tap as soon as it comes or goes (no poll needed)", async () => {
    const t = setup();
    await t.taps.start();
    t.host.ip.addDevice(NS, A, B);
    await expect.poll(() => t.changes.flatMap((c) => c.added).sort()).toEqual([A, B].sort());
    t.host.ip.removeDevice(NS, A);
    await expect.poll(() => t.changes.flatMap((c) => c.removed)).toEqual([A]);
    expect([...t.taps.devices]).toEqual([B]);
    expect(t.host.ip.deviceLists).toBeLessThan(10);
  });

  it("a tap leaving its bridge (the bridge prints Deleted for it) is still there", async () => {
    const t = setup();
    await t.host.exec("ip", ["link", "add", "brqa", "type", "bridge"], { namespace: NS });
    t.host.ip.addDevice(NS, A);
    await t.host.exec("ip", ["link", "set", A, "master", "brqa"], { namespace: NS });
    await t.taps.start();
    await t.host.exec("ip", ["link", "set", A, "nomaster"], { namespace: NS });
    await t.taps.relist();
    await new Promise((r) => setTimeout(r, 20));
    expect(t.changes).toEqual([{ added: [A], removed: [] }]);
  });

  it("a monitor that ends is started again after a second; a tap that came meanwhile is found then", async () => {
    const t = setup();
    await t.taps.start();
    expect(t.host.ip.monitorCount(NS)).toBe(1);
    t.host.ip.killMonitors(NS);
    expect(t.taps.watching).toBe(false);
    t.host.ip.addDevice(NS, A);
    await new Promise((r) => setTimeout(r, 300));
    expect(t.host.ip.monitorCount(NS)).toBe(0);
    await expect.poll(() => t.host.ip.monitorCount(NS), { timeout: 3000 }).toBe(1);
    expect(t.taps.watching).toBe(true);
    await expect.poll(() => [...t.taps.devices]).toEqual([A]);
    expect(t.host.ip.monitorStarts).toBe(2);
    // And it works again.
    t.host.ip.addDevice(NS, B);
    await expect.poll(() => t.taps.devices.has(B)).toBe(true);
  });

  it("without a monitor the poll finds the taps", async () => {
    const host = new FakeHost({ namespaces: [NS], ip: { watch: false } });
    const t = setup({ host, pollMs: 20 });
    await t.taps.start();
    t.host.ip.addDevice(NS, A);
    await expect.poll(() => [...t.taps.devices]).toEqual([A]);
  });

  it("a listing that fails keeps the taps known (not knowing is not 'none')", async () => {
    const t = setup();
    t.host.ip.addDevice(NS, A);
    await t.taps.start();
    t.host.ip.deleteNamespace(NS);
    await t.taps.relist();
    expect([...t.taps.devices]).toEqual([A]);
    expect(t.changes).toEqual([{ added: [A], removed: [] }]);
  });

  it("parseLinkNames reads `ip -o link show`", () => {
    const text = [
      "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00",
      `7: ${A}@if6: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue master brqfd459777-5e state UP mode DEFAULT group default qlen 1000\\    link/ether 4e:1c:2f:00:00:01 brd ff:ff:ff:ff:ff:ff link-netns vm1`,
      "",
    ].join("\n");
    expect(parseLinkNames(text)).toEqual(["lo", A]);
  });
});
