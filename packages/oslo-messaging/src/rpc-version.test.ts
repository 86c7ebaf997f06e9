import { describe, expect, it } from "vitest";
import { runPeerScript } from "./python-peer.test-support.js";
import { versionIsCompatible } from "./rpc-version.js";

const PAIRS: [string | null, string | null][] = [
  [null, "1.0"],
  ["1.0", null],
  ["1.0", "1.0"],
  ["1.4", "1.0"],
  ["1.4", "1.4"],
  ["1.4", "1.5"],
  ["1.4", "2.0"],
  ["2.3", "1.0"],
  ["1.4.2", "1.4.1"],
  ["1.4.1", "1.4.2"],
  ["1.4", "1.4.1"],
  ["1.10", "1.9"],
  ["1.9", "1.10"],
  ["1", "1.0"],
  ["1.x", "1.0"],
];

describe("versionIsCompatible", () => {
  it("answers as oslo.messaging's version_is_compatible, and fails where it raises", () => {
    const python = runPeerScript<({ ok: boolean } | { error: string })[]>("version_compat.py", PAIRS);
    const ours = PAIRS.map(([imp, version]) => {
      try {
        return { ok: versionIsCompatible(imp, version) };
      } catch {
        return { error: "raised" };
      }
    });
    expect(ours).toEqual(python.map((r) => ("ok" in r ? r : { error: "raised" })));
  });
});
