/**
 * Typed errors, rooted here for every package: each has a stable `code` callers (and the CLI's exit
 * codes) branch on, names the resource and namespace it is about when there are ones, and keeps its
 * `cause`. Other packages extend `ChainwardenError` with codes of their own.
 */
export type ChainwardenErrorCode =
  | "INVALID_RULE"
  | "INVALID_CHAIN_NAME"
  | "INVALID_NAMESPACE_NAME"
  | "CHAIN_NAME_COLLISION"
  | "UNKNOWN_CHAIN"
  | "UNKNOWN_TABLE"
  | "RESTORE_FAILED"
  | "SAVE_FAILED"
  | "XTABLES_LOCK"
  | "RESOURCE_PROBLEM"
  | "NAMESPACE_GONE"
  | "COMMAND_FAILED"
  | "BACKEND_UNAVAILABLE";

/** What a `ChainwardenError` names besides its message: the cause, and where it happened. */
export interface ChainwardenErrorOptions {
  cause?: unknown;
  /** The resource (router, port, firewall, ...) the failing input belongs to. */
  resource?: string;
  namespace?: string;
  family?: 4 | 6;
}

/** The error family of every Chainwarden package: a stable `code` to branch on, and the resource, namespace and family it concerns, so a log line or an exit code can say which one failed. */
export class ChainwardenError<C extends string = ChainwardenErrorCode> extends Error {
  readonly code: C;
  readonly resource: string | undefined;
  readonly namespace: string | undefined;
  readonly family: 4 | 6 | undefined;

  constructor(code: C, message: string, options: ChainwardenErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.resource = options.resource;
    this.namespace = options.namespace;
    this.family = options.family;
  }
}

/** Whether a value is one of our errors (by shape, so two installed copies of core agree). */
export function isChainwardenError(err: unknown): err is ChainwardenError<string> {
  return err instanceof Error && typeof (err as { code?: unknown }).code === "string" && "resource" in err && "namespace" in err;
}

/** Rule text or a comment that cannot be placed in iptables-save form, or is unsafe to send. */
export class InvalidRuleError extends ChainwardenError {
  readonly rule: string;
  constructor(rule: string, reason: string, options: ChainwardenErrorOptions = {}) {
    super("INVALID_RULE", `invalid rule${options.resource ? ` of ${options.resource}` : ""}: ${reason}: ${JSON.stringify(rule)}`, options);
    this.rule = rule;
  }
}

/** A chain name iptables would refuse or that is unsafe in restore input (length, characters); nothing was sent. */
export class InvalidChainNameError extends ChainwardenError {
  readonly chain: string;
  constructor(chain: string, reason: string, options: ChainwardenErrorOptions = {}) {
    super("INVALID_CHAIN_NAME", `invalid chain name ${JSON.stringify(chain)}: ${reason}`, options);
    this.chain = chain;
  }
}

/** A network namespace name that fails `NAMESPACE_NAME`; nothing was run with it. */
export class InvalidNamespaceNameError extends ChainwardenError {
  constructor(readonly namespaceName: string) {
    super("INVALID_NAMESPACE_NAME", `invalid network namespace name ${JSON.stringify(namespaceName)}: 1-64 of letters, digits, _ . - (not first)`);
  }
}

/** Two different chain names would be cut to the same kernel name. */
export class ChainNameCollisionError extends ChainwardenError {
  constructor(readonly kernelName: string, readonly first: string, readonly second: string, options: ChainwardenErrorOptions = {}) {
    super(
      "CHAIN_NAME_COLLISION",
      `chains ${JSON.stringify(first)} and ${JSON.stringify(second)} would both be named ${JSON.stringify(kernelName)} in the kernel`,
      options,
    );
  }
}

/** A rule for, or a lookup of, a chain the manager's table does not have. */
export class UnknownChainError extends ChainwardenError {
  constructor(readonly table: string, readonly chain: string, options: ChainwardenErrorOptions = {}) {
    super("UNKNOWN_CHAIN", `unknown chain ${JSON.stringify(chain)} in table ${table}`, options);
  }
}

/** A table the manager does not manage in this family (nat in stateless mode, nat for IPv6 beyond PREROUTING). */
export class UnknownTableError extends ChainwardenError {
  constructor(readonly table: string, family: 4 | 6, options: ChainwardenErrorOptions = {}) {
    super("UNKNOWN_TABLE", `table ${JSON.stringify(table)} is not managed for IPv${family}`, { ...options, family });
  }
}

/** One numbered line of restore input, for error context. */
export interface ContextLine {
  number: number;
  text: string;
  failing: boolean;
}

/** What a `RestoreError` is made from: the failed `iptables-restore`'s exit code, stderr and the input it was given. */
export interface RestoreFailure {
  exitCode: number;
  stderr: string;
  /** 1-based line of the input the tool reported, when it said which. */
  line?: number;
  input: string;
}

/** `iptables-restore` rejected the input. Nothing was applied (restore is atomic). */
export class RestoreError extends ChainwardenError {
  readonly exitCode: number;
  readonly stderr: string;
  readonly line: number | undefined;
  readonly lineText: string | undefined;
  readonly chain: string | undefined;
  readonly table: string | undefined;
  readonly context: ContextLine[];
  readonly input: string;

  constructor(
    failure: RestoreFailure,
    options: ChainwardenErrorOptions = {},
    code: ChainwardenErrorCode = "RESTORE_FAILED",
  ) {
    const lines = failure.input.split("\n");
    const line = failure.line;
    const lineText = line !== undefined ? lines[line - 1] : undefined;
    const context: ContextLine[] = [];
    if (line !== undefined) {
      for (let n = Math.max(1, line - 5); n <= Math.min(lines.length, line + 5); n++) {
        context.push({ number: n, text: lines[n - 1] ?? "", failing: n === line });
      }
    }
    const table = line !== undefined ? tableAtLine(lines, line) : undefined;
    const chain = lineText !== undefined ? chainOfLine(lineText) : undefined;
    const where = [
      options.namespace !== undefined ? `namespace ${options.namespace}` : "host namespace",
      options.family !== undefined ? `IPv${options.family}` : undefined,
      table !== undefined ? `table ${table}` : undefined,
      chain !== undefined ? `chain ${chain}` : undefined,
      options.resource !== undefined ? `resource ${options.resource}` : undefined,
    ].filter(Boolean);
    const ctx = context.map((c) => `${c.failing ? ">" : " "}${String(c.number).padStart(5)}: ${c.text}`).join("\n");
    super(
      code,
      `iptables-restore failed (exit ${failure.exitCode}) in ${where.join(", ")}` +
        (line !== undefined ? ` at line ${line}: ${lineText}` : "") +
        `\n${failure.stderr.trim()}` +
        (ctx ? `\n${ctx}` : ""),
      options,
    );
    this.exitCode = failure.exitCode;
    this.stderr = failure.stderr;
    this.line = line;
    this.lineText = lineText;
    this.chain = chain;
    this.table = table;
    this.context = context;
    this.input = failure.input;
  }
}

/** The xtables lock was held by another process longer than we were willing to wait. */
export class XtablesLockError extends ChainwardenError {
  constructor(readonly stderr: string, options: ChainwardenErrorOptions = {}) {
    super("XTABLES_LOCK", `the xtables lock is held by another process: ${stderr.trim()}`, options);
  }
}

/**
 * Exit code 4 that is not lock contention (e.g. nft: deleting a chain that is not empty). It carries
 * the same line context as any other failed restore.
 */
export class ResourceProblemError extends RestoreError {
  constructor(failure: RestoreFailure, options: ChainwardenErrorOptions = {}) {
    super(failure, options, "RESOURCE_PROBLEM");
  }
}

/** The network namespace a command was meant to run in does not exist (any more). */
export class NamespaceGoneError extends ChainwardenError {
  constructor(namespace: string, readonly stderr: string, options: ChainwardenErrorOptions = {}) {
    super("NAMESPACE_GONE", `network namespace ${JSON.stringify(namespace)} does not exist: ${stderr.trim()}`, { ...options, namespace });
  }
}

/** A command (ip, ipset, conntrack, ...) that exited non-zero: the argument array, its exit code and stderr. */
export class CommandError extends ChainwardenError {
  constructor(
    readonly command: readonly string[],
    readonly exitCode: number | undefined,
    readonly stderr: string,
    options: ChainwardenErrorOptions = {},
  ) {
    super("COMMAND_FAILED", `${command.join(" ")} failed (exit ${exitCode ?? "?"}): ${stderr.trim()}`, options);
  }
}

/** `iptables-save` failed; its stderr says why. */
export class SaveError extends ChainwardenError {
  constructor(readonly stderr: string, options: ChainwardenErrorOptions = {}) {
    super("SAVE_FAILED", `iptables-save failed: ${stderr.trim()}`, options);
  }
}

/** The iptables backend asked for cannot be used on this host (tools missing, or the wrong flavour installed). */
export class BackendUnavailableError extends ChainwardenError {
  constructor(message: string, options: ChainwardenErrorOptions = {}) {
    super("BACKEND_UNAVAILABLE", message, options);
  }
}

function tableAtLine(lines: string[], line: number): string | undefined {
  for (let i = line - 1; i >= 0; i--) {
    const l = lines[i];
    if (l !== undefined && l.startsWith("*")) return l.slice(1).trim();
  }
  return undefined;
}

function chainOfLine(text: string): string | undefined {
  const m = /^(?:-[AIDRFXNZ]|--(?:append|insert|delete|replace|flush|delete-chain|new-chain))\s+(\S+)/.exec(text) ?? /^:(\S+)/.exec(text);
  return m?.[1];
}

/** Lock contention: wait and try again rather than fail. */
export function isLockContention(err: unknown): err is XtablesLockError {
  return err instanceof XtablesLockError;
}
