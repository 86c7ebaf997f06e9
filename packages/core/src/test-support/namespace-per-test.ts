/**
 * For core's kernel tests: one ExecaRunner for the file (root required) and a fresh network namespace
 * for each test, named `<prefix>-<random>` and deleted after it whatever happened. (The test kit's
 * `createNetns` does this for the other packages; core cannot depend on the kit, which depends on it.)
 */
import { randomBytes } from "node:crypto";
import { afterAll, afterEach, beforeAll, beforeEach } from "vitest";
import { ExecaRunner } from "../execa-runner.js";
import { addNamespace, deleteNamespace } from "../netns.js";

export interface NamespacePerTest {
  /** The file's runner. */
  readonly runner: ExecaRunner;
  /** The current test's namespace. */
  readonly ns: string;
}

export function namespacePerTest(prefix: string): NamespacePerTest {
  let runner: ExecaRunner | undefined;
  let ns: string | undefined;
  beforeAll(() => {
    if (process.getuid?.() !== 0) throw new Error("these tests create network namespaces: run them as root");
    runner = new ExecaRunner();
  });
  afterAll(() => runner?.close());
  beforeEach(async () => {
    ns = `${prefix}-${randomBytes(4).toString("hex")}`;
    await addNamespace(runner!, ns);
  });
  afterEach(async () => {
    if (ns !== undefined) await deleteNamespace(runner!, ns);
    ns = undefined;
  });
  return {
    get runner() {
      return runner!;
    },
    get ns() {
      return ns!;
    },
  };
}
