#!/usr/bin/python3
"""What Neutron's Linux bridge driver writes for ICMP rules, per protocol spelling and field.

Calls Debian's python3-neutron (Zed) `IptablesFirewallDriver` methods that turn one security group
rule into iptables arguments: `_split_sgr_by_ethertype` (which renames IPv6 `icmp`/`icmpv6` to
`ipv6-icmp`) and then `_generate_plain_rule_args` (`_ip_prefix_arg`, `_protocol_arg`, `_port_arg`
with the host's /etc/protocols names, as the agent does). No rule is applied: these methods only
build text, so the driver object is made without its constructor (which would start an
IptablesManager). Prints JSON: a list of {"rule": <rule dict>, "neutron": <the rule text>}.

The rules are every protocol spelling the server may send for ICMP (names and numbers that the
driver maps to `icmp` / `ipv6-icmp`), crossed with the type/code fields: none, `port_range_min`
(+ `port_range_max`), `source_port_range_min` (+ `source_port_range_max`, the server's RA rule
has only the min), a max without its min, and both ranges at once.
"""
import json

from neutron.agent.linux.iptables_firewall import IptablesFirewallDriver

SPELLINGS = {"IPv4": ["icmp", "1"], "IPv6": ["ipv6-icmp", "icmpv6", "58", "icmp", "1"]}
FIELDS = [
    {},
    {"port_range_min": 8},
    {"port_range_min": 8, "port_range_max": 0},
    {"port_range_min": 0, "port_range_max": 0},
    {"port_range_min": 255},
    {"source_port_range_min": 134},
    {"source_port_range_min": 134, "source_port_range_max": 0},
    {"source_port_range_min": 3, "source_port_range_max": 1},
    {"port_range_max": 0},
    {"source_port_range_max": 0},
    {"port_range_min": 128, "source_port_range_min": 134},
    {"port_range_min": 3, "port_range_max": 1, "source_port_range_min": 3, "source_port_range_max": 1},
]


def main():
    driver = object.__new__(IptablesFirewallDriver)
    driver._iptables_protocol_name_map = {}
    out = []
    for ethertype, spellings in SPELLINGS.items():
        for protocol in spellings:
            for fields in FIELDS:
                rule = dict({"direction": "ingress", "ethertype": ethertype, "protocol": protocol}, **fields)
                v4, v6 = driver._split_sgr_by_ethertype([dict(rule)])
                converted = (v4 or v6)[0]
                out.append({"rule": rule, "neutron": " ".join(driver._generate_plain_rule_args(converted))})
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
