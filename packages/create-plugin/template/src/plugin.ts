import { createPlugin, resourceHandlerExtensionPoint } from "@chainwarden/agent";
import { z } from "zod";
import { {{HANDLER_CLASS}} } from "./handler.js";

/**
 * The plugin value. `framework` is the range of @chainwarden/agent it is written for (the agent
 * refuses to load it outside that range, naming both versions). It takes no options: a strict
 * empty schema makes any option in a config an error that names the plugin.
 */
export const {{PLUGIN_VAR}} = createPlugin({
  name: "{{PLUGIN_NAME}}",
  version: "0.1.0",
  framework: "{{CW_VERSION}}",
  options: z.strictObject({}),
  register(env) {
    env.addExtension(resourceHandlerExtensionPoint, new {{HANDLER_CLASS}}());
  },
});
