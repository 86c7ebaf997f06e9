"""A real oslo.messaging RPC client for the interoperability tests.

Usage: oslo_client.py <transport_url> <control_exchange> <actions JSON>
Each action: {"op": "call"|"cast", "topic", "method", "args", and optionally "server", "fanout",
"version", "namespace", "timeout", "call_monitor_timeout"}. Prints one JSON line per action
(result or the exception's class, module and MRO), then done.
"""
import json
import sys

import oslo_messaging

import peer_common
from peer_common import emit, exception_fields

CONTEXT = {"user_id": "u-1", "project_id": "p-1", "tenant_id": "p-1", "is_admin": False,
           "request_id": "req-python-peer", "roles": ["member"]}


def main():
    url, exchange, actions = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    conf, transport = peer_common.transport(url, exchange, allowed_remote_exmods=["peer_exceptions"])
    try:
        for index, action in enumerate(actions):
            target = oslo_messaging.Target(topic=action["topic"])
            client = oslo_messaging.get_rpc_client(transport, target)
            prepare = {k: action[k] for k in ("server", "fanout", "version", "namespace", "timeout", "call_monitor_timeout") if k in action}
            cctxt = client.prepare(**prepare)
            try:
                if action["op"] == "call":
                    result = cctxt.call(CONTEXT, action["method"], **action.get("args", {}))
                else:
                    result = cctxt.cast(CONTEXT, action["method"], **action.get("args", {}))
                emit("result", index=index, ok=result)
            except Exception as exc:
                emit("result", index=index, error=exception_fields(exc))
    finally:
        transport.cleanup()
    emit("done")


if __name__ == "__main__":
    main()
