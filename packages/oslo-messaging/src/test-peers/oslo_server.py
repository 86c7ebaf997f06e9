"""A real oslo.messaging RPC server for the interoperability tests.

Usage: oslo_server.py <transport_url> <control_exchange> <topic> <server>
Serves until stdin closes; prints JSON lines: ready, cast (what casts brought), called.
"""
import sys
import threading
import time

import oslo_messaging

import peer_common
from peer_common import emit
import peer_exceptions


class Api(object):
    target = oslo_messaging.Target(version="1.4")

    def echo(self, ctxt, **kwargs):
        emit("called", method="echo", args=kwargs, context=ctxt)
        return {"args": kwargs, "context": ctxt}

    def fail_value(self, ctxt, text):
        raise ValueError(text)

    def fail_busy(self, ctxt, text):
        raise peer_exceptions.AgentBusy(text)

    def slow(self, ctxt, seconds):
        time.sleep(seconds)
        return "slept %s" % seconds

    def record(self, ctxt, **kwargs):
        emit("cast", method="record", args=kwargs, context=ctxt)


class StateApi(object):
    target = oslo_messaging.Target(namespace="cw_state", version="1.2")

    def report_state(self, ctxt, agent_state, time):
        emit("cast", method="report_state", args={"agent_state": agent_state, "time": time}, context=ctxt)
        return "alive"


def main():
    url, exchange, topic, server = sys.argv[1:5]
    conf, transport = peer_common.transport(url, exchange)
    target = oslo_messaging.Target(topic=topic, server=server)
    rpc = oslo_messaging.get_rpc_server(transport, target, [Api(), StateApi()], executor="threading",
                                        access_policy=oslo_messaging.DefaultRPCAccessPolicy)
    rpc.start()
    emit("ready")
    sys.stdin.read()
    rpc.stop()
    rpc.wait()
    transport.cleanup()
    emit("stopped")


if __name__ == "__main__":
    main()
