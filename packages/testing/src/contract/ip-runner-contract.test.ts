import { randomBytes } from "node:crypto";
import { ExecaRunner } from "@chainwarden/core";
import { describe } from "vitest";
import { FakeIp } from "../fake-ip.js";
import { createNetns, deleteNetns, isRoot, type TestNetns } from "../netns.js";
import { describeIpRunnerContract, type IpRunnerContractSubject } from "./ip-runner-contract.js";

describeIpRunnerContract("FakeIp", async () => {
  const fake = new FakeIp({ namespaces: ["cw-a", "cw-b", "cw-gone"] });
  fake.deleteNamespace("cw-gone");
  let spare = 0;
  return {
    runner: fake,
    namespaces: ["cw-a", "cw-b"],
    goneNamespace: "cw-gone",
    spareName: () => `cw-spare-${++spare}`,
    dispose: async () => {},
  };
});

/** Namespaces named `cw-ipc-<pid>-<random>`, every one deleted at dispose (also those a test made). */
async function realSubject(): Promise<IpRunnerContractSubject> {
  const made: TestNetns[] = [];
  const spare: string[] = [];
  try {
    made.push(await createNetns("cw-ipc"), await createNetns("cw-ipc"));
  } catch (err) {
    await Promise.all(made.map((n) => n.delete()));
    throw err;
  }
  const gone = await createNetns("cw-ipc");
  await gone.delete();
  const runner = new ExecaRunner();
  return {
    runner,
    namespaces: [made[0]!.name, made[1]!.name],
    goneNamespace: gone.name,
    spareName: () => {
      const name = `cw-ipc-${process.pid}-${randomBytes(3).toString("hex")}`;
      spare.push(name);
      return name;
    },
    dispose: async () => {
      try {
        await Promise.all([...made.map((n) => n.delete()), ...spare.map((n) => deleteNetns(n))]);
      } finally {
        await runner.close();
      }
    },
  };
}

describe.skipIf(!isRoot())("against the real ip (root, throwaway namespaces)", () => {
  describeIpRunnerContract("ExecaRunner", realSubject);
});
