import { CommandError, NamespaceGoneError, type ExecResult, type IpsetRunner } from "@chainwarden/core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

/** What one test of the contract gets from `setup`: a fresh namespace with no sets. */
export interface IpsetRunnerContractSubject {
  runner: IpsetRunner;
  /** A namespace that exists and has no sets yet. */
  namespace: string;
  /** Makes the kernel hold the set (an iptables rule of the namespace names it with `--match-set`). */
  holdSet(name: string): Promise<void>;
  /** Removes that rule again. */
  releaseSet(name: string): Promise<void>;
  /** A namespace that existed, had a set, and was deleted. */
  goneNamespace(): Promise<string>;
  dispose(): Promise<void>;
}

/**
 * The behaviour of `ipset` (7.17) that Chainwarden relies on, checked against the real tool in a
 * throwaway namespace and against `FakeIpset`, so the fake cannot drift from it: the commands the
 * ipset manager runs (`create -exist`, `restore -exist` of create/flush/add lines, `swap`,
 * `destroy`, `list -n`) and `save`, with the exact messages and exit codes of their failures, and
 * which lines of a failed restore took effect.
 */
export function describeIpsetRunnerContract(name: string, setup: () => Promise<IpsetRunnerContractSubject>): void {
  describe(`IpsetRunner contract: ${name}`, () => {
    let s: IpsetRunnerContractSubject;

    beforeEach(async () => {
      s = await setup();
    });
    afterEach(async () => {
      await s?.dispose();
    });

    const ipset = (args: readonly string[], input?: string): Promise<ExecResult> =>
      s.runner.exec("ipset", args, { namespace: s.namespace, reject: false, ...(input !== undefined ? { input } : {}) });
    const ok = async (args: readonly string[], input?: string) => expect(await ipset(args, input)).toEqual({ stdout: "", stderr: "", exitCode: 0 });
    const failed = (exitCode: number, stderr: string): ExecResult => ({ stdout: "", stderr, exitCode });
    const problem = (message: string) => failed(1, `ipset v7.17: ${message}\n`);
    const usage = (message: string) => failed(2, `ipset v7.17: ${message}\nTry \`ipset help' for more information.\n`);
    const restore = (lines: readonly string[], exist = true) => ipset(exist ? ["restore", "-exist"] : ["restore"], `${lines.join("\n")}\n`);
    const names = async () => (await ipset(["list", "-n"])).stdout;
    /**
     * `ipset save` with what varies from run to run taken out: the random `initval` of each set,
     * and the order of members (the kernel's hash order).
     */
    const saved = async (set?: string) => {
      const r = await ipset(set === undefined ? ["save"] : ["save", set]);
      expect(r).toMatchObject({ stderr: "", exitCode: 0 });
      const out: string[] = [];
      let adds: string[] = [];
      for (const line of r.stdout.split("\n").filter(Boolean)) {
        if (line.startsWith("create ")) {
          out.push(...adds.sort());
          adds = [];
          expect(line).toMatch(/ initval 0x[0-9a-f]{8}$/);
          out.push(line.replace(/ initval 0x[0-9a-f]{8}$/, ""));
        } else adds.push(line);
      }
      return [...out, ...adds.sort()];
    };
    const header = (set: string, family = "inet") => `create ${set} hash:net family ${family} hashsize 1024 maxelem 65536 bucketsize 12`;

    it("starts with no sets in a fresh namespace", async () => {
      expect(await ipset(["list", "-n"])).toEqual({ stdout: "", stderr: "", exitCode: 0 });
      expect(await ipset(["save"])).toEqual({ stdout: "", stderr: "", exitCode: 0 });
    });

    it("creates a set once; -exist takes an existing one, even of the other family, and leaves it as it is", async () => {
      await ok(["create", "cw-a", "hash:net", "family", "inet"]);
      expect(await ipset(["create", "cw-a", "hash:net", "family", "inet"])).toEqual(problem("Set cannot be created: set with the same name already exists"));
      await ok(["create", "-exist", "cw-a", "hash:net", "family", "inet"]);
      await ok(["create", "-exist", "cw-a", "hash:net", "family", "inet6"]);
      await ok(["create", "cw-b", "hash:net", "family", "inet6", "-exist"]);
      await ok(["create", "cw-c", "hash:net"]);
      expect(await saved()).toEqual([header("cw-a"), header("cw-b", "inet6"), header("cw-c")]);
    });

    it("takes names of up to 31 characters and refuses what does not parse as the tool does", async () => {
      await ok(["create", "a".repeat(31), "hash:net", "family", "inet"]);
      expect(await ipset(["create", "b".repeat(32), "hash:net", "family", "inet"])).toEqual(problem(`Syntax error: setname '${"b".repeat(32)}' is longer than 31 characters`));
      expect(await ipset(["create"])).toEqual(usage("Missing mandatory argument to command create"));
      expect(await ipset(["create", "cw-x"])).toEqual(usage("Missing second mandatory argument to command create"));
      expect(await ipset(["create", "cw-x", "hash:net", "family"])).toEqual(usage("Missing mandatory argument of option `family'"));
      expect(await ipset(["swap"])).toEqual(usage("Missing mandatory argument to command swap"));
      expect(await ipset(["swap", "cw-x"])).toEqual(usage("Missing second mandatory argument to command swap"));
      expect(await ipset(["destroy", "cw-x", "cw-y"])).toEqual(usage("Unknown argument cw-y"));
      expect(await names()).toBe(`${"a".repeat(31)}\n`);
    });

    it("lists sets in the kernel's index order: a new set takes the lowest free index", async () => {
      for (const n of ["cw-1", "cw-2", "cw-3"]) await ok(["create", n, "hash:net", "family", "inet"]);
      await ok(["destroy", "cw-2"]);
      await ok(["create", "cw-4", "hash:net", "family", "inet6"]);
      await ok(["create", "cw-5", "hash:net", "family", "inet"]);
      expect(await names()).toBe("cw-1\ncw-4\ncw-3\ncw-5\n");
      expect(await ipset(["list", "-n", "cw-3"])).toEqual({ stdout: "cw-3\n", stderr: "", exitCode: 0 });
      expect(await ipset(["list", "-n", "cw-2"])).toEqual(problem("The set with the given name does not exist"));
      expect(await ipset(["save", "cw-2"])).toEqual(problem("The set with the given name does not exist"));
    });

    it("restores the ipset manager's script: members as save prints them, host bits cleared", async () => {
      await ok(["create", "-exist", "cw-v4", "hash:net", "family", "inet"]);
      const r = await restore([
        "create cw-v4-n hash:net family inet",
        "flush cw-v4-n",
        "add cw-v4-n 10.0.0.1",
        "add cw-v4-n 10.0.0.2/32",
        "add cw-v4-n 10.0.1.0/24",
        "add cw-v4-n 10.0.2.7/24",
        "add cw-v4-n 0.0.0.0/1",
        "add cw-v4-n 128.0.0.0/1",
        "create cw-v6-n hash:net family inet6",
        "add cw-v6-n 2001:db8::1",
        "add cw-v6-n 2001:0db8:0:0::5/64",
        "add cw-v6-n 2001:db8:1::1/128",
        "add cw-v6-n ::/1",
      ]);
      expect(r).toEqual({ stdout: "", stderr: "", exitCode: 0 });
      expect(await saved("cw-v4-n")).toEqual([header("cw-v4-n"), "add cw-v4-n 0.0.0.0/1", "add cw-v4-n 10.0.0.1", "add cw-v4-n 10.0.0.2", "add cw-v4-n 10.0.1.0/24", "add cw-v4-n 10.0.2.0/24", "add cw-v4-n 128.0.0.0/1"]);
      expect(await saved("cw-v6-n")).toEqual([header("cw-v6-n", "inet6"), "add cw-v6-n 2001:db8:1::1", "add cw-v6-n 2001:db8::/64", "add cw-v6-n 2001:db8::1", "add cw-v6-n ::/1"]);
      // A second run of the same script (create -exist, flush) leaves the same set.
      await ok(["restore", "-exist"], "create cw-v4-n hash:net family inet\nflush cw-v4-n\nadd cw-v4-n 10.0.0.9\n");
      expect(await saved("cw-v4-n")).toEqual([header("cw-v4-n"), "add cw-v4-n 10.0.0.9"]);
      expect(await ipset(["restore"], "")).toEqual({ stdout: "", stderr: "", exitCode: 0 });
    });

    it("reports a restore's failing line; adds the kernel refuses keep the adds before them", async () => {
      await ok(["create", "cw-r", "hash:net", "family", "inet"]);
      expect(await restore(["add cw-r 10.0.0.1", "add cw-r 10.0.0.2", "add cw-r 10.0.0.1/32", "add cw-r 10.0.0.3"], false)).toEqual(
        problem("Error in line 3: Element cannot be added to the set: it's already added"),
      );
      expect(await saved("cw-r")).toEqual([header("cw-r"), "add cw-r 10.0.0.1", "add cw-r 10.0.0.2"]);
      // -exist: an element already there is no error.
      expect(await restore(["add cw-r 10.0.0.1", "add cw-r 10.0.0.3"])).toEqual({ stdout: "", stderr: "", exitCode: 0 });
      // A /0 passes the tool and is refused by the kernel.
      expect(await restore(["add cw-r 10.0.0.4", "add cw-r 10.0.0.0/0", "add cw-r 10.0.0.5"])).toEqual(problem("Error in line 2: The value of the CIDR parameter of the IP address is invalid"));
      // Blank and comment lines count.
      expect(await restore(["", "# a comment", "create cw-r hash:net family inet"], false)).toEqual(problem("Error in line 3: Set cannot be created: set with the same name already exists"));
      expect(await saved("cw-r")).toEqual([header("cw-r"), "add cw-r 10.0.0.1", "add cw-r 10.0.0.2", "add cw-r 10.0.0.3", "add cw-r 10.0.0.4"]);
    });

    it("drops the adds still waiting when a later restore line cannot be read; other commands send them first", async () => {
      await ok(["create", "cw-w", "hash:net", "family", "inet"]);
      await ok(["create", "cw-w6", "hash:net", "family", "inet6"]);
      // The tool looks the set up to read the element: a missing set fails the line, not the batch.
      expect(await restore(["add cw-w 10.0.0.1", "add cw-missing 10.0.0.2"])).toEqual(problem("Error in line 2: The set with the given name does not exist"));
      expect(await restore(["add cw-w 10.0.0.3", "add cw-w ::1"])).toEqual(problem("Error in line 2: Syntax error: cannot parse ::1: resolving to IPv4 address failed"));
      expect(await restore(["add cw-w6 2001:db8::1", "add cw-w6 10.0.0.1"])).toEqual(problem("Error in line 2: Syntax error: cannot parse 10.0.0.1: resolving to IPv6 address failed"));
      expect(await restore(["add cw-w 10.0.0.4", "add cw-w 10.0.0.5/33"])).toEqual(problem("Error in line 2: Syntax error: '33' is out of range 0-32"));
      expect(await restore(["add cw-w 10.0.0.6", "bogus cw-w"])).toEqual(usage("No command specified: unknown argument bogus"));
      expect(await restore(["add cw-w 10.0.0.7", "add cw-w"])).toEqual(usage("Missing second mandatory argument to command add"));
      expect(await restore(["add cw-w 10.0.0.7", "add"])).toEqual(usage("Missing mandatory argument to command add"));
      expect(await restore(["add cw-w 10.0.0.7", "add cw-w 10.0.0.8 extra"])).toEqual(usage("Unknown argument: `extra'"));
      expect(await restore(["add cw-w 10.0.0.7", `create ${"c".repeat(32)} hash:net`])).toEqual(
        problem(`Error in line 2: Syntax error: setname '${"c".repeat(32)}' is longer than 31 characters`),
      );
      expect(await saved("cw-w")).toEqual([header("cw-w")]);
      // A create or a flush sends the waiting adds before it; the kernel refusing it keeps them.
      expect(await restore(["add cw-w 10.0.0.9", "flush cw-missing"])).toEqual(problem("Error in line 2: The set with the given name does not exist"));
      expect(await restore(["add cw-w6 2001:db8::9", "create cw-new hash:net family inet", "add cw-missing 10.0.0.1"])).toEqual(
        problem("Error in line 3: The set with the given name does not exist"),
      );
      expect(await saved()).toEqual([header("cw-w"), "add cw-w 10.0.0.9", header("cw-w6", "inet6"), "add cw-w6 2001:db8::9", header("cw-new")]);
    });

    it("swaps the contents of two sets of one family; each name keeps its place", async () => {
      await ok(["restore"], "create cw-s hash:net family inet\nadd cw-s 10.0.0.1\ncreate cw-s-n hash:net family inet\nadd cw-s-n 10.0.0.2\ncreate cw-s6 hash:net family inet6\n");
      await ok(["swap", "cw-s-n", "cw-s"]);
      expect(await saved()).toEqual([header("cw-s"), "add cw-s 10.0.0.2", header("cw-s-n"), "add cw-s-n 10.0.0.1", header("cw-s6", "inet6")]);
      await ok(["swap", "cw-s", "cw-s"]);
      expect(await ipset(["swap", "cw-missing", "cw-s"])).toEqual(problem("The set with the given name does not exist"));
      expect(await ipset(["swap", "cw-s", "cw-missing"])).toEqual(problem("Sets cannot be swapped: the second set does not exist"));
      expect(await ipset(["swap", "cw-s", "cw-s6"])).toEqual(problem("The sets cannot be swapped: their type does not match"));
    });

    it("refuses to destroy a set a rule names, before and after a swap, until the rule goes", async () => {
      await ok(["restore"], "create cw-d hash:net family inet\nadd cw-d 10.0.0.1\ncreate cw-d-n hash:net family inet\n");
      await s.holdSet("cw-d");
      expect(await ipset(["destroy", "cw-d"])).toEqual(problem("Set cannot be destroyed: it is in use by a kernel component"));
      // The ipset manager's refresh: swap the new contents in, destroy the old under the other name.
      await ok(["swap", "cw-d-n", "cw-d"]);
      await ok(["destroy", "cw-d-n"]);
      expect(await ipset(["destroy", "cw-d"])).toEqual(problem("Set cannot be destroyed: it is in use by a kernel component"));
      await s.releaseSet("cw-d");
      await ok(["destroy", "cw-d"]);
      expect(await ipset(["destroy", "cw-d"])).toEqual(problem("The set with the given name does not exist"));
      await ok(["destroy", "-exist", "cw-d"]);
      expect(await names()).toBe("");
    });

    it("settles failures as exec does: CommandError unless reject is false, NamespaceGoneError for a deleted namespace", async () => {
      const err = await s.runner.exec("ipset", ["destroy", "cw-none"], { namespace: s.namespace }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CommandError);
      expect(err).toMatchObject({ exitCode: 1, stderr: "ipset v7.17: The set with the given name does not exist\n" });
      const gone = await s.goneNamespace();
      const goneErr = await s.runner.exec("ipset", ["list", "-n"], { namespace: gone }).catch((e: unknown) => e);
      expect(goneErr).toBeInstanceOf(NamespaceGoneError);
      expect(await s.runner.exec("ipset", ["list", "-n"], { namespace: gone, reject: false })).toEqual(
        failed(255, `Cannot open network namespace "${gone}": No such file or directory\n`),
      );
    });
  });
}
