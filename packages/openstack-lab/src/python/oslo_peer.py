#!/usr/bin/python3
"""A Neutron agent's side of RPC, spoken by the real Python oslo.messaging (test-only).

Started by `OsloPeer` (../oslo-peer.ts) as `/usr/bin/python3 oslo_peer.py <transport_url>`; it reads
one JSON command a line on stdin and writes one JSON line per answer or event on stdout, so a test
can act as an agent (`call`, `cast`) and hear what the server sends to agents (`listen`) without
this file knowing any agent. Commands run on their own thread, so a `listen` never blocks a `call`.

  {"id": 1, "op": "call", "topic": "q-l3-plugin", "method": "sync_routers", "version": "1.0",
   "args": {"host": "h"}, "namespace": null, "server": null, "timeout": 30}
      -> {"id": 1, "result": <the server's reply>} or {"id": 1, "error": {"type", "message"}}
  {"id": 2, "op": "cast", ...same keys, plus "fanout": false}           -> {"id": 2, "result": null}
  {"id": 3, "op": "listen", "topic": "l3_agent", "server": "h", "replies": {"method": value}}
      -> {"id": 3, "result": "l3_agent.h"}, then for every message that reaches the listener:
         {"event": "rpc", "listener": "l3_agent.h", "method", "kind" ("call" or "cast"), "args",
          "namespace", "version", "context"}
  {"id": 4, "op": "unlisten", "listener": "l3_agent.h"}                 -> {"id": 4, "result": null}

Messages carry the context a Neutron agent sends: `neutron_lib.context` admin context without a
session, as `to_dict()` gives it (overridable per command with "context"). A listener answers calls
with `replies[method]` (default null), for any version and namespace, the way an agent would have to
accept them; what arrived is what the server sent, before any agent's dispatcher judged it.
"""

import json
import logging
import sys
import threading

from neutron_lib import context as n_context
from oslo_config import cfg
import oslo_messaging
from oslo_messaging.rpc import dispatcher as rpc_dispatcher
from oslo_messaging.rpc import server as rpc_server
from oslo_messaging._metrics import client as metrics_client

OPS = ("call", "cast", "listen", "unlisten")
_out_lock = threading.Lock()


def emit(message):
    line = json.dumps(message, default=str)
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def agent_context():
    return n_context.get_admin_context_without_session().to_dict()


class RecordingDispatcher(rpc_dispatcher.RPCDispatcher):
    """Takes every message, whatever its method, version or namespace, and reports it."""

    def __init__(self, name, replies):
        super().__init__([], oslo_messaging.NoOpSerializer())
        self.name = name
        self.replies = replies or {}

    def dispatch(self, incoming):
        message = incoming.message
        method = message.get("method")
        emit({
            "event": "rpc",
            "listener": self.name,
            "method": method,
            # A call carries the id its reply goes back with; a cast has none.
            "kind": "call" if getattr(incoming, "msg_id", None) else "cast",
            "args": message.get("args", {}),
            "namespace": message.get("namespace"),
            "version": message.get("version", "1.0"),
            "context": incoming.ctxt,
        })
        return self.replies.get(method)


class Peer:
    def __init__(self, url):
        # A private ConfigOpts: no config file of the host (/etc/neutron, /etc/oslo) is read.
        self.conf = cfg.ConfigOpts()
        # Neutron's exchange (neutron.common.rpc.init), not oslo.messaging's default "openstack":
        # a message sent to the wrong one is dropped without a word.
        oslo_messaging.set_transport_defaults(control_exchange="neutron")
        self.conf([], project="chainwarden-oslo-peer")
        # The RPC client reads these options; oslo.messaging registers them on cfg.CONF only.
        self.conf.register_opts(metrics_client.oslo_messaging_metrics, group="oslo_messaging_metrics")
        self.transport = oslo_messaging.get_rpc_transport(self.conf, url=url)
        self.listeners = {}
        self.lock = threading.Lock()

    def client(self, command):
        target = oslo_messaging.Target(
            topic=command["topic"],
            server=command.get("server"),
            namespace=command.get("namespace"),
            version=command.get("version") or "1.0",
            fanout=bool(command.get("fanout")),
        )
        return oslo_messaging.get_rpc_client(
            self.transport, target, serializer=oslo_messaging.NoOpSerializer(),
            timeout=command.get("timeout", 30))

    def call(self, command):
        ctxt = command.get("context") or agent_context()
        return self.client(command).call(ctxt, command["method"], **command.get("args", {}))

    def cast(self, command):
        ctxt = command.get("context") or agent_context()
        self.client(command).cast(ctxt, command["method"], **command.get("args", {}))
        return None

    def listen(self, command):
        topic = command["topic"]
        host = command.get("server")
        name = f"{topic}.{host}" if host else topic
        target = oslo_messaging.Target(topic=topic, server=host or "chainwarden-oslo-peer")
        server = rpc_server.RPCServer(
            self.transport, target, RecordingDispatcher(name, command.get("replies")),
            executor="threading")
        server.start()
        with self.lock:
            self.listeners[name] = server
        return name

    def unlisten(self, command):
        with self.lock:
            server = self.listeners.pop(command["listener"], None)
        if server is not None:
            server.stop()
            server.wait()
        return None

    def close(self):
        with self.lock:
            servers = list(self.listeners.values())
            self.listeners.clear()
        for server in servers:
            server.stop()
            server.wait()
        self.transport.cleanup()


def run(peer, command):
    try:
        if command.get("op") not in OPS:
            raise ValueError(f"unknown op {command.get('op')!r}")
        result = getattr(peer, command["op"])(command)
        emit({"id": command.get("id"), "result": result})
    except Exception as error:  # every failure goes back to the test, named
        emit({"id": command.get("id"), "error": {"type": type(error).__name__, "message": str(error)}})


def main():
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    peer = Peer(sys.argv[1])
    emit({"event": "ready"})
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        if command.get("op") == "quit":
            break
        threading.Thread(target=run, args=(peer, command), daemon=True).start()
    peer.close()
    emit({"event": "closed"})


if __name__ == "__main__":
    main()
