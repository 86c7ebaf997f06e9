/**
 * @chainwarden/testing: the test kit for Chainwarden and for third-party driver authors.
 * - An honest fake of each tool, on one `FakeNetns`, each checked against the real tool by its
 *   contract suite: `FakeIptablesRunner` (iptables-save/restore, nft or legacy flavour),
 *   `FakeIp`, `FakeIpset`, `FakeConntrack`; `FakeHost` composes them into a `HostRunner`, tied as
 *   the kernel ties them (an iptables rule naming a missing ipset is refused, and so on).
 * - `createNetns` / `withNetns` / `isRoot`, `holdXtablesLock`: helpers for tests on a real kernel;
 *   `Cleanups`: what a test made, undone after it (last first, all of it even when one fails).
 * - `runCli` / `AgentProcess`: run a built agent binary as an operator would (argument arrays, no shell).
 * - `referenceDir`, `loadReferenceScenario(s)`, `readReferenceExpected`, `parseRouterStep`: the
 *   reader for the reference outputs of real Neutron (the repository's copy in
 *   `test-fixtures/reference`) and fixtures in their format.
 * - `createRouterLab` / `netToolPath`: a router lab on the real kernel (fabric with bridges, host
 *   namespaces, veths) and the traffic helper its hosts run.
 * - `@chainwarden/testing/contract`: `describeIptablesRunnerContract`, the vitest suite every runner
 *   must pass (a subpath of its own because it imports vitest).
 * - `@chainwarden/testing/vitest-config`: `packageTestConfig`, the shared vitest config (imports vitest).
 *
 * @packageDocumentation
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
export { FakeNetns } from "./fake-netns.js";
export { FakeIpset, type FakeIpsetOptions, type IpsetCall, type IpsetFamily } from "./fake-ipset.js";
export { FakeConntrack, type FakeConnection, type FakeConntrackOptions, type ConntrackCall } from "./fake-conntrack.js";
export { FakeIp, type FakeIpCommand, type FakeIpDevice, type FakeIpOptions, type LinkKind } from "./fake-ip.js";
export { FakeHost, type FakeHostEvent, type FakeHostOptions } from "./fake-host.js";
export { NotModelledError } from "./not-modelled-error.js";
export { createNetns, deleteNetns, isRoot, listNetns, withNetns, type NetnsExecOptions, type TestNetns } from "./netns.js";
export { Cleanups } from "./cleanups.js";
export { runCommand, type RunResult } from "./run-command.js";
export { filesUnder, pidsMentioning } from "./host-inspect.js";
export { holdXtablesLock, type HeldXtablesLock } from "./xtables-lock.js";
export { AgentProcess, freePort, runCli, waitFor, type AgentProcessOptions, type CliResult, type LogLine } from "./agent-process.js";
export { duplicateLogKeys } from "./log-keys.js";
export {
  parseReferenceExpected,
  readReferenceExpected,
  type ReferenceStep,
  type RouterSaves,
} from "./reference-expected.js";
export {
  listReferenceScenarios,
  loadReferenceScenario,
  loadReferenceScenarios,
  referenceDir,
  type LoadReferenceScenarioOptions,
  type ReferenceScenario,
} from "./reference-scenario.js";
export { parseRouterStep, type RouterStep } from "./reference-router-step.js";
export { netToolPath } from "./net-tool.js";
export { createRouterLab, type RouterLab, type RouterLabOptions } from "./router-lab.js";
