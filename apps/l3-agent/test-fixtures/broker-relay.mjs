/**
 * `node broker-relay.mjs PORT SOCKET`: listens on 127.0.0.1:PORT of the network namespace it runs in
 * and pipes every connection to the Unix socket SOCKET; prints `listening` once it does and exits when
 * its stdin closes (or its parent is gone).
 *
 * Why: `src/neutron.e2e.test.ts` runs Neutron's own l3 agent inside a network namespace of the test's
 * (so its veths land there, not in the host's), where 127.0.0.1 is that namespace's own loopback and
 * the broker on the host's loopback cannot be reached. A Unix socket lives in the file system, which
 * network namespaces share: the test serves one that leads to the broker, this relay leads to it. The
 * agent's `transport_url` stays `rabbit://…@127.0.0.1:<the broker's port>/`, the same as ours.
 */
import { createConnection, createServer } from "node:net";

const [port, socketPath] = process.argv.slice(2);
if (!port || !socketPath) {
  console.error("usage: node broker-relay.mjs PORT SOCKET");
  process.exit(2);
}

const server = createServer((client) => {
  const upstream = createConnection({ path: socketPath });
  client.pipe(upstream);
  upstream.pipe(client);
  const end = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on("error", end).on("close", end);
  upstream.on("error", end).on("close", end);
});
server.listen(Number(port), "127.0.0.1", () => console.log("listening"));
process.stdin.on("close", () => process.exit(0));
process.stdin.resume();
