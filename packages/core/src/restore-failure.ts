import { NamespaceGoneError, ResourceProblemError, RestoreError, XtablesLockError } from "./errors.js";
import type { Target } from "./iptables-runner.js";
import { XTABLES_LOCK_HELD } from "./xtables-lock-message.js";

const NAMESPACE_GONE = /Cannot open network namespace "[^"]*": No such file or directory/;
const FAILED_LINE = /line:? (\d+)(?: failed)?/;
const MISSING_CHAIN = /Chain '([^']+)' does not exist/;

/** What a failed `iptables-restore` left to explain it: its exit code and stderr. */
export interface RawRestoreFailure {
  exitCode: number;
  stderr: string;
  /** Overrides the line read from stderr (fault injection in the test kit). */
  line?: number;
}

/**
 * The typed error for a failed `iptables-restore`, from its exit code and stderr. Exit code 4 means
 * either lock contention or another resource problem (nf_tables uses it for deleting a busy chain);
 * only stderr tells them apart. nf_tables reports a jump to a missing chain at the COMMIT line; we
 * point at the first line of that block that jumps there instead, so the context shows the culprit.
 * Shared by the execa runner and the test kit's fake, so both raise exactly the same errors.
 */
export function classifyRestoreFailure(target: Target, input: string, failure: RawRestoreFailure): Error {
  const { exitCode, stderr } = failure;
  const ctx = { namespace: target.namespace, family: target.family };
  if (target.namespace !== undefined && NAMESPACE_GONE.test(stderr)) return new NamespaceGoneError(target.namespace, stderr);
  if (exitCode === 4 && XTABLES_LOCK_HELD.test(stderr)) return new XtablesLockError(stderr, ctx);
  const m = FAILED_LINE.exec(stderr);
  let line = failure.line ?? (m ? Number(m[1]) : undefined);
  const missing = MISSING_CHAIN.exec(stderr);
  if (line !== undefined && missing) line = lineJumpingTo(input, line, missing[1]!) ?? line;
  const raw = { exitCode, stderr, input, ...(line !== undefined ? { line } : {}) };
  if (exitCode === 4) return new ResourceProblemError(raw, ctx);
  return new RestoreError(raw, ctx);
}

/** The first line of the table block that ends at `commitLine` with a jump or goto to `chain`. */
function lineJumpingTo(input: string, commitLine: number, chain: string): number | undefined {
  const lines = input.split("\n");
  if (lines[commitLine - 1]?.trim() !== "COMMIT") return undefined;
  let start = commitLine - 1;
  while (start > 0 && !lines[start - 1]!.startsWith("*")) start--;
  for (let i = start; i < commitLine - 1; i++) {
    const l = lines[i]!;
    if (l.endsWith(` -j ${chain}`) || l.endsWith(` -g ${chain}`) || l.includes(` -j ${chain} `) || l.includes(` -g ${chain} `)) return i + 1;
  }
  return undefined;
}
