/**
 * Which IptablesManager each wrap name of a namespace gets, decided before anything runs.
 *
 * Handlers of one namespace share one manager per (cut) wrap name (`ReconcileContext.manager`), and a
 * manager's flavour is fixed when it is made: `stateless` (Neutron's `state_less`: filter and raw
 * only), `nat`, `useIpv6`. Were it made as the first caller asks, the flavour would depend on which
 * handler happens to run first in a namespace, and a clash would surface at apply time in whichever
 * handler came second (issue 19). So the flavour of a wrap name comes, option by option, from
 * 1. what the handlers declare they need (`ResourceHandler.managers`): two declarations of one wrap
 *    name that disagree are refused at load, naming both plugins;
 * 2. else the app's defaults (`AgentOptions.managerDefaults`: the l2 agent's managers are stateless,
 *    as Neutron's l2 `IptablesFirewallDriver` makes them);
 * 3. else the framework's: stateful, nat, the agent's `use_ipv6`.
 * A handler that declares nothing and calls `manager()` without options gets that flavour whatever the
 * order; one that asks for options the flavour does not have gets `MANAGER_CONFLICT` (see
 * `LoopContext`), a failure of its own (see `failureScope`).
 *
 * A stateless manager has neither nat nor mangle: `nat` is normalised to false with it, and a need
 * for nat without a word on `stateless` makes the wrap name stateful.
 */
import { wrapNameFor } from "@chainwarden/core";
import { PluginError } from "./agent-errors.js";

/**
 * A manager a resource handler uses (`ResourceHandler.managers`), as it would ask
 * `context.manager(...)` for it. An option left out means "whatever the agent's flavour is".
 */
export interface ManagerNeeds {
  /** The wrap name (default: the agent's `wrap_name`); compared as `wrapNameFor` cuts it. */
  readonly wrapName?: string;
  /** Filter and raw tables only (Neutron's `state_less`, the l2 firewall's managers). */
  readonly stateless?: boolean;
  /** The IPv4 nat table (and IPv6 nat PREROUTING); true needs a stateful manager. */
  readonly nat?: boolean;
  /** The IPv6 tables too (default: the agent's `use_ipv6`). */
  readonly useIpv6?: boolean;
}

/**
 * An app's flavour for managers no handler declares otherwise: what `context.manager()` without
 * options gives (`AgentApp.managerDefaults`, `AgentOptions.managerDefaults`). Unset: stateful, with nat.
 */
export interface ManagerDefaults {
  readonly stateless?: boolean;
  readonly nat?: boolean;
}

/** The options a manager is made with. */
export interface ManagerFlavour {
  /** Filter and raw tables only. */
  readonly stateless: boolean;
  /** The nat tables (always false for a stateless manager). */
  readonly nat: boolean;
  /** The IPv6 tables too. */
  readonly useIpv6: boolean;
}

type Option = keyof ManagerFlavour;
const OPTIONS: readonly Option[] = ["stateless", "nat", "useIpv6"];

/** A resource handler with the plugin that registered it (unknown for loops built without an agent). */
export interface HandlerOwner {
  readonly handler: { readonly kind: string; readonly managers?: readonly ManagerNeeds[] | undefined };
  readonly plugin?: string | undefined;
}

/** One declared option: its value and who declared it. */
interface Declared {
  readonly value: boolean;
  readonly kind: string;
  readonly plugin: string | undefined;
}

export interface ManagerFlavoursOptions {
  /** The agent's `wrap_name`: the wrap name of needs and calls that name none. */
  readonly wrapName: string;
  /** The agent's `use_ipv6`. */
  readonly useIpv6: boolean;
  readonly defaults?: ManagerDefaults | undefined;
}

/** Each wrap name's manager flavour, from the handlers' declared needs over the app's defaults (see the file's comment). */
export class ManagerFlavours {
  /** The agent's cut wrap name. */
  readonly defaultWrapName: string;
  private readonly declared = new Map<string, Partial<Record<Option, Declared>>>();
  private readonly wrapsByKind = new Map<string, Set<string>>();
  private readonly plugins = new Map<string, string>();

  private constructor(private readonly options: ManagerFlavoursOptions) {
    this.defaultWrapName = wrapNameFor(options.wrapName);
  }

  /**
   * The flavours the handlers' declared needs give, over the app's defaults.
   * @throws PluginError (`PLUGIN_INVALID`) when two handlers need one wrap name with different
   *   options, naming both plugins, the wrap name and the options; or when a need is malformed.
   */
  static resolve(owners: readonly HandlerOwner[], options: ManagerFlavoursOptions): ManagerFlavours {
    const flavours = new ManagerFlavours(options);
    for (const { handler, plugin } of owners) {
      if (plugin !== undefined) flavours.plugins.set(handler.kind, plugin);
      const problems = managerNeedsProblems(handler.managers);
      if (problems.length > 0) {
        throw new PluginError("PLUGIN_INVALID", `${describeHandler(handler.kind, plugin)} declares managers it cannot have: ${problems.join("; ")}`, plugin);
      }
      for (const need of handler.managers ?? []) flavours.declare(need, handler.kind, plugin);
    }
    return flavours;
  }

  /** What `manager()` without options makes for a wrap name (cut), and what a caller's options are checked against. */
  flavour(wrap: string): ManagerFlavour {
    return this.make(wrap, {});
  }

  /**
   * The flavour a manager for `wrap` is made with when a handler asks for `asked` first: its
   * options over the declared ones over the defaults. `conflict` names an option it asks for that a
   * declaration (or the table it needs) rules out; the manager must then not be made.
   */
  forFirstCaller(wrap: string, asked: Partial<ManagerFlavour>): { flavour: ManagerFlavour; conflict?: string } {
    const flavour = this.make(wrap, asked);
    const declared = this.declared.get(wrap) ?? {};
    for (const o of OPTIONS) {
      const d = declared[o];
      if (asked[o] !== undefined && d !== undefined && d.value !== asked[o]) return { flavour, conflict: `${describeHandler(d.kind, d.plugin)} declares ${o}: ${d.value} for it` };
    }
    if (asked.nat === true && flavour.stateless) return { flavour, conflict: "a stateless manager has no nat table" };
    return { flavour };
  }

  /** The cut wrap names a handler declares. */
  wrapNamesOf(kind: string): ReadonlySet<string> {
    return this.wrapsByKind.get(kind) ?? new Set();
  }

  /** The plugin that registered a kind's handler, when known. */
  pluginOf(kind: string): string | undefined {
    return this.plugins.get(kind);
  }

  /** `handler port (plugin l2-secgroup)`, for messages. */
  describe(kind: string): string {
    return describeHandler(kind, this.plugins.get(kind));
  }

  /** How `flavour` explains a wrap name's options: who declared which, and what is the app's or the framework's default. */
  origin(wrap: string): string {
    const declared = this.declared.get(wrap) ?? {};
    const by = OPTIONS.flatMap((o) => (declared[o] ? [`${o} declared by ${describeHandler(declared[o].kind, declared[o].plugin)}`] : []));
    return by.length > 0 ? by.join(", ") : "the agent's defaults";
  }

  private make(wrap: string, asked: Partial<ManagerFlavour>): ManagerFlavour {
    const declared = this.declared.get(wrap) ?? {};
    const defaults = this.options.defaults ?? {};
    const nat = asked.nat ?? declared.nat?.value;
    // A need for nat makes the manager stateful unless someone says otherwise (and is refused for it).
    const stateless = asked.stateless ?? declared.stateless?.value ?? (nat === true ? false : (defaults.stateless ?? false));
    return {
      stateless,
      nat: !stateless && (nat ?? defaults.nat ?? true),
      useIpv6: asked.useIpv6 ?? declared.useIpv6?.value ?? this.options.useIpv6,
    };
  }

  private declare(need: ManagerNeeds, kind: string, plugin: string | undefined): void {
    const wrap = wrapNameFor(need.wrapName ?? this.options.wrapName);
    const kinds = this.wrapsByKind.get(kind) ?? new Set<string>();
    kinds.add(wrap);
    this.wrapsByKind.set(kind, kinds);
    const declared = this.declared.get(wrap) ?? {};
    this.declared.set(wrap, declared);
    const mine = describeHandler(kind, plugin);
    for (const o of OPTIONS) {
      const value = need[o];
      if (value === undefined) continue;
      const earlier = declared[o];
      if (earlier === undefined) {
        declared[o] = { value, kind, plugin };
        continue;
      }
      if (earlier.value !== value) {
        throw new PluginError(
          "PLUGIN_INVALID",
          `${describeHandler(earlier.kind, earlier.plugin)} and ${mine} share the ${wrap} manager of a namespace but need it with ${o}: ${earlier.value} and ${o}: ${value}; give one of them a wrap name of its own`,
          plugin,
        );
      }
    }
    const stateless = declared.stateless;
    const nat = declared.nat;
    if (stateless?.value === true && nat?.value === true) {
      throw new PluginError(
        "PLUGIN_INVALID",
        `${describeHandler(nat.kind, nat.plugin)} needs the nat table of the ${wrap} manager, which ${describeHandler(stateless.kind, stateless.plugin)} needs stateless (no nat table); give one of them a wrap name of its own`,
        plugin,
      );
    }
  }
}

/** What is wrong with a handler's `managers` field (empty when it is fine or absent). */
export function managerNeedsProblems(value: unknown): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) return ["managers must be a list of { wrapName?, stateless?, nat?, useIpv6? }"];
  const problems: string[] = [];
  value.forEach((need: unknown, i) => {
    if (typeof need !== "object" || need === null || Array.isArray(need)) {
      problems.push(`managers[${i}] must be an object`);
      return;
    }
    const n = need as Record<string, unknown>;
    for (const key of Object.keys(n)) {
      if (key === "wrapName") continue;
      if (!(OPTIONS as readonly string[]).includes(key)) problems.push(`managers[${i}].${key} is not a manager option (wrapName, stateless, nat, useIpv6)`);
      else if (n[key] !== undefined && typeof n[key] !== "boolean") problems.push(`managers[${i}].${key} must be true or false`);
    }
    if (n.wrapName !== undefined) {
      if (typeof n.wrapName !== "string") problems.push(`managers[${i}].wrapName must be a string`);
      else {
        try {
          wrapNameFor(n.wrapName);
        } catch (err) {
          problems.push(`managers[${i}].wrapName: ${(err as Error).message}`);
        }
      }
    }
    if (n.stateless === true && n.nat === true) problems.push(`managers[${i}] is stateless and needs nat: a stateless manager has no nat table`);
  });
  return problems;
}

function describeHandler(kind: string, plugin: string | undefined): string {
  return `the ${kind} handler${plugin !== undefined ? ` of plugin ${plugin}` : ""}`;
}
