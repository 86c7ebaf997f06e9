"""The oracle for oslo-config's tests: oslo.config itself reads the files.

Reads a JSON list of cases on stdin, each {"args": [...], "options": [...]}
(args: --config-file/--config-dir as on a command line; options: what to register, each
{"group", "name", "type", "default", "choices", "deprecated": [{"group", "name"}]}), and writes one
JSON list with an answer per case: {"error": {...}} when the files cannot be read, else
{"values": [{"value": ...} | {"error": {...}}]}, a value per option.
"""
import json
import re
import sys

from oslo_config import cfg

TYPES = {
    "string": cfg.StrOpt,
    "boolean": cfg.BoolOpt,
    "integer": cfg.IntOpt,
    "float": cfg.FloatOpt,
    "port": cfg.PortOpt,
    "list": cfg.ListOpt,
    "multi_string": cfg.MultiStrOpt,
}


def error(ex):
    message = str(ex)
    line = re.search(r"at [^\n]*?:(\d+), ", message)
    return {"type": type(ex).__name__, "message": message, "line": int(line.group(1)) if line else None}


def answer(request):
    conf = cfg.ConfigOpts()
    registered = []
    for o in request["options"]:
        deprecated = o.get("deprecated", [])
        # A group alone is only accepted as deprecated_group (a DeprecatedOpt needs a name).
        kwargs = {"deprecated_opts": [cfg.DeprecatedOpt(d["name"], group=d.get("group")) for d in deprecated if d.get("name")]}
        for d in deprecated:
            if not d.get("name"):
                kwargs["deprecated_group"] = d["group"]
        if "default" in o:
            kwargs["default"] = o["default"]
        if "choices" in o:
            kwargs["choices"] = o["choices"]
        opt = TYPES[o["type"]](o["name"], **kwargs)
        group = None if o["group"] == "DEFAULT" else o["group"]
        conf.register_opt(opt, group)
        registered.append((group, opt.dest))
    try:
        conf(request["args"], project="oracle", default_config_files=[], default_config_dirs=[])
    except (cfg.Error, SystemExit, UnicodeDecodeError, OSError) as ex:
        return {"error": error(ex)}
    values = []
    for group, dest in registered:
        try:
            value = conf[dest] if group is None else conf[group][dest]
            values.append({"value": value})
        except Exception as ex:  # noqa: BLE001 - every failure is an answer to compare
            values.append({"error": error(ex)})
    return {"values": values}


def main():
    print(json.dumps([answer(case) for case in json.load(sys.stdin)]))


main()
