import { packageTestConfig } from "@chainwarden/testing/vitest-config";

export default packageTestConfig();
