/**
 * The broker for a process in another network namespace, on loopback only: Neutron's agent runs in a
 * namespace of the bench's own (so its veths stay there), where 127.0.0.1 is that namespace's
 * loopback. A Unix socket is in the file system, which namespaces share: the bench serves one that
 * leads to the broker's 127.0.0.1 port, and `broker-relay-main.js`, started inside the namespace,
 * listens on the namespace's 127.0.0.1 and leads to the socket.
 */
import { createConnection, createServer, type Server, type Socket } from "node:net";

function pipeBoth(a: Socket, b: Socket): void {
  a.pipe(b);
  b.pipe(a);
  const end = () => {
    a.destroy();
    b.destroy();
  };
  a.on("error", end).on("close", end);
  b.on("error", end).on("close", end);
}

/** Serves `socketPath`: each connection is piped to 127.0.0.1:`port`. */
export function relayUnixToTcp(socketPath: string, port: number): Promise<Server> {
  const server = createServer((client) => pipeBoth(client, createConnection({ host: "127.0.0.1", port })));
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(socketPath, () => resolve(server));
  });
}

/** Listens on 127.0.0.1:`port` (of the namespace this runs in): each connection is piped to `socketPath`. */
export function relayTcpToUnix(port: number, socketPath: string): Promise<Server> {
  const server = createServer((client) => pipeBoth(client, createConnection({ path: socketPath })));
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve(server));
  });
}
