/**
 * The fake was asked for something it cannot model honestly (a command, an option, a form of
 * restore input). It fails loudly instead of guessing, so a test never passes against behaviour
 * the real tools do not have.
 */
export class NotModelledError extends Error {
  /** `fake`: the fake that refused, by class name. */
  constructor(what: string, fake = "FakeIptablesRunner") {
    super(`${what} is not modelled by ${fake}`);
    this.name = "NotModelledError";
  }
}
