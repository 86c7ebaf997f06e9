import { packageTestConfig } from "@chainwarden/testing/vitest-config";

export default packageTestConfig({ globalSetup: ["src/test-support/global-setup.ts"], timeoutMs: 30_000 });
