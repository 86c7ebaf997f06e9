import { randomBytes } from "node:crypto";
import { addNamespace, deleteNamespace, ExecaRunner, type Backend, type IptablesRunner } from "@chainwarden/core";
import { FakeIptablesRunner } from "@chainwarden/testing";

/** Where a golden test runs: the honest fake, or the real tools in namespaces the test creates. */
export interface GoldenHost {
  readonly runner: IptablesRunner;
  /** A fresh namespace (a name unique to this host). */
  namespace(label: string): Promise<string>;
  /** Deletes every namespace this host created. */
  cleanup(): Promise<void>;
}

export function fakeHost(variant: Backend): GoldenHost & { runner: FakeIptablesRunner } {
  const runner = new FakeIptablesRunner({ variant });
  return {
    runner,
    async namespace(label) {
      runner.addNamespace(label);
      return label;
    },
    async cleanup() {},
  };
}

export function kernelHost(backend: Backend): GoldenHost {
  const runner = new ExecaRunner({ backend });
  // A prefix of our own: the namespaces are this test's alone, and all of them go at the end.
  const prefix = `cwfw${randomBytes(3).toString("hex")}-`;
  const created: string[] = [];
  return {
    runner,
    async namespace(label) {
      const ns = `${prefix}${label}`.slice(0, 60);
      await addNamespace(runner, ns);
      created.push(ns);
      return ns;
    },
    async cleanup() {
      for (const ns of created.splice(0)) await deleteNamespace(runner, ns);
    },
  };
}
