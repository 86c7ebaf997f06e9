#!/usr/bin/python3
"""Regenerates packages/l2-secgroup/src/neutron-server-fixtures/ from Neutron's own code.

1. `server_payloads.py` (Neutron's ML2 server code on a throwaway SQLite database) writes each
   scenario's `security_group_info_for_devices` answer as it crosses the wire, and the devices the
   Linux bridge agent asked about.
2. For each scenario, with `enable_ipset` off and on, a fresh network namespace is created,
   `render_payload.py` (Neutron's agent side: `SecurityGroupAgentRpc` + `IptablesFirewallDriver`)
   runs in it under `ip netns exec`, and the namespace is read back with `iptables-save`,
   `ip6tables-save` and `ipset save`, normalized as ../../../shared/reference/README.md says.
   The namespace is deleted afterwards, also when something fails.
3. `icmp_rule_args.py` records the match arguments Neutron's driver writes for ICMP rules with
   every protocol spelling the server may send.

Run as root from anywhere:
    tools/neutron-reference/generate.py                    # write the fixtures (nf_tables)
    tools/neutron-reference/generate.py --backend legacy --check   # compare, legacy iptables
`--check` writes nothing and exits 1 when the output differs from the committed files.
"""
import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(REPO, "packages", "l2-secgroup", "src", "neutron-server-fixtures")
PYTHON = "/usr/bin/python3"  # Debian's, where python3-neutron is installed
HEADER = ("# Produced by Debian's python3-neutron 21.0.0 (Neutron Zed server + Linux bridge agent "
          "IptablesFirewallDriver, real tools in a throwaway namespace) with "
          "tools/neutron-reference/generate.py; see README.md.\n")
LEGACY_TOOLS = ["iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore"]


def run(args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw)


def normalize_save(text):
    """As core's normalizeSave: no comments or blanks, no counters, tables sorted by name."""
    blocks = []
    current = None
    for raw in text.split("\n"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            current = (line[1:], [])
            blocks.append(current)
            continue
        if line.startswith(":"):
            line = re.sub(r" \[\d+:\d+\]$", "", line)
        current[1].append(line)
    blocks.sort(key=lambda b: b[0])
    return "".join("*%s\n%s\n" % (name, "\n".join(lines)) for name, lines in blocks)


def normalize_ipset(text):
    """No random initval, members sorted per set, sets in save order."""
    order, sets = [], {}
    for raw in text.split("\n"):
        w = raw.split()
        if not w:
            continue
        if w[0] == "create":
            sets[w[1]] = (re.sub(r" initval 0x[0-9a-f]+", "", raw.strip()), [])
            order.append(w[1])
        elif w[0] == "add":
            sets[w[1]][1].append(raw.strip())
    out = []
    for name in order:
        create, adds = sets[name]
        out += [create] + sorted(adds)
    return "".join(line + "\n" for line in out)


def render(payload, devices, enable_ipset, env, index):
    """Neutron's agent on the payload in a fresh namespace; returns the expected-file text."""
    ns = "cw-nref-%d-%d" % (os.getpid(), index)
    run(["ip", "netns", "add", ns])
    try:
        args = [PYTHON, os.path.join(HERE, "render_payload.py"), payload, devices]
        if enable_ipset:
            args.append("--enable-ipset")
        result = subprocess.run(["ip", "netns", "exec", ns] + args, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            sys.stderr.write(result.stderr)
            raise SystemExit("Neutron's agent failed on %s" % payload)
        sections = [
            ("iptables-save", normalize_save(run(["ip", "netns", "exec", ns, "iptables-save"], env=env).stdout)),
            ("ip6tables-save", normalize_save(run(["ip", "netns", "exec", ns, "ip6tables-save"], env=env).stdout)),
        ]
        if enable_ipset:
            sections.append(("ipset save", normalize_ipset(run(["ip", "netns", "exec", ns, "ipset", "save"]).stdout)))
        text = HEADER + "=== after step 1: prepare_devices_filter ===\n"
        for title, body in sections:
            text += "--- %s ---\n%s" % (title, body)
        return text
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def committed(name):
    path = os.path.join(FIXTURES, name)
    if not os.path.exists(path):
        return ""
    with open(path) as f:
        return f.read()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["nft", "legacy"], default="nft")
    parser.add_argument("--check", action="store_true", help="compare with the committed fixtures, write nothing")
    opts = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (network namespaces)")

    with tempfile.TemporaryDirectory(prefix="cw-nref-") as tmp:
        env = dict(os.environ)
        if opts.backend == "legacy":
            # Neutron runs the tools by name: put the legacy variants first on PATH.
            shim = os.path.join(tmp, "bin")
            os.mkdir(shim)
            for tool in LEGACY_TOOLS:
                legacy = shutil.which(tool.replace("tables", "tables-legacy", 1))
                os.symlink(legacy, os.path.join(shim, tool))
            env["PATH"] = shim + os.pathsep + env.get("PATH", "")
            env["XTABLES_LOCKFILE"] = os.path.join(tmp, "xtables.lock")

        payloads = os.path.join(tmp, "payloads")
        server = subprocess.run([PYTHON, os.path.join(HERE, "server_payloads.py"), payloads], capture_output=True, text=True)
        if server.returncode != 0:
            # Its stderr is noisy when it works (the scheduler finds no DHCP agent): shown on failure only.
            sys.stderr.write(server.stderr)
            raise SystemExit("Neutron's server failed")
        files = {}
        index = 0
        for name in sorted(n[: -len(".payload.json")] for n in os.listdir(payloads) if n.endswith(".payload.json")):
            payload = os.path.join(payloads, name + ".payload.json")
            devices = os.path.join(payloads, name + ".devices.json")
            with open(payload) as f:
                files[name + ".payload.json"] = f.read()
            with open(devices) as f:
                files[name + ".devices.json"] = f.read()
            for enable_ipset in (False, True):
                index += 1
                suffix = ".ipset.expected.txt" if enable_ipset else ".expected.txt"
                files[name + suffix] = render(payload, devices, enable_ipset, env, index)
        files["icmp_rule_args.json"] = run([PYTHON, os.path.join(HERE, "icmp_rule_args.py")]).stdout

    if opts.check:
        differ = [n for n, text in sorted(files.items()) if committed(n) != text]
        for n in differ:
            print("differs: %s" % n)
            diff = difflib.unified_diff(committed(n).splitlines(), files[n].splitlines(), "committed/" + n, opts.backend + "/" + n, lineterm="")
            print("\n".join(diff))
        print("%d files checked (%s), %d differ" % (len(files), opts.backend, len(differ)))
        raise SystemExit(1 if differ else 0)
    os.makedirs(FIXTURES, exist_ok=True)
    for n, text in sorted(files.items()):
        with open(os.path.join(FIXTURES, n), "w") as f:
            f.write(text)
        print("wrote %s" % os.path.relpath(os.path.join(FIXTURES, n), REPO))


if __name__ == "__main__":
    main()
