import { defineConfig } from "vitest/config";

export default defineConfig({
  oxc: { decorator: { legacy: true, emitDecoratorMetadata: true } },
  test: {
    environment: "node",
    include: ["src/**/*.test.ts"],
    setupFiles: ["reflect-metadata"],
    globalSetup: ["src/test-support/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
