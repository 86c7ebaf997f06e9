/**
 * @chainwarden/example-plugin-static-chains: a third-party-style plugin handling `chain_set`
 * resources (one wrapped filter chain per set). The default export is what the agent's plugin
 * loader takes when the package is named in a config file.
 */
import { staticChainsPlugin } from "./static-chains-plugin.js";

export { staticChainsPlugin };
export { ChainSetHandler } from "./chain-set-handler.js";
export { parseChainSets, chainName, resourceName, CHAIN_SET_ID, ALLOWED_TARGETS, type ChainSet } from "./chain-set.js";
export default staticChainsPlugin;
