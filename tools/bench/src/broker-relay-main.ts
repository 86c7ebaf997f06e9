/**
 * `node broker-relay-main.js PORT SOCKET`, run inside a network namespace (`ip netns exec`): the
 * broker on that namespace's 127.0.0.1:PORT, through the bench's Unix socket (see broker-relay.ts).
 * Prints "listening" once it accepts connections.
 */
import { relayTcpToUnix } from "./broker-relay.js";

const [port, socketPath] = process.argv.slice(2);
if (!port || !socketPath || !/^\d+$/.test(port)) {
  process.stderr.write("usage: broker-relay-main.js PORT SOCKET\n");
  process.exit(2);
}
await relayTcpToUnix(Number(port), socketPath);
process.stdout.write("listening\n");
