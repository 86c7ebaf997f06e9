import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ExecaRunner, type Backend, type Target } from "@chainwarden/core";
import { describe } from "vitest";
import { FakeIptablesRunner } from "../fake-iptables-runner.js";
import { createNetns, isRoot } from "../netns.js";
import { holdXtablesLock, type HeldXtablesLock } from "../xtables-lock.js";
import { describeIptablesRunnerContract, type IptablesRunnerContractSubject } from "./iptables-runner-contract.js";

for (const variant of ["nft", "legacy"] as const) {
  describeIptablesRunnerContract(`FakeIptablesRunner (${variant})`, async () => {
    const fake = new FakeIptablesRunner({ variant, namespaces: ["cw-fake"] });
    return {
      runner: fake,
      target: { namespace: "cw-fake", family: 4 },
      variant,
      holdLock: async (ms) => fake.holdLock(ms),
      // Two echo requests and two replies through OUTPUT, 84 bytes each on IPv4.
      sendPings: async (target, hit) => fake.countPackets(target, hit.table, hit.chain, hit.ruleIndex, 4, target.family === 4 ? 336 : 416),
      goneTarget: async () => {
        fake.addNamespace("cw-fake-gone");
        await fake.restore({ namespace: "cw-fake-gone", family: 4 }, "*filter\n:x - [0:0]\nCOMMIT\n");
        fake.deleteNamespace("cw-fake-gone");
        return { namespace: "cw-fake-gone", family: 4 };
      },
      dispose: async () => {},
    };
  });
}

async function realSubject(variant: Backend): Promise<IptablesRunnerContractSubject> {
  const dir = await mkdtemp(join(tmpdir(), "cw-xtables-"));
  const lockFile = join(dir, "xtables.lock");
  const holders: HeldXtablesLock[] = [];
  const netns = await createNetns("cw-contract");
  try {
    await netns.exec(["ip", "link", "set", "lo", "up"]);
  } catch (err) {
    await netns.delete();
    throw err;
  }
  const runner = new ExecaRunner({ backend: variant, env: { XTABLES_LOCKFILE: lockFile }, lockWaitSeconds: 1 });
  return {
    runner,
    target: { namespace: netns.name, family: 4 },
    variant,
    holdLock: async (ms) => {
      holders.push(await holdXtablesLock(lockFile, ms));
    },
    sendPings: async (target: Target) => {
      const address = target.family === 4 ? "127.0.0.1" : "::1";
      await netns.exec(["ping", `-${target.family}`, "-c", "2", "-i", "0.2", "-W", "1", "-q", address]);
    },
    goneTarget: async () => {
      const gone = await createNetns("cw-gone");
      await gone.delete();
      return { namespace: gone.name, family: 4 };
    },
    dispose: async () => {
      await Promise.all(holders.map((h) => h.release()));
      await netns.delete();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

describe.skipIf(!isRoot())("against the real tools (root, throwaway namespaces)", () => {
  describeIptablesRunnerContract("ExecaRunner (iptables-nft)", () => realSubject("nft"));
  describeIptablesRunnerContract("ExecaRunner (iptables-legacy)", () => realSubject("legacy"));
});
