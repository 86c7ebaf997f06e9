import type { Backend, IpFamily } from "@chainwarden/core";

/** A failure the way the real tool reports it: exit code and stderr, byte for byte. */
export interface ToolFailure {
  exitCode: number;
  stderr: string;
}

/**
 * The stderr texts and exit codes of iptables 1.8.9's restore and save tools, per variant and
 * family, as probed on Debian 12 in throwaway network namespaces. The fake builds every failure
 * from here so the real runner's classification (stderr + exit code) sees exactly what it would
 * see from the tool; the contract suite compares several of them with the real tools.
 */
export class ToolMessages {
  /** `iptables-restore` (legacy) / `iptables-nft-restore`, `ip6…` for IPv6. */
  readonly restoreProgram: string;
  readonly saveProgram: string;
  private readonly header: string;

  constructor(
    readonly variant: Backend,
    readonly family: IpFamily,
    readonly version: string,
  ) {
    const base = family === 4 ? "iptables" : "ip6tables";
    this.restoreProgram = variant === "nft" ? `${base}-nft-restore` : `${base}-restore`;
    this.saveProgram = variant === "nft" ? `${base}-nft-save` : `${base}-save`;
    this.header = `v${version} (${variant === "nft" ? "nf_tables" : "legacy"})`;
  }

  /** xtables_error(PARAMETER_PROBLEM) during parsing: rc 2, names the line it was reading. */
  parameterProblem(message: string, line: number): ToolFailure {
    const p = this.restoreProgram;
    return {
      exitCode: 2,
      stderr: `${p} ${this.header}: ${message}\nError occurred at line: ${line}\nTry \`${p} -h' or '${p} --help' for more information.\n`,
    };
  }

  /** A line that does not start with an option (`foo bar`, or `*nat` inside an open table). */
  badArgument(token: string, line: number): ToolFailure {
    const p = this.restoreProgram;
    return { exitCode: 2, stderr: `Bad argument \`${token}'\nError occurred at line: ${line}\nTry \`${p} -h' or '${p} --help' for more information.\n` };
  }

  unknownTable(table: string, line: number): ToolFailure {
    const p = this.restoreProgram;
    return this.variant === "nft"
      ? this.parameterProblem(`${p}: line ${line} table name '${table}' invalid`, line)
      : this.parameterProblem(`${p}: unable to initialize table '${table}'`, line);
  }

  /** `iptables-restore: line N failed` (legacy: every libiptc error; nft adds the reason). */
  lineFailed(line: number, nftReason?: string): ToolFailure {
    const reason = this.variant === "nft" && nftReason !== undefined ? `: ${nftReason}` : "";
    return { exitCode: 1, stderr: `${this.restoreProgram}: line ${line} failed${reason}\n` };
  }

  commitExpected(line: number): ToolFailure {
    return { exitCode: 1, stderr: `${this.restoreProgram}: COMMIT expected at line ${line}\n` };
  }

  /** Legacy only: `:CHAIN POLICY` whose policy cannot be set. */
  cannotSetPolicy(policy: string, chain: string, line: number, reason: string): ToolFailure {
    return { exitCode: 1, stderr: `${this.restoreProgram} ${this.header}: Can't set policy \`${policy}' on \`${chain}' line ${line}: ${reason}\n` };
  }

  chainNameTooLong(chain: string, line: number, declaration: boolean): ToolFailure {
    return this.variant === "legacy" && declaration
      ? this.parameterProblem(`Invalid chain name \`${chain}' (28 chars max)`, line)
      : this.parameterProblem(`chain name \`${chain}' too long (must be under 29 chars)`, line);
  }

  invalidRuleNumber(token: string, line: number): ToolFailure {
    return this.parameterProblem(`Invalid rule number \`${token}'`, line);
  }

  /** A `-j NAME` that is neither a target extension nor a chain. nft reports it at COMMIT. */
  missingJumpTarget(target: string, kind: "jump" | "goto", line: number, commitLine: number): ToolFailure {
    if (this.variant === "nft") return this.parameterProblem(`Chain '${target}' does not exist`, commitLine);
    return kind === "goto"
      ? this.parameterProblem(`goto '${target}' is not a chain`, line)
      : this.parameterProblem(`Couldn't load target \`${target}':No such file or directory\n`, line);
  }

  /** nft only: the kernel refused to delete chains (not empty, or still referenced); rc 4. */
  chainBusy(failures: readonly { line: number; chain: string }[]): ToolFailure {
    const lines = failures.map((f) => `line ${f.line}: CHAIN_DEL failed (Device or resource busy): chain ${f.chain}\n`).join("");
    return { exitCode: 4, stderr: `${this.restoreProgram} ${this.header}: \n${lines}` };
  }

  /** Legacy with `-w N` while another process holds the xtables lock. */
  lockHeld(lockFile: string, waitSeconds: number): ToolFailure {
    return {
      exitCode: 4,
      stderr: `Can't lock ${lockFile}: Resource temporarily unavailable\nAnother app is currently holding the xtables lock. Stopped waiting after ${waitSeconds}s.\n`,
    };
  }

  /** `iptables-save -t NAME` for a table the family does not have. */
  saveUnknownTable(table: string): ToolFailure {
    return this.variant === "nft"
      ? { exitCode: 1, stderr: `Table \`${table}' does not exist\n` }
      : { exitCode: 1, stderr: `${this.saveProgram} ${this.header}: Cannot initialize: Table does not exist (do you need to insmod?)\n` };
  }
}

/** What `ip netns exec NAME …` prints when NAME does not exist (exit 255). */
export function namespaceGoneFailure(namespace: string): ToolFailure {
  return { exitCode: 255, stderr: `Cannot open network namespace "${namespace}": No such file or directory\n` };
}

/** The userspace reasons iptables-nft-restore appends to `line N failed`. */
export const NFT_REASONS = {
  noChain: "No chain/target/match by that name.",
  insertTooBig: "Index of insertion too big.",
  deleteTooBig: "Index of deletion too big.",
  replaceTooBig: "Index of replacement too big.",
  badRule: "Bad rule (does a matching rule exist in that chain?).",
  chainExists: "Chain already exists.",
  badBuiltin: "Bad built-in chain name.",
  badPolicy: "Bad policy name.",
} as const;
