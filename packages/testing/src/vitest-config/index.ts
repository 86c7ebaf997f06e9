/** `@chainwarden/testing/vitest-config`: the shared vitest config of Chainwarden packages and plugins. Imports vitest. */
export { packageTestConfig, type PackageTestConfigOptions } from "./package-test-config.js";
