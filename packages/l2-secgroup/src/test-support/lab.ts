/**
 * A datapath lab on the real kernel: one namespace holding a Linux bridge (with
 * `bridge-nf-call-iptables` on, so iptables sees bridged traffic and `-m physdev` matches), and one
 * namespace per "VM", joined to the bridge by a veth whose bridge end is the port's tap. Every name
 * is unique (namespaces come from `createNetns`); `delete()` removes everything, processes included,
 * and is safe to call after a failed setup. Processes are started from argument arrays, never a shell.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { createNetns, type TestNetns } from "@chainwarden/testing";

export interface LabVmSpec {
  /** The port's tap (the bridge end of the veth). */
  tap: string;
  ip: string;
  mac: string;
}

export interface LabVm extends LabVmSpec {
  netns: TestNetns;
}

export interface Lab {
  bridgeNs: TestNetns;
  bridge: string;
  vms: LabVm[];
  /** Creates another VM on the bridge (for the device-check test). */
  addVm(spec: LabVmSpec): Promise<LabVm>;
  /** Starts a long-running process in a VM; it is killed by `delete()`. */
  background(vm: LabVm, argv: string[]): BackgroundProcess;
  delete(): Promise<void>;
}

export interface BackgroundProcess {
  readonly child: ChildProcessWithoutNullStreams;
  /** Everything written to stdout so far. */
  output(): string;
  write(text: string): void;
  kill(): void;
}

async function ok(netns: TestNetns, argv: string[]): Promise<void> {
  await netns.exec(argv);
}

export async function createLab(bridge: string, vms: readonly LabVmSpec[]): Promise<Lab> {
  const created: TestNetns[] = [];
  const processes: BackgroundProcess[] = [];
  const bridgeNs = await createNetns("cw-l2dp-br");
  created.push(bridgeNs);
  const lab: Lab = {
    bridgeNs,
    bridge,
    vms: [],
    addVm: async (spec) => {
      const netns = await createNetns("cw-l2dp-vm");
      created.push(netns);
      await ok(bridgeNs, ["ip", "link", "add", spec.tap, "type", "veth", "peer", "name", "eth0", "netns", netns.name]);
      await ok(bridgeNs, ["ip", "link", "set", spec.tap, "master", bridge, "up"]);
      await ok(netns, ["ip", "link", "set", "lo", "up"]);
      await ok(netns, ["ip", "link", "set", "eth0", "address", spec.mac]);
      await ok(netns, ["ip", "addr", "add", `${spec.ip}/24`, "dev", "eth0"]);
      await ok(netns, ["ip", "link", "set", "eth0", "up"]);
      const vm = { ...spec, netns };
      lab.vms.push(vm);
      return vm;
    },
    background: (vm, argv) => {
      const child = spawn("ip", ["netns", "exec", vm.netns.name, ...argv], { stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, LC_ALL: "C" } });
      let out = "";
      child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
      child.stderr.resume();
      child.stdin.on("error", () => undefined);
      const p: BackgroundProcess = {
        child,
        output: () => out,
        write: (text) => void child.stdin.write(text),
        kill: () => void child.kill("SIGKILL"),
      };
      processes.push(p);
      return p;
    },
    delete: async () => {
      for (const p of processes) p.kill();
      // VMs first: their veth peers go with them, then the bridge namespace.
      for (const ns of created.reverse()) await ns.delete();
    },
  };
  try {
    // The bridge namespace's own switch: iptables must see bridged IPv4/IPv6 traffic.
    await ok(bridgeNs, ["sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1"]);
    await ok(bridgeNs, ["sysctl", "-q", "-w", "net.bridge.bridge-nf-call-ip6tables=1"]);
    await ok(bridgeNs, ["ip", "link", "set", "lo", "up"]);
    await ok(bridgeNs, ["ip", "link", "add", bridge, "type", "bridge"]);
    await ok(bridgeNs, ["ip", "link", "set", bridge, "up"]);
    for (const spec of vms) await lab.addVm(spec);
    return lab;
  } catch (err) {
    await lab.delete();
    throw err;
  }
}

/** Exit code of a command in a VM (0: it worked). */
export async function exitCode(vm: LabVm, argv: string[], input?: string): Promise<number> {
  return (await vm.netns.exec(argv, { reject: false, ...(input !== undefined ? { input } : {}) })).exitCode;
}

/** A TCP connection to ip:port completes (nc -z, 1 s timeout). */
export async function tcpConnects(vm: LabVm, ip: string, port: number): Promise<boolean> {
  return (await exitCode(vm, ["nc", "-z", "-w", "1", ip, String(port)])) === 0;
}

/** One ICMP echo gets an answer within a second. */
export async function pings(vm: LabVm, ip: string): Promise<boolean> {
  return (await exitCode(vm, ["ping", "-c", "1", "-W", "1", "-q", ip])) === 0;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Waits until `check` is true, up to `ms`. */
export async function eventually(check: () => boolean, ms = 3000): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (check()) return true;
    await sleep(50);
  }
  return check();
}
