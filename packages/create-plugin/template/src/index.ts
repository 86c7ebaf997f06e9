/**
 * {{PACKAGE_NAME}}: the Chainwarden plugin "{{PLUGIN_NAME}}". The default export is what an agent
 * loads when a config names this package (`plugins: [{ package: "{{PACKAGE_NAME}}" }]`).
 */
import { {{PLUGIN_VAR}} } from "./plugin.js";

export { {{PLUGIN_VAR}} };
export { {{HANDLER_CLASS}} } from "./handler.js";
export { parse{{RESOURCE_TYPE}}Input, type {{RESOURCE_TYPE}}Resource } from "./resource.js";
export default {{PLUGIN_VAR}};
