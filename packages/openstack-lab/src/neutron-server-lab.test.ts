import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { freePort } from "./free-port.js";
import { NeutronServerLab } from "./neutron-server-lab.js";

// The working lab (API, RPC, stop) is proven in neutron-server-lab.e2e.test.ts, on one server.
describe("NeutronServerLab", () => {
  it("a start that fails throws with the tail of the server's log and leaves nothing behind", async () => {
    // Zed's server exits at once when the Linux bridge driver is not allowed as experimental; it
    // does so before it connects to a broker, so none is needed (nothing listens on this port).
    const start = NeutronServerLab.start({ transportUrl: `rabbit://guest:guest@127.0.0.1:${await freePort()}/`, config: { experimental: { linuxbridge: false } } });
    const error = (await start.catch((e: unknown) => e)) as Error;
    expect(error).toBeInstanceOf(Error);
    const [, dir] = /^neutron-server did not start \(in (\S+), now removed\): neutron-server exited \(\d+\)/.exec(error.message) ?? [];
    expect(dir, error.message).toMatch(/\/cw-neutron-/);
    // The cause, from the server's log.
    expect(error.message).toContain("--- errors ---");
    expect(error.message).toMatch(/ERROR neutron\.common\.experimental .*Feature 'linuxbridge' is experimental/);
    expect(existsSync(dir!)).toBe(false);
    // Neither the server's processes nor the database cluster's (both run with paths in the directory).
    expect(() => execFileSync("pgrep", ["-f", dir!], { encoding: "utf8" })).toThrow();
  }, 120_000);
});
