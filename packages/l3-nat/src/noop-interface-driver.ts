import type { InterfaceDriver, InterfaceDriverContext, PlugRequest } from "./interface-driver.js";

/**
 * Neutron's `NullDriver`: something else (an operator, another agent, a test) creates the devices in
 * the router namespace. A missing one is reported as `missing`: the router logs it, applies its rules
 * anyway and is retried until the device shows up.
 */
export class NoopInterfaceDriver implements InterfaceDriver {
  readonly name = "noop";

  async plug(_context: InterfaceDriverContext, request: PlugRequest): Promise<"ready" | "missing"> {
    return request.existing.has(request.device) ? "ready" : "missing";
  }

  /** The devices are not ours to delete. */
  async unplug(): Promise<void> {}
}
