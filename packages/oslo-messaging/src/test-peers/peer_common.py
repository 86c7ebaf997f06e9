"""Shared by the test peers: a JSON line protocol on stdout and an oslo.messaging transport."""
import json
import sys

from oslo_config import cfg
import oslo_messaging


def emit(event, **fields):
    """One JSON object per line on stdout: what the TypeScript test reads."""
    fields["event"] = event
    sys.stdout.write(json.dumps(fields, default=str) + "\n")
    sys.stdout.flush()


def transport(url, exchange, allowed_remote_exmods=None):
    # The global config, as an OpenStack service has it (oslo registers some options only there),
    # with no config file read.
    oslo_messaging.set_transport_defaults(control_exchange=exchange)
    cfg.CONF([], project="chainwarden-test-peer", default_config_files=[])
    return cfg.CONF, oslo_messaging.get_rpc_transport(cfg.CONF, url=url, allowed_remote_exmods=allowed_remote_exmods or [])


def exception_fields(exc):
    cls = type(exc)
    return {
        "type": cls.__name__,
        "module": cls.__module__,
        "mro": [f"{c.__module__}.{c.__name__}" for c in cls.__mro__],
        "str": str(exc),
        "exc_type": getattr(exc, "exc_type", None),
        "value": getattr(exc, "value", None),
    }
