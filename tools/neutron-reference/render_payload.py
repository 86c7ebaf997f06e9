#!/usr/bin/python3
"""Neutron's own rendering of a `security_group_info_for_devices` answer.

Run as root inside a throwaway network namespace (`ip netns exec NS render_payload.py ...`;
`generate.py` does that): Debian's python3-neutron (Zed) Linux bridge agent side, i.e. the real
`SecurityGroupAgentRpc.prepare_devices_filter` (as `CommonAgentLoop` calls it for new devices)
driving the real `IptablesFirewallDriver` (firewall_driver `iptables`), its `IptablesManager`
(wrap name `neutron-linuxbri`, from the binary name, as in the real agent), `IpsetManager` and
conntrack zones, running the real `iptables-restore` / `ipset` of this host. The only stand-in is
the RPC client: its `security_group_info_for_devices` returns the recorded wire text decoded with
`oslo_serialization.jsonutils.loads`, as oslo.messaging hands a reply to the agent. Privileged
commands run in this (root) process instead of a privsep daemon (see below).

Usage: render_payload.py PAYLOAD.json DEVICES.json [--enable-ipset]
"""
import os
import sys
import tempfile

# The wrap name is the binary's name cut to 16 characters (neutron.agent.linux.iptables_manager).
sys.argv[0] = "/usr/bin/neutron-linuxbridge-agent"

from oslo_concurrency import lockutils  # noqa: E402
from oslo_config import cfg  # noqa: E402
from oslo_serialization import jsonutils  # noqa: E402

from oslo_privsep import priv_context  # noqa: E402

from neutron import privileged  # noqa: E402
from neutron.agent import securitygroups_rpc as sg_rpc  # noqa: E402
from neutron.common import config as common_config  # noqa: E402
from neutron.conf.agent import common as agent_config  # noqa: E402


class RecordedServer:
    """The agent's RPC client, answering with the server's recorded reply."""

    def __init__(self, wire, devices):
        self.wire = wire
        self.devices = devices

    def security_group_info_for_devices(self, context, devices):
        if sorted(devices) != sorted(self.devices):
            raise AssertionError("the agent asked for %r, the recording answers %r" % (devices, self.devices))
        return jsonutils.loads(self.wire)


def main():
    payload, devices_file = sys.argv[1], sys.argv[2]
    enable_ipset = "--enable-ipset" in sys.argv[3:]
    with open(payload) as f:
        wire = f.read()
    with open(devices_file) as f:
        devices = jsonutils.loads(f.read())

    common_config.register_common_config_options()
    agent_config.register_root_helper(cfg.CONF)
    agent_config.register_agent_state_opts_helper(cfg.CONF)
    cfg.CONF(args=[], project="neutron", default_config_files=[])
    # Running as root in the namespace: no sudo/rootwrap in front of the tools.
    cfg.CONF.set_override("root_helper", "", group="AGENT")
    cfg.CONF.set_override("firewall_driver", "iptables", group="SECURITYGROUP")
    cfg.CONF.set_override("enable_ipset", enable_ipset, group="SECURITYGROUP")
    if os.geteuid() != 0:
        raise SystemExit("run as root, inside the namespace")
    # Privileged calls run in this process (privsep's client mode off) rather than in a daemon
    # started through sudo, whose secure_path would pick the tools instead of our PATH (the
    # legacy iptables run puts iptables-legacy first). Same commands, same namespace, as root.
    for context in vars(privileged).values():
        if isinstance(context, priv_context.PrivContext):
            context.set_client_mode(False)

    with tempfile.TemporaryDirectory(prefix="neutron-locks-") as lock_path:
        # IptablesManager applies under an external (file) lock.
        lockutils.set_defaults(lock_path)
        agent = sg_rpc.SecurityGroupAgentRpc(context=None, plugin_rpc=RecordedServer(wire, devices))
        agent.prepare_devices_filter(devices)


if __name__ == "__main__":
    main()
