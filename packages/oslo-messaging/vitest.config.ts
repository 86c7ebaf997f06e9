import { defineConfig } from "vitest/config";

export default defineConfig({
  // One file at a time: the broker tests each start a RabbitMQ and Python peers on shared, small machines.
  test: { environment: "node", include: ["src/**/*.test.ts"], testTimeout: 120_000, hookTimeout: 120_000, fileParallelism: false },
});
