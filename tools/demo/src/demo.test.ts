import { describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { runDemo } from "./demo.js";

describe.each(["nft", "legacy"] as const)("demo (%s, real kernel)", (backend) => {
  it("programs the seed's layout, converges, changes a floating IP in a few lines, and cleans up", async () => {
    const out: string[] = [];
    const r = await runDemo({ backend, write: (t) => out.push(t) });
    for (const line of [
      "-A FORWARD -j neutron-filter-top",
      "-A FORWARD -j neutron-l3-agent-FORWARD",
      "-A neutron-filter-top -j neutron-l3-agent-local",
      "-A POSTROUTING -j neutron-postrouting-bottom",
      "-A neutron-postrouting-bottom -j neutron-l3-agent-snat",
      "-A neutron-l3-agent-snat -j neutron-l3-agent-float-snat",
      "-A neutron-l3-agent-INPUT -d 127.0.0.1/32 -p tcp -m tcp --dport 9697 -j ACCEPT",
      "-A neutron-l3-agent-PREROUTING -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 9697",
      "-A neutron-l3-agent-PREROUTING -d 172.24.4.21/32 -j DNAT --to-destination 10.10.10.5",
    ]) {
      expect(r.save).toContain(line);
    }
    expect(r.save).not.toContain("172.24.4.20");
    expect(r.secondApplyLines).toBe(0);
    expect(r.fipChangeLines).toBeLessThanOrEqual(6);
    const left = execFileSync("ip", ["netns", "list"], { encoding: "utf8" });
    expect(left).not.toContain(r.namespace);
  });
});

describe.each(["nft", "legacy"] as const)("l3-agent demo (%s, real kernel)", (backend) => {
  it("the l3-agent serves the seed's router in a throwaway namespace, then removes it and its namespace", async () => {
    const { runL3AgentDemo } = await import("./l3-agent-demo.js");
    const r = await runL3AgentDemo({ backend, write: () => undefined });
    for (const line of [
      "-A neutron-l3-agent-PREROUTING -d 200.200.128.3/32 -j DNAT --to-destination 10.10.10.2",
      "-A neutron-postrouting-bottom -m comment --comment \"Perform source NAT on outgoing traffic.\" -j neutron-l3-agent-snat",
    ]) {
      expect(r.save).toContain(line);
    }
    expect(r.removed).toBe(true);
    const left = execFileSync("ip", ["netns", "list"], { encoding: "utf8" });
    expect(left).not.toContain(r.routerNamespace);
  });
});
