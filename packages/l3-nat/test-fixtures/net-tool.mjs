// Test helper run inside test namespaces with `ip netns exec NS node net-tool.mjs ...`.
// Every mode exits when its stdin closes, so a crashed test never leaves one behind.
//   http-server PORT            answers every request with "remote=<client address>"
//   echo-server PORT            TCP: echoes lines back
//   stream-client HOST PORT     TCP: sends a line every 100 ms, prints "echo" per line echoed back
import { createServer } from "node:http";
import { createServer as createTcpServer, connect } from "node:net";

const [mode, a, b] = process.argv.slice(2);
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
const clean = (addr) => (addr && addr.startsWith("::ffff:") ? addr.slice(7) : addr);

if (mode === "http-server") {
  createServer((req, res) => res.end(`remote=${clean(req.socket.remoteAddress)}`)).listen(Number(a), () => console.log("ready"));
} else if (mode === "echo-server") {
  createTcpServer((s) => s.pipe(s)).listen(Number(a), () => console.log("ready"));
} else if (mode === "stream-client") {
  const s = connect({ host: a, port: Number(b) }, () => {
    console.log("connected");
    setInterval(() => s.write("x\n"), 100);
  });
  let buf = "";
  s.on("data", (d) => {
    buf += d.toString();
    const lines = buf.split("\n");
    buf = lines.pop();
    for (const _ of lines) console.log("echo");
  });
  s.on("error", (e) => console.log(`error ${e.code}`));
  s.on("close", () => console.log("closed"));
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
