import { IptablesManager, type IpRunner } from "@chainwarden/core";
import { FakeHost } from "@chainwarden/testing";
import { afterEach, describe, expect, it, vi } from "vitest";
import { DeviceWatch, parseLinkEvent, type LinkEvent } from "./device-watch.js";
import { iptablesFlavor } from "./firewall-flavor.js";
import { FirewallNamespace } from "./firewall-namespace.js";
import { resources } from "./test-support/fixtures.js";

describe("parseLinkEvent", () => {
  // Lines as `ip -o monitor link` (iproute2 6.x) printed them for a veth pair, a rename, a delete
  // and a bridge, in a test namespace.
  it.each([
    ["3: tapabc-00@peer0: <BROADCAST,MULTICAST,M-DOWN> mtu 1500 qdisc noop state DOWN group default \\    link/ether ba:91:ec:f8:8b:62 brd ff:ff:ff:ff:ff:ff", { name: "tapabc-00", deleted: false }],
    ["2: peer0@NONE: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN group default \\    link/ether 5e:46:4f:25:a7:05 brd ff:ff:ff:ff:ff:ff", { name: "peer0", deleted: false }],
    ["Deleted 3: tapxyz-11@NONE: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN group default \\    link/ether ba:91:ec:f8:8b:62 brd ff:ff:ff:ff:ff:ff", { name: "tapxyz-11", deleted: true }],
    ["4: br0: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN group default \\    link/ether 72:8a:fd:50:3a:ff brd ff:ff:ff:ff:ff:ff", { name: "br0", deleted: false }],
    ["17: tap0123456a-bc: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 master brq3f2a1b0c-9d state forwarding priority 32 cost 2", { name: "tap0123456a-bc", deleted: false }],
    // A tap joining a bridge (Linux 6.1): its own line, then the bridge's view of the port.
    ["2: t1: <NO-CARRIER,BROADCAST,MULTICAST,UP> mtu 1450 qdisc pfifo_fast master br0 state DOWN group default \\    link/ether 4e:82:c0:5a:81:c3 brd ff:ff:ff:ff:ff:ff", { name: "t1", deleted: false }],
    ["2: t1: <NO-CARRIER,BROADCAST,MULTICAST,UP> mtu 1450 master br0 state DOWN \\    link/ether 4e:82:c0:5a:81:c3", { name: "t1", deleted: false }],
  ])("%s", (line, expected) => {
    expect(parseLinkEvent(line)).toEqual(expected);
  });

  it("ignores the bridge's view of a port that leaves it: the device stays (its own line says when it goes)", () => {
    // `ip link set t1 nomaster`, then `ip link del t1` while a port again (Linux 6.1, iproute2 6.1).
    expect(parseLinkEvent("Deleted 2: t1: <NO-CARRIER,BROADCAST,MULTICAST,UP> mtu 1450 master br0 state DOWN \\    link/ether 4e:82:c0:5a:81:c3")).toBeUndefined();
    expect(parseLinkEvent("Deleted 2: t1: <BROADCAST,MULTICAST> mtu 1450 master br0 state DOWN \\    link/ether 4e:82:c0:5a:81:c3")).toBeUndefined();
    expect(parseLinkEvent("Deleted 2: t1: <BROADCAST,MULTICAST> mtu 1450 qdisc noop state DOWN group default \\    link/ether 4e:82:c0:5a:81:c3 brd ff:ff:ff:ff:ff:ff")).toEqual({ name: "t1", deleted: true });
  });

  it("ignores what is not a device line", () => {
    for (const line of ["", "    link/ether 00:00:00:00:00:00", "Timestamp: Sun Nov 22 05:00:00 2026", "[LINK]"]) expect(parseLinkEvent(line)).toBeUndefined();
  });
});

describe("DeviceWatch", () => {
  afterEach(() => vi.useRealTimers());

  it("runs one monitor, reports its events, and stops it", async () => {
    const host = new FakeHost({ namespaces: ["ns", "other"] });
    const events: LinkEvent[] = [];
    const watch = new DeviceWatch({ runner: host, namespace: "ns", onEvent: (e) => events.push(e) });
    await watch.ensure();
    await watch.ensure();
    expect(host.ip.monitorCount("ns")).toBe(1);
    host.ip.addDevice("ns", "tapa");
    host.ip.removeDevice("ns", "tapa");
    host.ip.addDevice("other", "tapb");
    // As the real monitor prints it: the tap made (down), set up, deleted.
    expect(events).toEqual([
      { name: "tapa", deleted: false },
      { name: "tapa", deleted: false },
      { name: "tapa", deleted: true },
    ]);
    watch.stop();
    expect(host.ip.monitorCount("ns")).toBe(0);
    expect(watch.running).toBe(false);
  });

  it("a monitor that ends is started again after a back-off that grows while it reports nothing", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const host = new FakeHost({ namespaces: ["ns"] });
    const warnings: unknown[] = [];
    const logger = { debug: () => undefined, info: () => undefined, warn: (o: unknown) => void warnings.push(o), error: () => undefined };
    const watch = new DeviceWatch({ runner: host, namespace: "ns", logger: logger as never, onEvent: () => undefined });
    await watch.ensure();
    host.ip.killMonitors("ns");
    expect(watch.running).toBe(false);
    expect(warnings).toHaveLength(1);
    await watch.ensure(); // within the back-off (1 s)
    expect(host.ip.monitorCount("ns")).toBe(0);
    vi.advanceTimersByTime(1_000);
    await watch.ensure();
    expect(host.ip.monitorCount("ns")).toBe(1);
    host.ip.killMonitors("ns");
    vi.advanceTimersByTime(1_000);
    await watch.ensure(); // the second end in a row: 2 s
    expect(host.ip.monitorCount("ns")).toBe(0);
    vi.advanceTimersByTime(1_000);
    await watch.ensure();
    expect(host.ip.monitorCount("ns")).toBe(1);
    // An event shows it works: the next end starts over at 1 s.
    host.ip.addDevice("ns", "tapa");
    host.ip.killMonitors("ns");
    vi.advanceTimersByTime(1_000);
    await watch.ensure();
    expect(host.ip.monitorCount("ns")).toBe(1);
    watch.stop();
  });

  it("a runner that throws, or reports the end from inside watch(), is a failed start with a back-off", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const host = new FakeHost({ namespaces: ["ns"] });
    const warnings: unknown[] = [];
    const logger = { debug: () => undefined, info: () => undefined, warn: (o: unknown) => void warnings.push(o), error: () => undefined };
    let mode: "throw" | "end-inside" = "throw";
    // The host's ip, with a watch that fails as a broken runner's would.
    const runner: IpRunner = {
      exec: (command, args, options) => host.exec(command, args, options),
      watch: (_command, _args, options) => {
        if (mode === "throw") throw new Error("no ip here");
        options.onExit?.(new Error("ended at once"));
        return { started: Promise.reject(new Error("ended at once")), stop: () => undefined };
      },
    };
    const watch = new DeviceWatch({ runner, namespace: "ns", logger: logger as never, onEvent: () => undefined });
    await watch.ensure();
    expect(watch.running).toBe(false);
    expect(warnings).toHaveLength(1);
    vi.advanceTimersByTime(1_000);
    mode = "end-inside";
    await watch.ensure();
    expect(watch.running).toBe(false);
    expect(warnings).toHaveLength(2);
    await watch.ensure(); // within the 2 s back-off: not tried
    expect(warnings).toHaveLength(2);
  });

  it("does nothing on a runner that cannot watch", async () => {
    const host = new FakeHost({ namespaces: ["ns"], ip: { watch: false } });
    const watch = new DeviceWatch({ runner: host, namespace: "ns", onEvent: () => undefined });
    expect(watch.supported).toBe(false);
    await watch.ensure();
    expect(watch.running).toBe(false);
  });
});

describe("FirewallNamespace's device events", () => {
  it("a tap that leaves its bridge is not a tap that went: no wake (the monitor prints it as Deleted); its deletion wakes", async () => {
    const ns = "fw";
    const host = new FakeHost({ namespaces: [ns] });
    const manager = new IptablesManager({ runner: host, namespace: ns, wrapName: iptablesFlavor.defaultWrapName, stateless: true });
    const fw = new FirewallNamespace({ runner: host, namespace: ns, flavor: iptablesFlavor, enableIpset: false });
    const ip = (...args: string[]) => host.exec("ip", args, { namespace: ns });
    await ip("link", "add", "brq1", "type", "bridge");
    host.ip.addDevice(ns, "tapbr0001-01");
    await ip("link", "set", "tapbr0001-01", "master", "brq1");
    let wakes = 0;
    const desired = resources({ ports: [{ id: "p1", device: "tapbr0001-01", ip: "10.0.0.5" }] });
    const reconcile = async () => (await manager.deferApply(() => fw.reconcile(manager, desired, { wake: () => void wakes++ }))).value;
    expect((await reconcile()).waitingForDevice).toEqual([]);
    expect(fw.watchingDevices).toBe(true);
    const lines: string[] = [];
    const probe = host.ip.watch!("ip", ["-o", "monitor", "link"], { namespace: ns, onLine: (l) => void lines.push(l) });
    await ip("link", "set", "tapbr0001-01", "nomaster");
    expect(lines.some((l) => l.startsWith("Deleted ") && l.includes(" tapbr0001-01: "))).toBe(true);
    probe.stop();
    await ip("link", "set", "tapbr0001-01", "master", "brq1");
    expect(wakes).toBe(0);
    expect((await reconcile()).waitingForDevice).toEqual([]);
    host.ip.removeDevice(ns, "tapbr0001-01");
    expect(wakes).toBe(1);
    expect((await reconcile()).waitingForDevice).toEqual(["p1"]);
    fw.stopWatching();
  });
});
