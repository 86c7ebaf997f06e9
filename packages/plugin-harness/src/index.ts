/**
 * @chainwarden/plugin-harness: runs a plugin's handlers through the real agent machinery on the
 * honest fake host or in throwaway network namespaces (`PluginHarness`), for plugin authors' tests.
 *
 * @packageDocumentation
 */
export { PluginHarness, type HarnessApply, type HarnessPlugin, type PluginHarnessOptions } from "./plugin-harness.js";
