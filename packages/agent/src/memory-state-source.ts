import type { StateDocument, StateSink, StateSource } from "./extension-points.js";

/**
 * Desired state handed over in code rather than read from files: an embedding program (an RPC
 * listener, a controller) or a test calls `push` with each new document. Register it with
 * `env.addExtension(stateSourceExtensionPoint, source)`.
 */
export class MemoryStateSource implements StateSource {
  readonly name: string;  private sink: StateSink | undefined;
  private document: StateDocument;

  constructor(initial: StateDocument = {}, options: { name?: string; origin?: string } = {}) {
    this.document = initial;
    this.name = options.name ?? "memory";
    this.origin = options.origin ?? this.name;
  }

  private readonly origin: string;

  async start(sink: StateSink): Promise<void> {
    this.sink = sink;
    sink.update(this.document, this.origin);
  }

  /** Stops delivering; later `push`es are kept for the next `start`. */
  async stop(): Promise<void> {
    this.sink = undefined;
  }

  /** The new desired state; delivered at once when the agent runs, on start otherwise. */
  push(document: StateDocument): void {
    this.document = document;
    this.sink?.update(document, this.origin);
  }
}
