// Run inside test namespaces (`ip netns exec NS node net-tool.mjs MODE ...`). The long-running
// modes exit when their stdin closes, so a test that dies never leaves one behind.
//   echo-server PORT        TCP: echoes every line back
//   probe HOST PORT         TCP: connects, sends one line, prints "ok" when it comes back, else "fail"
//   stream HOST PORT        TCP: sends a line every 100 ms, prints "echo" for each line echoed back
import { connect, createServer } from "node:net";

const [mode, host, port] = process.argv.slice(2);
if (mode !== "probe") {
  process.stdin.on("end", () => process.exit(0));
  process.stdin.resume();
}

if (mode === "echo-server") {
  createServer((s) => {
    s.on("error", () => s.destroy());
    s.pipe(s);
  }).listen(Number(host), () => console.log("ready"));
} else if (mode === "probe") {
  const s = connect({ host, port: Number(port) });
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
  const s = connect({ host, port: Number(port) }, () => {
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
