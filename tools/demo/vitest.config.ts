import { defineConfig } from "vitest/config";

export default defineConfig({
  oxc: { decorator: { legacy: true, emitDecoratorMetadata: true } },
  test: { environment: "node", setupFiles: ["reflect-metadata"], include: ["src/**/*.test.ts"], testTimeout: 60_000, hookTimeout: 60_000 },
});
