/**
 * Golden tests with real Neutron server payloads, on the fake host (iptables and ipset): each
 * `neutron-server-fixtures/*.payload.json` is a Neutron Zed server's `security_group_info_for_devices`
 * answer as it crossed the wire (ML2 + its provider rules: the RA rule, DHCP and DHCPv6, all key
 * shapes the server sends), taken as the l2 state document unchanged; after one apply the
 * normalized iptables-save, ip6tables-save and ipset save must equal what real Neutron's
 * IptablesFirewallDriver wrote for the same answer (with and without ipset), and a second apply
 * must send nothing. The fixtures and how they were made: `neutron-server-fixtures/README.md`.
 */
import { FakeHost } from "@chainwarden/testing";
import { describe, expect, it } from "vitest";
import { applyPayload, loadServerPayload, SERVER_PAYLOADS } from "./test-support/server-payload.js";

describe.each(["nft", "legacy"] as const)("real Neutron server payloads on the fake host (%s)", (variant) => {
  describe.each(SERVER_PAYLOADS)("%s", (name) => {
    it.each([false, true])("is taken unchanged and rendered as Neutron renders it (enable_ipset %s)", async (enableIpset) => {
      const { payload, expected } = loadServerPayload(name, enableIpset);
      const namespace = "golden";
      const host = new FakeHost({ variant, namespaces: [namespace] });
      const out = await applyPayload(payload, { runner: host, namespace, enableIpset, ipsetSave: async () => host.ipset.dump(namespace) });
      expect(out.problems).toEqual([]);
      expect(out.secondLines, "a second apply of the same state").toBe(0);
      expect(Object.keys(out.sections).sort()).toEqual(Object.keys(expected.sections).sort());
      for (const [section, text] of Object.entries(expected.sections)) {
        expect(out.sections[section], `${name} ${section}`).toBe(text);
      }
    });
  });
});
