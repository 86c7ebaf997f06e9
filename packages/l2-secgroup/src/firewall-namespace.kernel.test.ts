/**
 * A cold add of many ports on the real kernel (nf_tables and legacy): streamed to iptables-restore
 * port by port (the execa runner offers `restoreStream`) it must leave exactly what the same add
 * sent as whole inputs leaves (a forwarding runner, which does not stream). Namespaces are the
 * test's own and always deleted; the legacy backend uses a private xtables lock file.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ExecaRunner, ForwardingRunner, IptablesManager, normalizeSave, type Backend, type IptablesRunner } from "@chainwarden/core";
import { createNetns, isRoot, type TestNetns } from "@chainwarden/testing";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { iptablesFlavor } from "./firewall-flavor.js";
import { FirewallNamespace } from "./firewall-namespace.js";
import { DEFAULT_GROUPS, resources, WEB_SG } from "./test-support/fixtures.js";

describe.each(["nft", "legacy"] as Backend[])("a cold add of many ports on the real kernel (%s)", (backend) => {
  let lockDir: string;
  let runner: ExecaRunner;
  const made: TestNetns[] = [];

  beforeAll(() => {
    if (!isRoot()) throw new Error("these tests program iptables in network namespaces: run them as root");
    lockDir = mkdtempSync(join(tmpdir(), "cw-l2stream-xtables-"));
    writeFileSync(join(lockDir, "xtables.lock"), "");
    runner = new ExecaRunner({ backend, env: { XTABLES_LOCKFILE: join(lockDir, "xtables.lock") } });
  });
  afterEach(async () => {
    for (const n of made.splice(0)) await n.delete();
  });
  afterAll(() => rmSync(lockDir, { recursive: true, force: true }));

  it("streamed port by port, it leaves exactly what whole inputs leave, ipsets included", async () => {
    const many = Array.from({ length: 120 }, (_, i) => {
      const hex = i.toString(16).padStart(8, "0");
      return { id: `port-${i}`, device: `tap${hex}-00`, ip: [`10.0.${i >> 6}.${(i & 63) + 10}`, `2001:db8::${(i + 16).toString(16)}`], mac: `fa:16:3e:00:01:${(i & 255).toString(16).padStart(2, "0")}` };
    });
    const groups = {
      [WEB_SG]: [
        ...DEFAULT_GROUPS[WEB_SG]!,
        { direction: "ingress", ethertype: "IPv4", remote_group_id: WEB_SG },
        ...Array.from({ length: 6 }, (_, k) => ({ direction: "ingress", ethertype: "IPv4", protocol: "tcp", port_range_min: 1000 + k, port_range_max: 1000 + k })),
      ],
    };
    const spec = { ports: many, groups, members: { [WEB_SG]: { IPv4: [["10.0.0.10", "m"], ["10.0.0.11", "m"]] } } };
    const streamed = new ForwardingRunner(runner);
    let opened = 0;
    // Counts the streams the runner opens, and passes them on.
    (streamed as IptablesRunner).restoreStream = (target, options) => {
      opened++;
      return runner.restoreStream(target, options);
    };

    const saves: string[][] = [];
    for (const r of [streamed, new ForwardingRunner(runner)]) {
      const netns = await createNetns("cw-l2st");
      made.push(netns);
      const manager = new IptablesManager({ runner: r, namespace: netns.name, wrapName: iptablesFlavor.defaultWrapName, stateless: true, strict: true });
      const ns = new FirewallNamespace({ runner: r, namespace: netns.name, flavor: iptablesFlavor, enableIpset: true, waitForDevices: false });
      const { result } = await manager.deferApply(() => ns.reconcile(manager, resources(spec, { enableIpset: true })));
      expect(result.families.map((f) => [f.family, f.sent])).toEqual([[4, true], [6, true]]);
      const save = async (family: 4 | 6) => normalizeSave(await runner.save({ namespace: netns.name, family }));
      saves.push([await save(4), await save(6)]);
      // Applied again: nothing to send, and a fresh read of the kernel finds nothing to repair.
      const again = await manager.deferApply(() => ns.reconcile(manager, resources(spec, { enableIpset: true })));
      expect(again.result.lines).toBe(0);
      expect((await manager.verify()).repaired).toBe(false);
    }
    expect(opened).toBe(2);
    expect(saves[0]).toEqual(saves[1]);
    expect(saves[0]![0]).toContain("-m set --match-set NIPv45a1e0000-0000-4000-8000- src");
    expect(saves[0]![0]).toContain(":neutron-linuxbri-i00000077-0 -\n");
  });
});
