import type { Problem } from "./agent-errors.js";
import type { ResourceHandler, StateDocument, StateUpdateOptions } from "./extension-points.js";
import { errorMessage } from "./error-fields.js";
import { jsonEqual } from "./json-equal.js";
import { didYouMean } from "./near-miss.js";

/** A network namespace; undefined is the host's own. */
export type NsKey = string | undefined;
/** kind → id → resource. Never mutated once built (runs keep references to them). */
export type ByKind = Map<string, ReadonlyMap<string, unknown>>;

/** How a resource with a problem is treated. */
export type KeptAs = "last-good" | "stand-in";

/** A problem of the desired state, with the kind it belongs to (none: the document's). */
export interface StateProblem {
  kind: string | undefined;
  problem: Problem;
  /** What stays in force for the resource it names. */
  keptAs: KeptAs | undefined;
}

export interface DesiredUpdate {
  /** Namespaces whose desired resources (or held ones) changed. */
  affected: Set<NsKey>;
  /** Problems not reported by the previous update (to log and count once). */
  fresh: StateProblem[];
}

interface KindState {
  readonly resources: ReadonlyMap<string, unknown>;
  readonly namespaces: ReadonlyMap<string, NsKey>;
  /** Ids whose value is the handler's stand-in for invalid input. */
  readonly held: ReadonlySet<string>;
  /** False: a problem named no resource; what the kernel holds is kept, not removed. */
  readonly complete: boolean;
}

const EMPTY_KIND: KindState = { resources: new Map(), namespaces: new Map(), held: new Set(), complete: false };

/**
 * The desired state as the reconcile loop sees it: each handler's resources from the last document,
 * with what bad input gets (DESIGN §5a) worked in.
 *
 * - A resource with a problem keeps its last good version while this process has one; otherwise
 *   the handler's stand-in (`ParsedResources.held`) takes its place, and its id is *held*: the
 *   handler keeps what the kernel has for it (or fails closed). A resource leaves the desired state
 *   only when a document that parsed without a problem for it no longer has it.
 * - A kind is *complete* once a document was read whose problems of that kind all name a resource.
 *   A problem naming none (a broken section, `parse` threw), an unknown top-level key, or no
 *   document at all leave it incomplete: every resource of the kind that was desired stays, and
 *   handlers remove nothing they cannot tie to a resource a complete state dropped.
 * - Unknown top-level keys (no handler lists them in `documentKeys`) are problems with a spelling
 *   suggestion, so a typo such as `router:` never reads as "no routers".
 * - Resources equal to their previous version (`handler.equals`, default deep JSON equality) keep
 *   the previous object, so runs see "unchanged" by identity.
 */
export class DesiredState {
  private kinds = new Map<string, KindState>();
  private byNs = new Map<NsKey, ByKind>();
  private reported = new Set<string>();
  private current: StateProblem[] = [];
  private documentRead = false;

  constructor(
    private readonly handlers: readonly ResourceHandler[],
    private readonly defaultNamespace: string | undefined,
  ) {}

  /** True once a state source delivered a document. */
  get read(): boolean {
    return this.documentRead;
  }

  /** The problems of the current document (each invalid resource, unknown keys, broken sections). */
  get problems(): readonly StateProblem[] {
    return this.current;
  }

  update(document: StateDocument, origin: string, options: StateUpdateOptions = {}): DesiredUpdate {
    const notDelivered = new Set(options.notDelivered ?? []);
    this.documentRead = true;
    const affected = new Set<NsKey>();
    const problems: StateProblem[] = this.unknownKeys(document, origin).map((problem) => ({ kind: undefined, problem, keptAs: undefined }));
    const documentIncomplete = problems.length > 0;
    const kinds = new Map<string, KindState>();

    for (const handler of this.handlers) {
      const kind = handler.kind;
      const prev = this.kinds.get(kind) ?? EMPTY_KIND;
      let parsed: { resources: ReadonlyMap<string, unknown>; problems: Problem[]; held: ReadonlyMap<string, unknown> };
      try {
        const p = handler.parse(document, origin);
        parsed = { resources: p.resources, problems: [...p.problems], held: p.held ?? new Map() };
      } catch (err) {
        parsed = {
          resources: new Map(),
          held: new Map(),
          problems: [{ source: origin, path: "", message: `the ${kind} handler could not parse the document: ${errorMessage(err)}` }],
        };
      }
      const resources = new Map<string, unknown>();
      const namespaces = new Map<string, NsKey>();
      const held = new Set<string>();
      const keptAs = new Map<string, KeptAs>();
      const place = (id: string, value: unknown, prevValue: unknown, isHeld: boolean, problems: Problem[]): boolean => {
        let ns: NsKey;
        try {
          ns = handler.namespaceOf(value) ?? this.defaultNamespace;
        } catch (err) {
          problems.push({ source: origin, path: "", resource: id, message: `cannot tell the namespace: ${errorMessage(err)}` });
          return false;
        }
        // Keep the previous object when equal: runs then see "unchanged" by identity.
        resources.set(id, prevValue !== undefined && prev.held.has(id) === isHeld && same(handler, prevValue, value) ? prevValue : value);
        namespaces.set(id, ns);
        if (isHeld) held.add(id);
        return true;
      };
      for (const [id, r] of parsed.resources) place(id, r, prev.resources.get(id), false, parsed.problems);

      const keepPrevious = (id: string): boolean => {
        if (resources.has(id) || !prev.resources.has(id)) return false;
        resources.set(id, prev.resources.get(id));
        namespaces.set(id, prev.namespaces.get(id));
        if (prev.held.has(id)) held.add(id);
        keptAs.set(id, prev.held.has(id) ? "stand-in" : "last-good");
        return true;
      };
      // A stand-in only where this process has no valid version: the last good one stays in force.
      for (const [id, standIn] of parsed.held) {
        if (resources.has(id)) continue;
        if (prev.resources.has(id) && !prev.held.has(id)) keepPrevious(id);
        else if (place(id, standIn, prev.resources.get(id), true, parsed.problems)) keptAs.set(id, "stand-in");
      }
      for (const p of parsed.problems) if (p.resource !== undefined) keepPrevious(p.resource);
      const undelivered = handler.documentKeys.some((key) => notDelivered.has(key));
      const complete = !documentIncomplete && !undelivered && parsed.problems.every((p) => p.resource !== undefined);
      if (!complete) for (const id of prev.resources.keys()) keepPrevious(id);

      for (const [id, r] of resources) {
        const p = prev.resources.get(id);
        if (p === r && prev.held.has(id) === held.has(id)) continue;
        affected.add(namespaces.get(id));
        if (p !== undefined) affected.add(prev.namespaces.get(id));
      }
      for (const id of prev.resources.keys()) if (!resources.has(id)) affected.add(prev.namespaces.get(id));
      // A kind that turns complete may now remove what it kept.
      if (complete !== prev.complete) for (const ns of namespaces.values()) affected.add(ns);

      kinds.set(kind, { resources, namespaces, held, complete });
      for (const problem of parsed.problems) problems.push({ kind, problem, keptAs: problem.resource !== undefined ? keptAs.get(problem.resource) : undefined });
    }

    this.kinds = kinds;
    this.byNs = groupByNamespace(kinds);
    const keys = new Set<string>();
    const fresh: StateProblem[] = [];
    for (const p of problems) {
      const key = JSON.stringify([p.kind, p.problem.source, p.problem.path, p.problem.resource, p.problem.message]);
      keys.add(key);
      if (!this.reported.has(key)) fresh.push(p);
    }
    this.reported = keys;
    this.current = problems;
    return { affected, fresh };
  }

  /** Whether the kind's input is complete (see the class comment). */
  complete(kind: string): boolean {
    return this.documentRead && (this.kinds.get(kind)?.complete ?? false);
  }

  /** Every desired resource of a kind (stand-ins included). */
  ofKind(kind: string): ReadonlyMap<string, unknown> {
    return this.kinds.get(kind)?.resources ?? EMPTY_KIND.resources;
  }

  /** The desired resources of a namespace, by kind (stand-ins included). */
  in(ns: NsKey): ByKind {
    return this.byNs.get(ns) ?? new Map();
  }

  has(ns: NsKey): boolean {
    return this.byNs.has(ns);
  }

  namespaces(): IterableIterator<NsKey> {
    return this.byNs.keys();
  }

  /** Whether the id's value is its handler's stand-in. */
  isHeld(kind: string, id: string): boolean {
    return this.kinds.get(kind)?.held.has(id) ?? false;
  }

  private unknownKeys(document: StateDocument, origin: string): Problem[] {
    const known = new Set(this.handlers.flatMap((h) => h.documentKeys));
    const problems: Problem[] = [];
    for (const key of Object.keys(document)) {
      if (known.has(key)) continue;
      problems.push({
        source: origin,
        path: key,
        message: `unknown key ${JSON.stringify(key)}${didYouMean(key, known)} (this agent reads ${[...known].sort().join(", ") || "no keys"}); nothing is removed until it is fixed`,
      });
    }
    return problems;
  }
}

function groupByNamespace(kinds: ReadonlyMap<string, KindState>): Map<NsKey, ByKind> {
  const byNs = new Map<NsKey, Map<string, Map<string, unknown>>>();
  for (const [kind, state] of kinds) {
    for (const [id, ns] of state.namespaces) {
      let perKind = byNs.get(ns);
      if (!perKind) byNs.set(ns, (perKind = new Map()));
      let m = perKind.get(kind);
      if (!m) perKind.set(kind, (m = new Map()));
      m.set(id, state.resources.get(id));
    }
  }
  return byNs;
}

/** Handler equality (default deep JSON equality); a throwing `equals` means "changed". */
export function same(handler: ResourceHandler, a: unknown, b: unknown): boolean {
  if (a === b) return true;
  try {
    return handler.equals ? handler.equals(a, b) : jsonEqual(a, b);
  } catch {
    return false;
  }
}
