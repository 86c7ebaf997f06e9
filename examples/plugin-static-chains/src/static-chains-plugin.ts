import { createPlugin, resourceHandlerExtensionPoint } from "@chainwarden/agent";
import { z } from "zod";
import { ChainSetHandler } from "./chain-set-handler.js";

/**
 * The plugin value the agent loads (by package name from a config file, or from an app's default
 * list). It has no options; `z.strictObject({})` makes any option an error that names the plugin.
 */
export const staticChainsPlugin = createPlugin({
  name: "static-chains",
  version: "0.1.0",
  framework: "^0.1.0",
  options: z.strictObject({}),
  register(env) {
    env.addExtension(resourceHandlerExtensionPoint, new ChainSetHandler());
    env.logger.debug({}, "chain_set handler registered");
  },
});
