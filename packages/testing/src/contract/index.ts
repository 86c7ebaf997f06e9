/** `@chainwarden/testing/contract`: suites that every implementation of a core interface must pass. Imports vitest. */
export {
  describeIptablesRunnerContract,
  type IptablesRunnerContractSubject,
  type TrafficHit,
} from "./iptables-runner-contract.js";
export { describeIpsetRunnerContract, type IpsetRunnerContractSubject } from "./ipset-runner-contract.js";
export { describeConntrackRunnerContract, type ConntrackRunnerContractSubject } from "./conntrack-runner-contract.js";
export { describeIpRunnerContract, type IpRunnerContractSubject } from "./ip-runner-contract.js";
