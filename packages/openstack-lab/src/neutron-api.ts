/** A Neutron API object as the server returns it (`id` and whatever the resource has). */
export type NeutronResource = { id: string } & Record<string, unknown>;

/** The body of a create or update: the resource's fields (`name`, `network_id`, ...). */
export type NeutronFields = Record<string, unknown>;

/** The project every request of the lab acts in: noauth's `fake_project_id`, an admin. */
export const NOAUTH_PROJECT_ID = "fake_project_id";

/** A request the server refused: its HTTP status and its own `NeutronError` type and message. */
export class NeutronApiError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    readonly serverMessage: string,
    readonly request: string,
  ) {
    super(`${request}: ${status} ${type}: ${serverMessage}`);
    this.name = "NeutronApiError";
  }
}

/**
 * A small client of Neutron's REST API for tests (what an end-to-end test of an l3 agent and a
 * security-group l2 agent needs), for a server with `auth_strategy = noauth`. Without token headers
 * noauth makes every request an admin of {@link NOAUTH_PROJECT_ID}; sending `X-Project-Id` would
 * instead give an admin context with no project at all, and every create would then need
 * `project_id` in its body ("Running without keystone AuthN requires that tenant_id is specified").
 * So no auth headers are sent; a test that wants another project puts `project_id` in the body.
 */
export class NeutronApi {
  constructor(
    /** `http://127.0.0.1:<port>` (`NeutronServerLab.url`). */
    readonly url: string,
  ) {}

  /** Any request under `/v2.0`; resolves with the parsed JSON (undefined for 204), throws {@link NeutronApiError}. */
  async request<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    const request = `${method} ${path}`;
    const response = await fetch(`${this.url}/v2.0${path}`, {
      method,
      headers: body === undefined ? { Accept: "application/json" } : { Accept: "application/json", "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(60_000),
    });
    const text = await response.text();
    if (!response.ok) {
      let type = response.statusText;
      let message = text;
      try {
        const error = (JSON.parse(text) as { NeutronError?: { type?: string; message?: string } }).NeutronError;
        if (error) {
          type = error.type ?? type;
          message = error.message ?? text;
        }
      } catch {
        // not JSON: the text as it came
      }
      throw new NeutronApiError(response.status, type, message, request);
    }
    return (text ? JSON.parse(text) : undefined) as T;
  }

  private async create(collection: string, resource: string, fields: NeutronFields): Promise<NeutronResource> {
    return (await this.request<Record<string, NeutronResource>>("POST", `/${collection}`, { [resource]: fields }))[resource]!;
  }

  private async show(collection: string, resource: string, id: string): Promise<NeutronResource> {
    return (await this.request<Record<string, NeutronResource>>("GET", `/${collection}/${id}`))[resource]!;
  }

  private async update(collection: string, resource: string, id: string, fields: NeutronFields): Promise<NeutronResource> {
    return (await this.request<Record<string, NeutronResource>>("PUT", `/${collection}/${id}`, { [resource]: fields }))[resource]!;
  }

  private async list(collection: string, filters: Record<string, string> = {}): Promise<NeutronResource[]> {
    const query = new URLSearchParams(filters).toString();
    return (await this.request<Record<string, NeutronResource[]>>("GET", `/${collection}${query ? `?${query}` : ""}`))[collection]!;
  }

  private async remove(collection: string, id: string): Promise<void> {
    await this.request("DELETE", `/${collection}/${id}`);
  }

  // Networks and subnets

  createNetwork(fields: NeutronFields = {}): Promise<NeutronResource> {
    return this.create("networks", "network", fields);
  }

  /** An external network on a flat provider network (`NeutronServerLab.physicalNetwork`), as routers' gateways use. */
  createExternalNetwork(physicalNetwork: string, fields: NeutronFields = {}): Promise<NeutronResource> {
    return this.createNetwork({
      "router:external": true,
      "provider:network_type": "flat",
      "provider:physical_network": physicalNetwork,
      ...fields,
    });
  }

  getNetwork(id: string): Promise<NeutronResource> {
    return this.show("networks", "network", id);
  }

  deleteNetwork(id: string): Promise<void> {
    return this.remove("networks", id);
  }

  /** Needs `network_id`, `cidr`, `ip_version` (4 by default here). */
  createSubnet(fields: NeutronFields): Promise<NeutronResource> {
    return this.create("subnets", "subnet", { ip_version: 4, ...fields });
  }

  deleteSubnet(id: string): Promise<void> {
    return this.remove("subnets", id);
  }

  // Ports

  /** Needs `network_id`; e.g. `fixed_ips`, `security_groups`, `device_owner`, `device_id`, `binding:host_id`. */
  createPort(fields: NeutronFields): Promise<NeutronResource> {
    return this.create("ports", "port", fields);
  }

  getPort(id: string): Promise<NeutronResource> {
    return this.show("ports", "port", id);
  }

  updatePort(id: string, fields: NeutronFields): Promise<NeutronResource> {
    return this.update("ports", "port", id, fields);
  }

  listPorts(filters: Record<string, string> = {}): Promise<NeutronResource[]> {
    return this.list("ports", filters);
  }

  deletePort(id: string): Promise<void> {
    return this.remove("ports", id);
  }

  // Routers

  createRouter(fields: NeutronFields = {}): Promise<NeutronResource> {
    return this.create("routers", "router", fields);
  }

  getRouter(id: string): Promise<NeutronResource> {
    return this.show("routers", "router", id);
  }

  updateRouter(id: string, fields: NeutronFields): Promise<NeutronResource> {
    return this.update("routers", "router", id, fields);
  }

  /** Sets the router's gateway on an external network (`external_gateway_info`); `extra` e.g. `{ external_fixed_ips }`. */
  setRouterGateway(id: string, networkId: string, extra: NeutronFields = {}): Promise<NeutronResource> {
    return this.updateRouter(id, { external_gateway_info: { network_id: networkId, ...extra } });
  }

  clearRouterGateway(id: string): Promise<NeutronResource> {
    return this.updateRouter(id, { external_gateway_info: {} });
  }

  /** `{ subnet_id }` or `{ port_id }`; resolves with the server's answer (`port_id`, `subnet_id`, ...). */
  addRouterInterface(id: string, which: { subnet_id: string } | { port_id: string }): Promise<NeutronFields> {
    return this.request("PUT", `/routers/${id}/add_router_interface`, which);
  }

  removeRouterInterface(id: string, which: { subnet_id: string } | { port_id: string }): Promise<NeutronFields> {
    return this.request("PUT", `/routers/${id}/remove_router_interface`, which);
  }

  deleteRouter(id: string): Promise<void> {
    return this.remove("routers", id);
  }

  // Floating IPs

  /** Needs `floating_network_id`; `port_id` (and `fixed_ip_address`) associates it at once. */
  createFloatingIp(fields: NeutronFields): Promise<NeutronResource> {
    return this.create("floatingips", "floatingip", fields);
  }

  /** The floating IP, e.g. its `status` (`DOWN` until an l3 agent reports it `ACTIVE`). */
  getFloatingIp(id: string): Promise<NeutronResource> {
    return this.show("floatingips", "floatingip", id);
  }

  associateFloatingIp(id: string, portId: string, fixedIpAddress?: string): Promise<NeutronResource> {
    return this.update("floatingips", "floatingip", id, fixedIpAddress ? { port_id: portId, fixed_ip_address: fixedIpAddress } : { port_id: portId });
  }

  disassociateFloatingIp(id: string): Promise<NeutronResource> {
    return this.update("floatingips", "floatingip", id, { port_id: null });
  }

  deleteFloatingIp(id: string): Promise<void> {
    return this.remove("floatingips", id);
  }

  // Security groups

  /** A new group comes with Neutron's two egress rules (IPv4 and IPv6, any destination). */
  createSecurityGroup(fields: NeutronFields = {}): Promise<NeutronResource> {
    return this.create("security-groups", "security_group", fields);
  }

  getSecurityGroup(id: string): Promise<NeutronResource> {
    return this.show("security-groups", "security_group", id);
  }

  deleteSecurityGroup(id: string): Promise<void> {
    return this.remove("security-groups", id);
  }

  /** Needs `security_group_id` and `direction`; `ethertype` is IPv4 unless given. */
  createSecurityGroupRule(fields: NeutronFields): Promise<NeutronResource> {
    return this.create("security-group-rules", "security_group_rule", { ethertype: "IPv4", ...fields });
  }

  deleteSecurityGroupRule(id: string): Promise<void> {
    return this.remove("security-group-rules", id);
  }

  // Agents

  /** `/v2.0/agents`, e.g. `{ agent_type: "L3 agent", host: "h" }`; each has `alive`, `configurations`, ... */
  listAgents(filters: Record<string, string> = {}): Promise<NeutronResource[]> {
    return this.list("agents", filters);
  }

  getAgent(id: string): Promise<NeutronResource> {
    return this.show("agents", "agent", id);
  }

  /** E.g. `{ admin_state_up: false }`. */
  updateAgent(id: string, fields: NeutronFields): Promise<NeutronResource> {
    return this.update("agents", "agent", id, fields);
  }

  deleteAgent(id: string): Promise<void> {
    return this.remove("agents", id);
  }

  /** The routers scheduled to an l3 agent (`/v2.0/agents/<id>/l3-routers`). */
  async listL3AgentRouters(agentId: string): Promise<NeutronResource[]> {
    return (await this.request<{ routers: NeutronResource[] }>("GET", `/agents/${agentId}/l3-routers`)).routers;
  }

  /** The l3 agents a router is scheduled to (`/v2.0/routers/<id>/l3-agents`). */
  async listRouterL3Agents(routerId: string): Promise<NeutronResource[]> {
    return (await this.request<{ agents: NeutronResource[] }>("GET", `/routers/${routerId}/l3-agents`)).agents;
  }

  /** Schedules a router to an l3 agent by hand (with `router_auto_schedule` off, or to move it). */
  async addRouterToL3Agent(agentId: string, routerId: string): Promise<void> {
    await this.request("POST", `/agents/${agentId}/l3-routers`, { router_id: routerId });
  }

  async removeRouterFromL3Agent(agentId: string, routerId: string): Promise<void> {
    await this.request("DELETE", `/agents/${agentId}/l3-routers/${routerId}`);
  }
}
