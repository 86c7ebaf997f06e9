import { afterEach, describe, expect, it, vi } from "vitest";
import { DeviceWatch, parseLinkEvent, type LinkEvent } from "./device-watch.js";
import { FakeL2Host } from "./test-support/fake-l2-host.js";

describe("parseLinkEvent", () => {
  // Lines as `ip -o monitor link` (iproute2 6.x) printed them for a veth pair, a rename, a delete
  // and a bridge, in a test namespace.
  it.each([
    ["3: tapabc-00@peer0: <BROADCAST,MULTICAST,M-DOWN> mtu 1500 qdisc noop state DOWN group default \\    link/ether ba:91:ec:f8:8b:62 brd ff:ff:ff:ff:ff:ff", { name: "tapabc-00", deleted: false }],
    ["2: peer0@NONE: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN group default \\    link/ether 5e:46:4f:25:a7:05 brd ff:ff:ff:ff:ff:ff", { name: "peer0", deleted: false }],
    ["Deleted 3: tapxyz-11@NONE: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN group default \\    link/ether ba:91:ec:f8:8b:62 brd ff:ff:ff:ff:ff:ff", { name: "tapxyz-11", deleted: true }],
    ["4: br0: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN group default \\    link/ether 72:8a:fd:50:3a:ff brd ff:ff:ff:ff:ff:ff", { name: "br0", deleted: false }],
    ["17: tap0123456a-bc: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 master brq3f2a1b0c-9d state forwarding priority 32 cost 2", { name: "tap0123456a-bc", deleted: false }],
  ])("%s", (line, expected) => {
    expect(parseLinkEvent(line)).toEqual(expected);
  });

  it("ignores what is not a device line", () => {
    for (const line of ["", "    link/ether 00:00:00:00:00:00", "Timestamp: Sun Nov 22 05:00:00 2026", "[LINK]"]) expect(parseLinkEvent(line)).toBeUndefined();
  });
});

describe("DeviceWatch", () => {
  afterEach(() => vi.useRealTimers());

  it("runs one monitor, reports its events, and stops it", async () => {
    const host = new FakeL2Host({ namespaces: ["ns"] });
    const events: LinkEvent[] = [];
    const watch = new DeviceWatch({ runner: host, namespace: "ns", onEvent: (e) => events.push(e) });
    await watch.ensure();
    await watch.ensure();
    expect(host.monitorCount("ns")).toBe(1);
    host.addDevice("ns", "tapa");
    host.removeDevice("ns", "tapa");
    host.addDevice("other", "tapb");
    expect(events).toEqual([
      { name: "tapa", deleted: false },
      { name: "tapa", deleted: true },
    ]);
    watch.stop();
    expect(host.monitorCount("ns")).toBe(0);
    expect(watch.running).toBe(false);
  });

  it("a monitor that ends is started again after a back-off that grows while it reports nothing", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const host = new FakeL2Host({ namespaces: ["ns"] });
    const warnings: unknown[] = [];
    const logger = { debug: () => undefined, info: () => undefined, warn: (o: unknown) => void warnings.push(o), error: () => undefined };
    const watch = new DeviceWatch({ runner: host, namespace: "ns", logger: logger as never, onEvent: () => undefined });
    await watch.ensure();
    host.killMonitors("ns");
    expect(watch.running).toBe(false);
    expect(warnings).toHaveLength(1);
    await watch.ensure(); // within the back-off (1 s)
    expect(host.monitorCount("ns")).toBe(0);
    vi.advanceTimersByTime(1_000);
    await watch.ensure();
    expect(host.monitorCount("ns")).toBe(1);
    host.killMonitors("ns");
    vi.advanceTimersByTime(1_000);
    await watch.ensure(); // the second end in a row: 2 s
    expect(host.monitorCount("ns")).toBe(0);
    vi.advanceTimersByTime(1_000);
    await watch.ensure();
    expect(host.monitorCount("ns")).toBe(1);
    // An event shows it works: the next end starts over at 1 s.
    host.addDevice("ns", "tapa");
    host.killMonitors("ns");
    vi.advanceTimersByTime(1_000);
    await watch.ensure();
    expect(host.monitorCount("ns")).toBe(1);
    watch.stop();
  });

  it("a runner that throws, or reports the end from inside watch(), is a failed start with a back-off", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const host = new FakeL2Host({ namespaces: ["ns"] });
    const warnings: unknown[] = [];
    const logger = { debug: () => undefined, info: () => undefined, warn: (o: unknown) => void warnings.push(o), error: () => undefined };
    let mode: "throw" | "end-inside" = "throw";
    host.watch = (_command, _args, options) => {
      if (mode === "throw") throw new Error("no ip here");
      options.onExit?.(new Error("ended at once"));
      return { started: Promise.reject(new Error("ended at once")), stop: () => undefined };
    };
    const watch = new DeviceWatch({ runner: host, namespace: "ns", logger: logger as never, onEvent: () => undefined });
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
    const host = new FakeL2Host({ namespaces: ["ns"], monitorUnsupported: true });
    const watch = new DeviceWatch({ runner: host, namespace: "ns", onEvent: () => undefined });
    expect(watch.supported).toBe(false);
    await watch.ensure();
    expect(watch.running).toBe(false);
  });
});
