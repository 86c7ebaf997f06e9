import { defineConfig, type ViteUserConfig } from "vitest/config";

export interface PackageTestConfigOptions {
  /** Loaded before every test file (default: `reflect-metadata`, which the agent's container needs). */
  setupFiles?: string[];
  /** Run once before the suite (paths relative to the package). */
  globalSetup?: string[];
  /** Test and hook timeout in ms (default 60 000: kernel tests program iptables in namespaces). */
  timeoutMs?: number;
}

/**
 * The vitest config of a Chainwarden package or plugin: Node environment, `src/**\/*.test.ts`,
 * legacy decorators with metadata (tsyringe), `reflect-metadata` loaded first. A package's
 * `vitest.config.ts` is `export default packageTestConfig()`.
 */
export function packageTestConfig(options: PackageTestConfigOptions = {}): ViteUserConfig {
  const timeout = options.timeoutMs ?? 60_000;
  return defineConfig({
    oxc: { decorator: { legacy: true, emitDecoratorMetadata: true } },
    test: {
      environment: "node",
      include: ["src/**/*.test.ts"],
      setupFiles: options.setupFiles ?? ["reflect-metadata"],
      ...(options.globalSetup ? { globalSetup: options.globalSetup } : {}),
      testTimeout: timeout,
      hookTimeout: timeout,
    },
  });
}
