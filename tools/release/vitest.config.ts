import { packageTestConfig } from "@chainwarden/testing/vitest-config";

// Building the release (npm pack of every package, an npm install per agent) takes a minute or two on 2 cores.
export default packageTestConfig({ timeoutMs: 600_000 });
