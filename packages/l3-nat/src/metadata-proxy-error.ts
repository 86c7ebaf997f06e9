/**
 * A router's metadata proxy could not be started (or was asked to start after it was stopped).
 * The router's rules and devices are not held back for it (Neutron does not either): the handler
 * logs this, and the monitor and the next reconcile try again.
 */
export class MetadataProxyError extends Error {
  readonly code = "METADATA_PROXY_FAILED";
  readonly resource: string;

  constructor(
    readonly routerId: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`metadata proxy of router ${routerId}: ${reason}`, options);
    this.name = new.target.name;
    this.resource = `router/${routerId}`;
  }
}
