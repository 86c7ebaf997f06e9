import type { Logger } from "pino";
import type { NeutronRpcSettings } from "./neutron-rpc-settings.js";
import type { RpcTransport } from "./rpc-transport.js";

/** Makes the connection to the broker (tests pass their own; the default is `@chainwarden/oslo-messaging`'s). */
export type ConnectRpc = (settings: NeutronRpcSettings & { transport_url: string }, logger: Logger) => RpcTransport;

/** How long a source's `start` waits for the server's first answer before the agent runs without state (it goes on trying). */
export const FIRST_SYNC_WAIT_MS = 120_000;
