import { describe, expect, it } from "vitest";
import { iptablesFlavor } from "./firewall-flavor.js";
import { parsePortInfo } from "./port-info.js";
import { loadServerPayload, SERVER_PAYLOADS } from "./test-support/server-payload.js";

const devicesOf = (name: string) => loadServerPayload(name, false).payload["devices"] as Record<string, Record<string, unknown>>;

describe("parsePortInfo on real Neutron server port dicts", () => {
  // Every device of the recorded answers: ML2's port dict (binding:*, extra_dhcp_opts, tags,
  // timestamps, security_group_source_groups, ...) plus the server's provider rules.
  const all = SERVER_PAYLOADS.flatMap((name) => Object.entries(devicesOf(name)).map(([id, port]) => ({ name, id, port })));

  it.each(all)("$name $id is accepted", ({ id, port }) => {
    const r = parsePortInfo(id, port, iptablesFlavor);
    expect("issues" in r ? r.issues : []).toEqual([]);
  });

  it("reads what the driver uses and ignores the rest", () => {
    const id = "2a3b4c5d-6e7f-4a8b-9c0d-e1f2a3b4c5a6";
    const raw = devicesOf("server_dual_stack")[id]!;
    for (const key of ["binding:vif_details", "security_group_source_groups", "security_group_remote_address_groups", "extra_dhcp_opts", "revision_number"]) {
      expect(raw).toHaveProperty([key]);
    }
    const r = parsePortInfo(id, raw, iptablesFlavor);
    if ("issues" in r) throw new Error(JSON.stringify(r.issues));
    const { security_group_rules: rules, ...port } = r.port;
    expect(port).toEqual({
      id,
      device: "tap2a3b4c5d-6e",
      mac_address: "fa:16:3e:d0:00:05",
      fixed_ips: ["10.30.0.5", "2001:db8:d0::5"],
      allowed_address_pairs: [
        { ip_address: "10.30.0.128/28", version: 4, host: false, mac_address: "fa:16:3e:d0:00:05" },
        { ip_address: "2001:db8:d0::80", version: 6, host: true, mac_address: "fa:16:3e:d0:00:80" },
      ],
      security_groups: ["ad000000-0000-4000-8000-0000000000a1"],
      port_security_enabled: true,
      device_owner: "compute:nova",
      network_id: "ad000000-0000-4000-8000-000000000001",
    });
    // The provider rules: router advertisements (ICMPv6 type 134), then DHCP to each fixed IP and
    // broadcast, DHCPv6 to each fixed IP and link-local.
    expect(rules[0]).toEqual({ direction: "ingress", ethertype: "IPv6", protocol: 58, conntrack_protocol: "icmpv6", port_range_min: 134, stateful: true });
    expect(rules.slice(1).map((x) => [x.ethertype, x.dest_ip_prefix, x.source_port_range_min, x.port_range_min])).toEqual([
      ["IPv4", "10.30.0.5/32", 67, 68],
      ["IPv4", "255.255.255.255/32", 67, 68],
      ["IPv6", "2001:db8:d0::5/128", 547, 546],
      ["IPv6", "fe80::/64", 547, 546],
    ]);
  });

  it("takes a port without port security (no groups) as unfiltered", () => {
    const id = "e0f1a2b3-c4d5-4e6f-a7b8-c9d0e1f2a3c8";
    const r = parsePortInfo(id, devicesOf("server_dual_stack")[id], iptablesFlavor);
    if ("issues" in r) throw new Error(JSON.stringify(r.issues));
    expect(r.port).toMatchObject({ port_security_enabled: false, security_groups: [] });
  });
});
