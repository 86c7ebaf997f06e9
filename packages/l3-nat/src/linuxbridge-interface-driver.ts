import { CommandError, validateNamespaceName } from "@chainwarden/core";
import { bridgeName, tapDeviceName } from "./device-names.js";
import type { InterfaceDriver, InterfaceDriverContext, PlugRequest } from "./interface-driver.js";

export interface LinuxbridgeInterfaceDriverOptions {
  /**
   * Where the bridges and the outer veth ends live: the host's namespace when undefined (as with
   * Neutron's linuxbridge agent). A namespace of its own isolates a lab or a test from the host.
   */
  bridgeNamespace?: string | undefined;
}

/**
 * Neutron's `BridgeInterfaceDriver`: a veth pair per port, the inner end (`qr-…`/`qg-…`, with the
 * port's MAC and MTU) in the router namespace, the outer end (`tap<port id[:11]>`) in the network's
 * bridge `brq<network id[:11]>`. A missing bridge is created, as the linuxbridge agent's
 * `ensure_bridge` would; bridges are never deleted here (they carry the network's other ports and
 * belong to the L2 agent).
 */
export class LinuxbridgeInterfaceDriver implements InterfaceDriver {
  readonly name = "linuxbridge";
  private readonly bridgeNamespace: string | undefined;
  /** Bridges this driver made sure of (many routers share the external network's). */
  private readonly bridges = new Set<string>();

  constructor(options: LinuxbridgeInterfaceDriverOptions = {}) {
    if (options.bridgeNamespace !== undefined) validateNamespaceName(options.bridgeNamespace);
    this.bridgeNamespace = options.bridgeNamespace;
  }

  async plug(context: InterfaceDriverContext, request: PlugRequest): Promise<"ready" | "missing"> {
    if (request.existing.has(request.device)) return "ready";
    const { runner, namespace } = context;
    const outer = { namespace: this.bridgeNamespace };
    const inner = { namespace };
    const tap = tapDeviceName(request.port.id);
    const bridge = bridgeName(request.port.network_id);
    if (!this.bridges.has(bridge)) {
      const created = await runner.exec("ip", ["link", "add", bridge, "type", "bridge"], { ...outer, reject: false });
      if (created.exitCode !== 0 && !/exists/i.test(created.stderr)) {
        throw new CommandError(["ip", "link", "add", bridge, "type", "bridge"], created.exitCode, created.stderr, outer);
      }
      await runner.exec("ip", ["link", "set", bridge, "up"], outer);
      this.bridges.add(bridge);
    }
    // A veth pair lives and dies as one: deleting the router namespace deletes the tap too, so an
    // existing tap of this name belongs to another live port (one whose id shares the first 11
    // characters). It is never deleted here.
    const mtu = request.port.mtu ? [`link set ${tap} mtu ${request.port.mtu}`] : [];
    const outerLines = [`link add ${tap} type veth peer name ${request.device} netns ${namespace}`, ...mtu, `link set ${tap} master ${bridge} up`];
    const added = await runner.exec("ip", ["-batch", "-"], { ...outer, input: `${outerLines.join("\n")}\n`, reject: false });
    if (added.exitCode !== 0) {
      // The bridge may have gone behind us: ensure it again next time.
      this.bridges.delete(bridge);
      const why = /exists/i.test(added.stderr) ? `${added.stderr.trim()} (device ${tap} is another port's: port ids must differ in their first 11 characters)` : added.stderr;
      throw new CommandError(["ip", "-batch", "-", ...outerLines], added.exitCode, why, outer);
    }
    const innerLines = [
      ...(request.port.mac_address ? [`link set ${request.device} address ${request.port.mac_address}`] : []),
      ...(request.port.mtu ? [`link set ${request.device} mtu ${request.port.mtu}`] : []),
      `link set ${request.device} up`,
    ];
    if (request.linkSetup) request.linkSetup.push(...innerLines);
    else await runner.exec("ip", ["-batch", "-"], { ...inner, input: `${innerLines.join("\n")}\n` });
    return "ready";
  }

  /** Deleting the inner end deletes the pair. */
  async unplug(context: InterfaceDriverContext, device: string): Promise<void> {
    const r = await context.runner.exec("ip", ["link", "del", device], { namespace: context.namespace, reject: false });
    if (r.exitCode !== 0 && !/Cannot find device|does not exist/i.test(r.stderr)) {
      throw new CommandError(["ip", "link", "del", device], r.exitCode, r.stderr, { namespace: context.namespace });
    }
  }
}
