// A traffic helper for datapath tests, run inside their namespaces from an argument array:
// `ip netns exec NS node net-tool.mjs MODE ...` (see `netToolPath()`). The long-running modes exit
// when their stdin closes, so a test that dies never leaves one behind.
//   http-server PORT        HTTP: answers every request with "remote=<client address>"
//   echo-server PORT        TCP: echoes every line back
//   probe HOST PORT         TCP: connects, sends one line, prints "ok" when it comes back, else "fail"
//   stream HOST PORT        TCP: sends a line every 100 ms, prints "echo" for each line echoed back
// The servers print "ready" once they listen; `stream` prints "connected" once it is connected.
import { createServer as createHttpServer } from "node:http";
import { connect, createServer } from "node:net";

const [mode, a, b] = process.argv.slice(2);
if (mode !== "probe") {
  process.stdin.on("end", () => process.exit(0));
  process.stdin.resume();
}
const clean = (addr) => (addr && addr.startsWith("::ffff:") ? addr.slice(7) : addr);

if (mode === "http-server") {
  createHttpServer((req, res) => res.end(`remote=${clean(req.socket.remoteAddress)}`)).listen(Number(a), () => console.log("ready"));
} else if (mode === "echo-server") {
  createServer((s) => {
    s.on("error", () => s.destroy());
    s.pipe(s);
  }).listen(Number(a), () => console.log("ready"));
} else if (mode === "probe") {
  const s = connect({ host: a, port: Number(b) });
  const done = (word) => {
    console.log(word);
    process.exit(0);
  };
  const timer = setTimeout(() => done("fail"), 1500);
  s.on("connect", () => s.write("probe\n"));
  s.on("data", () => {
    clearTimeout(timer);
    done("ok");
  });
  s.on("error", () => {
    clearTimeout(timer);
    done("fail");
  });
} else if (mode === "stream") {
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
