/**
 * @chainwarden/testing: the test kit for Chainwarden and for third-party driver authors.
 * - `FakeIptablesRunner`: an honest in-memory iptables (nft or legacy flavour) behind core's
 *   `IptablesRunner` interface.
 * - `createNetns` / `withNetns` / `isRoot`, `holdXtablesLock`: helpers for tests on a real kernel.
 * - `runCli` / `AgentProcess`: run a built agent binary as an operator would (argument arrays, no shell).
 * - `@chainwarden/testing/contract`: `describeIptablesRunnerContract`, the vitest suite every runner
 *   must pass (a subpath of its own because it imports vitest).
 */
export {
  FakeIptablesRunner,
  type BeforeRestoreHook,
  type DumpOptions,
  type ExecCall,
  type FakeIptablesRunnerOptions,
  type InjectedRestoreFailure,
  type RestoreCall,
  type SaveCall,
} from "./fake-iptables-runner.js";
export { NotModelledError } from "./not-modelled-error.js";
export { createNetns, isRoot, withNetns, type NetnsExecOptions, type TestNetns } from "./netns.js";
export type { RunResult } from "./run-command.js";
export { holdXtablesLock, type HeldXtablesLock } from "./xtables-lock.js";
export { AgentProcess, freePort, runCli, waitFor, type CliResult, type LogLine } from "./agent-process.js";
