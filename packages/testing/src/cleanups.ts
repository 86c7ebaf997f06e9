/**
 * What a test made, undone after it: `defer` each thing as it is made (a namespace, a directory, a
 * process); `run` (from the test file's `afterEach`) undoes them last in, first out, so agents go
 * before their namespaces and files. Every cleanup runs even when an earlier one throws, so one
 * failure does not leave the rest on the host; the failures are then thrown together, so a broken
 * teardown fails the test instead of passing unseen.
 *
 * ```ts
 * const cleanups = new Cleanups();
 * afterEach(() => cleanups.run());
 * const ns = await createNetns("cw-x");
 * cleanups.defer(() => ns.delete());
 * ```
 */
export class Cleanups {
  private readonly pending: (() => unknown)[] = [];

  /** Registers a cleanup for the end of the current test. */
  defer(cleanup: () => unknown): void {
    this.pending.push(cleanup);
  }

  /** Runs and forgets every registered cleanup, last first; throws the failures (one, or an AggregateError) after all ran. */
  async run(): Promise<void> {
    const errors: unknown[] = [];
    for (const cleanup of this.pending.splice(0).reverse()) {
      try {
        await cleanup();
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, `${errors.length} cleanups failed`);
  }
}
