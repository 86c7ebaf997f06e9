/**
 * The network namespaces of a fake host, shared by the fakes of each tool (`FakeIptablesRunner`,
 * `FakeIp`, `FakeIpset`, `FakeConntrack`), so that a namespace one of them deletes is gone for all:
 * each keeps its own state per namespace (`state`), dropped when the namespace goes, and answers
 * for a missing one as its real tool does (exit 255, `Cannot open network namespace "NS"`).
 * The host's own namespace (undefined) always exists.
 */
export class FakeNetns {
  private readonly names = new Set<string>();
  private readonly states = new Map<object, Map<string | undefined, unknown>>();

  constructor(names: readonly string[] = []) {
    for (const n of names) this.add(n);
  }

  /** Whether the namespace exists (the host's, `undefined`, always does). */
  has(name: string | undefined): boolean {
    return name === undefined || this.names.has(name);
  }

  /** Like `ip netns add NAME`; throws with the tool's words when it exists. */
  add(name: string): void {
    if (this.names.has(name)) throw new Error(`Cannot create namespace file "/run/netns/${name}": File exists`);
    this.names.add(name);
  }

  /** Like `ip netns delete NAME`: every tool's state there is gone. */
  delete(name: string): void {
    if (!this.names.delete(name)) throw new Error(`Cannot remove namespace file "/run/netns/${name}": No such file or directory`);
    for (const perOwner of this.states.values()) perOwner.delete(name);
  }

  /** The named namespaces, in creation order (the host's is not listed). */
  list(): string[] {
    return [...this.names];
  }

  /**
   * One fake's state in a namespace (`owner` is the fake), made by `create` on first use;
   * undefined when the namespace does not exist.
   */
  state<T>(owner: object, name: string | undefined, create: () => T): T | undefined {
    if (!this.has(name)) return undefined;
    let perOwner = this.states.get(owner);
    if (!perOwner) this.states.set(owner, (perOwner = new Map()));
    if (!perOwner.has(name)) perOwner.set(name, create());
    return perOwner.get(name) as T;
  }

  /** The namespaces where a fake has state (for its assertions). */
  statesOf<T>(owner: object): Map<string | undefined, T> {
    return (this.states.get(owner) ?? new Map()) as Map<string | undefined, T>;
  }
}
