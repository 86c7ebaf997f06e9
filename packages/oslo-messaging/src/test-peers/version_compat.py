"""oslo.messaging's version_is_compatible on a JSON list of [imp, version] pairs (stdin)."""
import json
import sys

from oslo_messaging import _utils


def main():
    out = []
    for imp, version in json.load(sys.stdin):
        try:
            out.append({"ok": _utils.version_is_compatible(imp, version)})
        except Exception as exc:
            out.append({"error": type(exc).__name__})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
