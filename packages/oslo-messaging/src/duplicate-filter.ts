/**
 * oslo's `_MsgIdCache`: the last 16 `_unique_id`s a consumer accepted. A message published again
 * after a lost connection (at least once) or redelivered after a lost ack carries the same
 * `_unique_id`, and is dropped once.
 */
export class DuplicateFilter {
  private readonly seen: string[] = [];

  constructor(private readonly size = 16) {}

  /** Takes `_unique_id` out of the message; true when it was seen already. */
  isDuplicate(message: Record<string, unknown>): boolean {
    const id = message._unique_id;
    delete message._unique_id;
    if (typeof id !== "string" || !id) return false;
    if (this.seen.includes(id)) return true;
    this.seen.push(id);
    if (this.seen.length > this.size) this.seen.shift();
    return false;
  }
}
