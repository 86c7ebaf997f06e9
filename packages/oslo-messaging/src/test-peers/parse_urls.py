"""oslo.messaging's own TransportURL.parse on a JSON list of URLs (stdin); prints a JSON list."""
import json
import sys

from oslo_config import cfg
import oslo_messaging


def main():
    conf = cfg.ConfigOpts()
    conf([], project="chainwarden-test-peer", default_config_files=[])
    out = []
    for url in json.load(sys.stdin):
        try:
            parsed = oslo_messaging.TransportURL.parse(conf, url)
            out.append({"ok": {
                "transport": parsed.transport,
                "virtualHost": parsed.virtual_host,
                "hosts": [{"hostname": h.hostname, "port": h.port, "username": h.username, "password": h.password} for h in parsed.hosts],
                "query": parsed.query,
            }})
        except Exception as exc:
            out.append({"error": type(exc).__name__})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
