#!/usr/bin/python3
"""Neutron's own answers to `security_group_info_for_devices`, as they cross the wire.

Runs Debian's python3-neutron (Zed) server code in this process: the real ML2 plugin
(`Ml2Plugin`, type driver `flat`, mechanism driver `linuxbridge`, extension driver
`port_security`) on a throwaway SQLite database, the real API attribute handling
(`neutron_lib.plugins.utils` / `AttributeInfo`, as Neutron's own services create resources), and
the real RPC endpoint (`SecurityGroupServerRpcCallback.security_group_info_for_devices`, call
version 1.3, which runs `get_ports_from_devices` -> `get_ports_and_sgs` ->
`security_group_info_for_ports` -> `_apply_provider_rule`). Nothing of Neutron is reimplemented
here: this script only creates networks, subnets, security groups and ports through the plugin,
registers a Linux bridge agent so the ports bind as they would on a compute host, and asks the
endpoint for the devices a Linux bridge agent would ask about (`tap` + the port id's first 11
characters).

The answer is serialized as the RPC reply is (`oslo_serialization.jsonutils.dumps`: sets and
tuples become lists) and written, one file per scenario, to the output directory:
`<name>.payload.json` holds exactly the wire text.

Reproducibility: ids are given explicitly where the API lets an admin (or an internal caller)
give them, every other uuid comes from a counter (`uuidutils.generate_uuid` is replaced), the
clock is frozen (`timeutils.set_time_override`), and PYTHONHASHSEED is pinned (the member lists
are Python sets on the server, so their order on the wire depends on it).

Usage: server_payloads.py OUTPUT_DIR   (see README.md; `generate.py` runs it)
"""
import datetime
import itertools
import json
import os
import sys
import tempfile
import uuid

if os.environ.get("PYTHONHASHSEED") != "0":
    # Set iteration order (the member lists) depends on the hash seed: pin it, then start over.
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

from oslo_utils import timeutils, uuidutils  # noqa: E402

_counter = itertools.count(1)


def _generated_uuid(dashed=True):
    value = str(uuid.UUID(int=(0xC0FFEE << 96) | next(_counter), version=4))
    return value if dashed else value.replace("-", "")


uuidutils.generate_uuid = _generated_uuid
timeutils.set_time_override(datetime.datetime(2026, 11, 23, 12, 0, 0))

from oslo_config import cfg  # noqa: E402
import oslo_messaging  # noqa: E402
from oslo_messaging import transport as oslo_transport  # noqa: E402
from oslo_db import options as db_options  # noqa: E402
from oslo_serialization import jsonutils  # noqa: E402

from neutron.common import config as common_config  # noqa: E402
from neutron.conf import experimental as experimental_config  # noqa: E402
from neutron.conf.plugins.ml2 import config as ml2_config  # noqa: E402
from neutron.conf.plugins.ml2.drivers import driver_type  # noqa: E402

HOST = "compute-1"
OTHER_HOST = "compute-2"
PROJECT = "3b4c5d6e7f8041a2b3c4d5e6f7a8b9c0"


def configure(db_path):
    common_config.register_common_config_options()
    db_options.set_defaults(cfg.CONF)
    oslo_messaging.set_transport_defaults("neutron")
    cfg.CONF.register_opts(oslo_transport._transport_opts)
    ml2_config.register_ml2_plugin_opts()
    driver_type.register_ml2_drivers_flat_opts()
    experimental_config.register_experimental_opts()
    cfg.CONF(args=[], project="neutron", default_config_files=[])
    cfg.CONF.set_override("core_plugin", "ml2")
    cfg.CONF.set_override("service_plugins", [])
    cfg.CONF.set_override("notify_nova_on_port_status_changes", False)
    cfg.CONF.set_override("notify_nova_on_port_data_changes", False)
    cfg.CONF.set_override("connection", "sqlite:///" + db_path, group="database")
    cfg.CONF.set_override("transport_url", "fake:/")
    cfg.CONF.set_override("linuxbridge", True, group="experimental")
    cfg.CONF.set_override("type_drivers", ["flat"], group="ml2")
    cfg.CONF.set_override("tenant_network_types", [], group="ml2")
    cfg.CONF.set_override("mechanism_drivers", ["linuxbridge"], group="ml2")
    cfg.CONF.set_override("extension_drivers", ["port_security"], group="ml2")
    cfg.CONF.set_override("flat_networks", ["*"], group="ml2_type_flat")


def start_server():
    """The plugin, its extensions' attributes and the tables, as neutron-server sets them up."""
    from neutron_lib import rpc as n_rpc
    from neutron_lib.api import attributes
    from neutron_lib.db import api as db_api
    from neutron_lib.db import model_base
    from neutron_lib.plugins import directory

    from neutron import manager
    from neutron.api import extensions
    from neutron.db.migration.models import head  # noqa: F401  (every model)

    n_rpc.init(cfg.CONF)
    model_base.BASEV2.metadata.create_all(db_api.CONTEXT_WRITER.get_engine())
    manager.init()
    extensions.PluginAwareExtensionManager.get_instance().extend_resources("2.0", attributes.RESOURCES)
    return directory.get_plugin()


class Server:
    def __init__(self, plugin):
        from neutron_lib import context as n_context
        from neutron_lib.plugins import utils as p_utils

        self.plugin = plugin
        self.ctx = n_context.get_admin_context()
        self.p_utils = p_utils

    def _fixup(self, collection, body):
        # What the API layer does with a POST body (project, defaults, conversions); ids are given
        # explicitly, which only an internal caller may (check_allow_post=False).
        body.setdefault("tenant_id", PROJECT)
        return self.p_utils._fixup_res_dict(self.ctx, collection, body, check_allow_post=False)

    def register_agent(self, host):
        self.plugin.create_or_update_agent(self.ctx, {
            "binary": "neutron-linuxbridge-agent",
            "host": host,
            "topic": "N/A",
            "agent_type": "Linux bridge agent",
            "start_flag": True,
            "configurations": {"interface_mappings": {"physnet1": "eth1", "physnet2": "eth2", "physnet3": "eth3"}},
        })

    def network(self, id, name, physnet):
        return self.p_utils.create_network(self.plugin, self.ctx, {"network": {
            "id": id, "name": name, "tenant_id": PROJECT, "admin_state_up": True,
            "provider:network_type": "flat", "provider:physical_network": physnet,
        }}, check_allow_post=False)

    def subnet(self, **body):
        body.setdefault("tenant_id", PROJECT)
        return self.p_utils.create_subnet(self.plugin, self.ctx, {"subnet": body}, check_allow_post=False)

    def security_group(self, id, name):
        body = self._fixup("security_groups", {"id": id, "name": name, "description": ""})
        return self.plugin.create_security_group(self.ctx, {"security_group": body})

    def rule(self, security_group_id, **body):
        body = self._fixup("security_group_rules", dict(body, security_group_id=security_group_id))
        return self.plugin.create_security_group_rule(self.ctx, {"security_group_rule": body})

    def port(self, **body):
        body.setdefault("tenant_id", PROJECT)
        body.setdefault("device_owner", "compute:nova")
        body.setdefault("binding:host_id", HOST)
        return self.p_utils.create_port(self.plugin, self.ctx, {"port": body}, check_allow_post=False)

    def security_group_info_for_devices(self, devices):
        from neutron.api.rpc.handlers import securitygroups_rpc as sg_rpc

        return sg_rpc.SecurityGroupServerRpcCallback().security_group_info_for_devices(
            self.ctx, devices=devices, call_version="1.3")


def tap(port_id):
    return "tap" + port_id[:11]


def web_group(server, sg_id, ethertypes):
    """`web`: the two default egress rules (added by Neutron), ssh and ICMP echo from anywhere, and
    everything from the group's own members."""
    server.security_group(sg_id, "web")
    for ethertype in ethertypes:
        server.rule(sg_id, direction="ingress", ethertype=ethertype, protocol="tcp",
                    port_range_min=22, port_range_max=22)
        if ethertype == "IPv4":
            server.rule(sg_id, direction="ingress", ethertype=ethertype, protocol="icmp",
                        port_range_min=8, port_range_max=0)
        else:
            server.rule(sg_id, direction="ingress", ethertype=ethertype, protocol="ipv6-icmp",
                        port_range_min=128)
        server.rule(sg_id, direction="ingress", ethertype=ethertype, remote_group_id=sg_id)


def scenario_ipv4(server):
    net = "a4000000-0000-4000-8000-000000000001"
    sg = "a4000000-0000-4000-8000-0000000000a1"
    server.network(net, "net-v4", "physnet1")
    sub = "a4000000-0000-4000-8000-000000000011"
    server.subnet(id=sub, network_id=net, ip_version=4, cidr="10.20.0.0/24", enable_dhcp=True, name="v4")
    web_group(server, sg, ["IPv4"])
    ports = []
    for i, (port_id, mac, ip, host) in enumerate([
        ("4e1f7a30-96c2-4d1b-9a3e-5c7d2b8f0a11", "fa:16:3e:20:00:05", "10.20.0.5", HOST),
        ("7b2c9d41-0e3f-4a5b-8c6d-1e2f3a4b5c62", "fa:16:3e:20:00:06", "10.20.0.6", HOST),
        ("c3d4e5f6-a7b8-4c9d-8e0f-a1b2c3d4e573", "fa:16:3e:20:00:07", "10.20.0.7", OTHER_HOST),  # a member elsewhere
    ]):
        server.port(id=port_id, network_id=net, mac_address=mac, name="vm%d" % (i + 1),
                    device_id="a4000000-0000-4000-8000-0000000002%02d" % (i + 1),
                    fixed_ips=[{"subnet_id": sub, "ip_address": ip}], security_groups=[sg],
                    **{"binding:host_id": host})
        if host == HOST:
            ports.append(port_id)
    return [tap(p) for p in ports]


def scenario_ipv6(server):
    net = "a6000000-0000-4000-8000-000000000001"
    sg = "a6000000-0000-4000-8000-0000000000a1"
    server.network(net, "net-v6", "physnet2")
    server.subnet(id="a6000000-0000-4000-8000-000000000011", network_id=net, ip_version=6,
                  cidr="2001:db8:60::/64", enable_dhcp=True, ipv6_ra_mode="slaac",
                  ipv6_address_mode="slaac", name="v6-slaac")
    web_group(server, sg, ["IPv6"])
    ports = []
    for i, (port_id, mac, host) in enumerate([
        ("5f6a7b8c-9d0e-4f1a-8b2c-3d4e5f6a7b84", "fa:16:3e:60:00:05", HOST),
        ("d9e8f7a6-b5c4-4d3e-9f2a-1b0c9d8e7f95", "fa:16:3e:60:00:06", OTHER_HOST),
    ]):
        # SLAAC: the address is the subnet's prefix + the MAC's EUI-64 (Neutron computes it).
        server.port(id=port_id, network_id=net, mac_address=mac, name="vm%d" % (i + 1),
                    device_id="a6000000-0000-4000-8000-0000000002%02d" % (i + 1),
                    security_groups=[sg], **{"binding:host_id": host})
        if host == HOST:
            ports.append(port_id)
    return [tap(p) for p in ports]


def scenario_dual_stack(server):
    net = "ad000000-0000-4000-8000-000000000001"
    sg = "ad000000-0000-4000-8000-0000000000a1"
    server.network(net, "net-dual", "physnet3")
    v4 = "ad000000-0000-4000-8000-000000000011"
    v6 = "ad000000-0000-4000-8000-000000000012"
    server.subnet(id=v4, network_id=net, ip_version=4, cidr="10.30.0.0/24", enable_dhcp=True, name="v4")
    server.subnet(id=v6, network_id=net, ip_version=6, cidr="2001:db8:d0::/64", enable_dhcp=True,
                  ipv6_ra_mode="dhcpv6-stateful", ipv6_address_mode="dhcpv6-stateful", name="v6-stateful")
    web_group(server, sg, ["IPv4", "IPv6"])
    specs = [
        # (port id, mac, IPv4, IPv6, host, extra)
        ("2a3b4c5d-6e7f-4a8b-9c0d-e1f2a3b4c5a6", "fa:16:3e:d0:00:05", "10.30.0.5", "2001:db8:d0::5", HOST,
         {"allowed_address_pairs": [{"ip_address": "10.30.0.128/28"}, {"ip_address": "2001:db8:d0::80", "mac_address": "fa:16:3e:d0:00:80"}]}),
        ("8c9dae0f-1a2b-4c3d-8e4f-5a6b7c8d9eb7", "fa:16:3e:d0:00:06", "10.30.0.6", "2001:db8:d0::6", OTHER_HOST, {}),
        # Port security off: no groups, the driver lets everything through.
        ("e0f1a2b3-c4d5-4e6f-a7b8-c9d0e1f2a3c8", "fa:16:3e:d0:00:07", "10.30.0.7", "2001:db8:d0::7", HOST, {"port_security_enabled": False, "security_groups": []}),
    ]
    ports = []
    for i, (port_id, mac, ip4, ip6, host, extra) in enumerate(specs):
        body = {"security_groups": [sg]}
        body.update(extra)
        server.port(id=port_id, network_id=net, mac_address=mac, name="vm%d" % (i + 1),
                    device_id="ad000000-0000-4000-8000-0000000002%02d" % (i + 1),
                    fixed_ips=[{"subnet_id": v4, "ip_address": ip4}, {"subnet_id": v6, "ip_address": ip6}],
                    **{"binding:host_id": host}, **body)
        if host == HOST:
            ports.append(port_id)
    return [tap(p) for p in ports]


SCENARIOS = {
    "server_ipv4": scenario_ipv4,
    "server_ipv6_slaac": scenario_ipv6,
    "server_dual_stack": scenario_dual_stack,
}


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="neutron-server-") as tmp:
        configure(os.path.join(tmp, "neutron.sqlite"))
        server = Server(start_server())
        for host in (HOST, OTHER_HOST):
            server.register_agent(host)
        for name, build in SCENARIOS.items():
            devices = build(server)
            answer = server.security_group_info_for_devices(devices)
            wire = jsonutils.dumps(answer)
            # The wire text as is, plus the devices the agent asked for (not part of the answer).
            with open(os.path.join(out_dir, name + ".payload.json"), "w") as f:
                f.write(wire + "\n")
            with open(os.path.join(out_dir, name + ".devices.json"), "w") as f:
                json.dump(devices, f)
                f.write("\n")
            print(name, devices, file=sys.stderr)


if __name__ == "__main__":
    main()
