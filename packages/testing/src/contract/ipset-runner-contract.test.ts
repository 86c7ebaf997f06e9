import { ExecaRunner } from "@chainwarden/core";
import { describe } from "vitest";
import { FakeIpset } from "../fake-ipset.js";
import { FakeIptablesRunner } from "../fake-iptables-runner.js";
import { FakeNetns } from "../fake-netns.js";
import { createNetns, isRoot } from "../netns.js";
import { describeIpsetRunnerContract, type IpsetRunnerContractSubject } from "./ipset-runner-contract.js";

const holdRule = (set: string) => `-A INPUT -m set --match-set ${set} src -j DROP`;

// The fake as a composer wires it: sets held by the rules of the iptables fake on the same host.
describeIpsetRunnerContract("FakeIpset", async () => {
  const netns = new FakeNetns(["cw-fake"]);
  const iptables = new FakeIptablesRunner({ variant: "nft", netns });
  const ipset = new FakeIpset({ netns, inUse: FakeIpset.referencedBy(iptables) });
  const target = { namespace: "cw-fake", family: 4 } as const;
  return {
    runner: ipset,
    namespace: "cw-fake",
    holdSet: (set) => iptables.restore(target, `*filter\n${holdRule(set)}\nCOMMIT\n`),
    releaseSet: (set) => iptables.restore(target, `*filter\n${holdRule(set).replace("-A", "-D")}\nCOMMIT\n`),
    goneNamespace: async () => {
      netns.add("cw-fake-gone");
      await ipset.exec("ipset", ["create", "cw-g", "hash:net"], { namespace: "cw-fake-gone" });
      netns.delete("cw-fake-gone");
      return "cw-fake-gone";
    },
    dispose: async () => {},
  };
});

async function realSubject(): Promise<IpsetRunnerContractSubject> {
  const netns = await createNetns("cw-ipset");
  const iptables = (args: string[]) => netns.exec(["iptables", "-w", "5", ...args]);
  const runner = new ExecaRunner();
  return {
    runner,
    namespace: netns.name,
    holdSet: async (set) => void (await iptables(holdRule(set).split(" "))),
    releaseSet: async (set) => void (await iptables(holdRule(set).replace("-A", "-D").split(" "))),
    goneNamespace: async () => {
      const gone = await createNetns("cw-ipset-gone");
      try {
        await gone.exec(["ipset", "create", "cw-g", "hash:net"]);
      } finally {
        await gone.delete();
      }
      return gone.name;
    },
    dispose: async () => {
      await runner.close();
      await netns.delete();
    },
  };
}

describe.skipIf(!isRoot())("against the real tool (root, throwaway namespaces)", () => {
  describeIpsetRunnerContract("ExecaRunner (ipset 7.17)", realSubject);
});
