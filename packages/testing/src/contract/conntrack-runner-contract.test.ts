import { ExecaRunner } from "@chainwarden/core";
import { describe } from "vitest";
import { FakeConntrack } from "../fake-conntrack.js";
import { FakeNetns } from "../fake-netns.js";
import { createNetns, deleteNetns, isRoot } from "../netns.js";
import { runCommand } from "../run-command.js";
import { describeConntrackRunnerContract, type ConntrackRunnerContractSubject } from "./conntrack-runner-contract.js";

describeConntrackRunnerContract("FakeConntrack", async () => {
  const netns = new FakeNetns(["cw-fake"]);
  const conntrack = new FakeConntrack({ netns });
  let others = 0;
  return {
    runner: conntrack,
    namespace: "cw-fake",
    addConnection: async (namespace, connection) => conntrack.addConnection(namespace, connection),
    otherNamespace: async () => {
      const name = `cw-fake-other-${++others}`;
      netns.add(name);
      return { name, delete: async () => netns.delete(name) };
    },
    failStarts: () => {
      conntrack.startFailure = "mkfifo: cannot create fifo: Read-only file system";
      return () => {
        conntrack.startFailure = undefined;
      };
    },
    dispose: async () => {},
  };
});

async function realSubject(): Promise<ConntrackRunnerContractSubject> {
  const main = await createNetns("cw-ct");
  const made = [main.name];
  const runner = new ExecaRunner();
  return {
    runner,
    namespace: main.name,
    addConnection: async (namespace, connection) => {
      await runCommand(["ip", "netns", "exec", namespace, "conntrack", ...FakeConntrack.insertArgs(connection)]);
    },
    otherNamespace: async () => {
      const other = await createNetns("cw-ct-other");
      made.push(other.name);
      // Only the namespace's name goes, as `ip netns del` does: a process inside keeps it alive.
      return { name: other.name, delete: async () => void (await runCommand(["ip", "netns", "del", other.name])) };
    },
    preparedStarted: async (namespace) => {
      for (let i = 0; i < 200; i++) {
        const pids = await runCommand(["ip", "netns", "pids", namespace], { reject: false });
        if (pids.stdout.trim() !== "") return;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      throw new Error(`no prepared command started in ${namespace}`);
    },
    failStarts: () => {
      // ExecaRunner makes each FIFO in a fresh directory under os.tmpdir(), which reads TMPDIR.
      const before = process.env["TMPDIR"];
      process.env["TMPDIR"] = "/nonexistent-chainwarden-contract";
      return () => {
        if (before === undefined) delete process.env["TMPDIR"];
        else process.env["TMPDIR"] = before;
      };
    },
    dispose: async () => {
      await runner.close();
      await Promise.all(made.map((n) => deleteNetns(n)));
    },
  };
}

describe.skipIf(!isRoot())("against the real tool (root, throwaway namespaces)", () => {
  describeConntrackRunnerContract("ExecaRunner (conntrack 1.4.7)", realSubject);
});
