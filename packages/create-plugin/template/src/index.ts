/**
 * {{PACKAGE_NAME}}: the Chainwarden plugin "{{PLUGIN_NAME}}". The default export is what an agent
 * loads when a config names this package (`plugins: [{ package: "{{PACKAGE_NAME}}" }]`).
 */
import { {{PLUGIN_VAR}} } from "./plugin.js";

export { {{PLUGIN_VAR}} };
export { {{HANDLER_CLASS}} } from "./handler.js";
export { parse{{HANDLER_CLASS}}Input, type {{HANDLER_CLASS}}Resource } from "./resource.js";
export default {{PLUGIN_VAR}};
