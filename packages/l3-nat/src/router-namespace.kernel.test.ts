import { randomBytes } from "node:crypto";
import { mkdirSync, rmdirSync } from "node:fs";
import { CommandError, ExecaRunner } from "@chainwarden/core";
import { isRoot } from "@chainwarden/testing";
import { afterEach, describe, expect, it } from "vitest";
import { deleteRouterNamespace, ensureRouterNamespace } from "./router-namespace.js";

const runner = new ExecaRunner({ backend: "nft" });
const made: string[] = [];
afterEach(async () => {
  for (const ns of made.splice(0)) await deleteRouterNamespace(runner, ns);
});

const inside = async (ns: string, args: string[]) => (await runner.exec("ip", ["netns", "exec", ns, ...args])).stdout;

describe.runIf(isRoot())("ensureRouterNamespace (one ip -batch)", () => {
  it("creates the namespace with lo up and routing on, then reports an existing one as not created", async () => {
    const ns = `cw-rns-${randomBytes(4).toString("hex")}`;
    made.push(ns);
    expect(await ensureRouterNamespace(runner, ns, { useIpv6: true })).toEqual({ created: true });
    expect(await inside(ns, ["ip", "-o", "link", "show", "lo"])).toMatch(/<LOOPBACK,UP,LOWER_UP>/);
    const settings = ["net.ipv4.ip_forward", "net.ipv4.conf.all.arp_ignore", "net.ipv4.conf.all.arp_announce", "net.ipv4.conf.all.promote_secondaries", "net.ipv6.conf.all.forwarding"];
    expect(await inside(ns, ["sysctl", "-n", ...settings])).toBe("1\n1\n2\n1\n1\n");
    // Again: the namespace is kept (not recreated), its settings re-applied.
    await runner.exec("ip", ["netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0"]);
    expect(await ensureRouterNamespace(runner, ns, { useIpv6: false })).toEqual({ created: false });
    expect(await inside(ns, ["sysctl", "-n", "net.ipv4.ip_forward"])).toBe("1\n");
  });

  it("fails with the failing batch line and what ip said when the namespace cannot be entered", async () => {
    // A directory where the namespace's file should be: `netns add` says "File exists", as for a
    // namespace that is there, but entering it fails; that must not pass for "already there".
    const ns = `cw-rns-${randomBytes(4).toString("hex")}`;
    mkdirSync(`/run/netns/${ns}`, { recursive: true });
    try {
      const err = await ensureRouterNamespace(runner, ns, { useIpv6: true }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CommandError);
      expect((err as Error).message).toContain(`netns exec ${ns} ip link set lo up`);
      expect((err as Error).message).toMatch(/Invalid argument/);
    } finally {
      rmdirSync(`/run/netns/${ns}`);
    }
  });
});
