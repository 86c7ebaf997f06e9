import { ipFamily, type IpFamily, type IptablesManager, type TableName } from "@chainwarden/core";
import { AddressScopeMarks } from "./address-scope-marks.js";
import { externalDeviceName, INTERNAL_DEV_PREFIX, internalDeviceName } from "./device-names.js";
import type { FloatingIp, Router, RouterPort } from "./router.js";

/** Neutron's `lib_constants.ROUTER_MARK_MASK`: router marks use the lower 16 bits. */
export const ROUTER_MARK_MASK = "0xffff";
/** The metadata service's IPv4 address as a match (Neutron's `METADATA_CIDR`): requests to it from `qr-` devices are marked and redirected to the router's metadata proxy. */
export const METADATA_V4_CIDR = "169.254.169.254/32";
/** The metadata service's IPv6 address as a match (Neutron's `METADATA_V6_IP`, link-local): redirected as its IPv4 twin is when the agent manages IPv6 (`use_ipv6`). */
export const METADATA_V6_CIDR = "fe80::a9fe:a9fe/128";
/** The tag of every floating IP rule (nat and mangle), as Neutron tags them. */
export const FLOATING_IP_TAG = "floating_ip";

/** Options of `RouterRules`: the Neutron l3 agent settings that shape a router's rules (metadata, marks, SNAT port randomization). */
export interface RouterRulesOptions {
  /** Neutron `enable_metadata_proxy`: the INPUT and REDIRECT rules of the metadata driver. */
  enableMetadataProxy: boolean;
  /** Neutron `metadata_port`. */
  metadataPort: number;
  /** Neutron `metadata_access_mark` (default `0x1`). */
  metadataAccessMark?: string;
  /** Neutron `external_ingress_mark` (default `0x2`). */
  externalIngressMark?: string;
  /** Append `--random-fully` to SNAT (iptables 1.6.2+ and Neutron's `use_random_fully`). */
  randomFully: boolean;
  /** The router's address-scope marks; they outlive a manager (Neutron keeps them per RouterInfo). */
  marks?: AddressScopeMarks;
}

/** One rule, as given to `addRule`: its identity for `removeRule` too. */
interface RuleSpec {
  readonly family: IpFamily;
  readonly table: TableName;
  readonly chain: string;
  readonly rule: string;
  readonly tag?: string;
  readonly top?: boolean;
}

interface ProgrammedGroup {
  readonly rules: readonly RuleSpec[];
}

/** What one `update` did, for logs and tests. */
export interface RouterRulesChange {
  /** Rule groups rewritten (`gateway`, `scope`, `fip:<address>`, ...). */
  readonly groups: string[];
  readonly rulesAdded: number;
  readonly rulesRemoved: number;
}

/**
 * The iptables rules of one router on its namespace's IptablesManager, with the layout Neutron Zed's
 * `RouterInfo` and metadata driver write (rule text, chains, order, tags), generated incrementally.
 *
 * Model. The rules are split into groups, each computed from the router dict alone: the static
 * layout (address-scope chains and the metadata mark, written once per manager), the gateway (SNAT,
 * the external ingress mark, the address-scope CONNMARK save), the address-scope marks of the ports,
 * one group per floating IP (DNAT in PREROUTING and OUTPUT, SNAT in `float-snat`, plus the mangle
 * rules when its fixed IP is in another address scope than the gateway) and the metadata driver's
 * INPUT/REDIRECT rules. `update` recomputes every group's rule text (cheap string building) and
 * touches the manager only for groups whose text changed: it removes exactly that group's old rules
 * and adds its new ones. So one changed floating IP on a router with 1,000 changes three rules in the
 * manager, and the applier sends only those chains' edits.
 *
 * Invariants
 * - After `update(r)`, the manager holds exactly the rules Neutron would hold for `r`, in Neutron's
 *   order, with one exception: floating IP rules are in the order their floating IPs were added or
 *   last changed, where Neutron re-adds all of them in list order on every update (the rules match
 *   disjoint addresses, so their order has no effect on traffic).
 * - `update` is idempotent: the same router twice changes nothing.
 * - Rules of others in the same chains (router extensions such as FWaaS) are never touched: unlike
 *   Neutron's `empty_chain`, a group removes only the rules it added.
 * - Deviation, on purpose: without a gateway there are no floating IP rules. Neutron returns early
 *   in `process_external` when the gateway is gone and so leaves the old DNAT/SNAT rules behind when
 *   the gateway and the floating IPs are removed in one update.
 */
export class RouterRules {
  readonly marks: AddressScopeMarks;
  private readonly options: Required<Omit<RouterRulesOptions, "marks">>;
  private readonly groups = new Map<string, ProgrammedGroup>();
  /** Floating IP groups in the order they were added (their rules' order in the chains). */
  private readonly fipGroups = new Set<string>();
  private readonly forwardRules = new WeakMap<FloatingIp, RuleSpec[]>();
  private staticDone = false;
  /** `update` calls so far (the metadata REDIRECT moves to the top after the first). */
  private updates = 0;

  constructor(
    readonly manager: IptablesManager,
    /** Named in errors about a rule (`router/<id>`). */
    readonly resource: string,
    options: RouterRulesOptions,
  ) {
    this.marks = options.marks ?? new AddressScopeMarks();
    this.options = {
      enableMetadataProxy: options.enableMetadataProxy,
      metadataPort: options.metadataPort,
      metadataAccessMark: options.metadataAccessMark ?? "0x1",
      externalIngressMark: options.externalIngressMark ?? "0x2",
      randomFully: options.randomFully,
    };
  }

  /** Brings the manager's rules for this router to what `router` asks for. Synchronous; nothing is applied. */
  update(router: Router): RouterRulesChange {
    const change = { groups: [] as string[], rulesAdded: 0, rulesRemoved: 0 };
    if (!this.staticDone) {
      this.setGroup("static", this.staticRules(), change);
      this.staticDone = true;
    }
    const gw = router.gw_port;
    const gwDevice = gw ? externalDeviceName(gw.id) : undefined;

    // Neutron's process(): process_external (gateway, then floating IP NAT), then
    // process_address_scope (port scopes, then floating IP mangle). Marks are allocated on first
    // use, so this order is also the order of allocation.
    this.setGroup("gateway", this.gatewayRules(router, gwDevice), change);
    const fipNat = new Map<string, RuleSpec[]>();
    if (gw && gwDevice) for (const fip of router._floatingips) fipNat.set(fip.floating_ip_address, this.forwardRulesOf(fip));
    const scopeMarks = this.portScopeMarks(router, gwDevice);
    this.setGroup("scope", this.scopeRules(router, scopeMarks, gwDevice), change);
    const { devices: fipDeviceRules, perFip: fipMangle } = gw && gwDevice ? this.floatingMangleRules(router, scopeMarks) : { devices: [], perFip: new Map<string, RuleSpec[]>() };
    this.setGroup("fip-devices", fipDeviceRules, change);

    // Floating IPs: only those whose rules changed are touched.
    const wanted = new Set<string>();
    for (const [address, nat] of fipNat) {
      const name = `fip:${address}`;
      wanted.add(name);
      // Re-added rules go to the end of their chains: keep the insertion order in step.
      const mangle = fipMangle.get(address);
      if (this.setGroup(name, mangle ? [...nat, ...mangle] : nat, change)) this.fipGroups.delete(name);
      this.fipGroups.add(name);
    }
    for (const name of [...this.fipGroups]) {
      if (wanted.has(name)) continue;
      this.setGroup(name, [], change);
      this.fipGroups.delete(name);
      this.groups.delete(name);
    }

    // The metadata driver's rules come after the floating IP DNAT rules in PREROUTING (Neutron adds
    // them after the router's first process()); a floating IP added later must not land after them.
    // The metadata driver adds its rules after the router's first process(), so on the first update
    // the REDIRECT follows the floating IP DNAT rules in PREROUTING. Every later process() clears and
    // re-adds the floating IP rules, which puts them after it: from then on it is a `top` rule, and
    // floating IP rules added later land after it without any other rule moving.
    const { input, redirect } = this.metadataDriverRules(this.updates > 0);
    this.setGroup("metadata-input", input, change);
    this.setGroup("metadata-redirect", redirect, change);
    this.updates++;
    return change;
  }

  /** Removes every rule and chain this router added (the manager's own layout stays). */
  clear(): RouterRulesChange {
    const change = { groups: [] as string[], rulesAdded: 0, rulesRemoved: 0 };
    for (const name of [...this.groups.keys()]) this.setGroup(name, [], change);
    if (this.staticDone) {
      for (const family of [4, 6] as const) {
        this.manager.table(family, "mangle").removeChain("scope");
        this.manager.table(family, "filter").removeChain("scope");
      }
      this.manager.table(4, "mangle").removeChain("floatingip");
      this.manager.table(4, "mangle").removeChain("float-snat");
    }
    this.groups.clear();
    this.fipGroups.clear();
    this.staticDone = false;
    this.updates = 0;
    return change;
  }

  /** The floating IPs whose rules are programmed, in chain order. */
  programmedFloatingIps(): string[] {
    return [...this.fipGroups].map((g) => g.slice("fip:".length));
  }

  // ---- the groups (Neutron's rule text) ---------------------------------------------------------------

  /**
   * `initialize_address_scope_iptables` and `initialize_metadata_iptables`. Neutron also puts a
   * metadata DROP into filter `scope` here, but every process() empties that chain before anything is
   * applied, so it never reaches the kernel; it is left out.
   */
  private staticRules(): RuleSpec[] {
    const r: RuleSpec[] = [];
    const families: IpFamily[] = this.manager.useIpv6 ? [4, 6] : [4];
    for (const family of [4, 6] as const) {
      this.manager.table(family, "mangle").addChain("scope", { resource: this.resource });
      this.manager.table(family, "filter").addChain("scope", { resource: this.resource });
    }
    this.manager.table(4, "mangle").addChain("floatingip", { resource: this.resource });
    this.manager.table(4, "mangle").addChain("float-snat", { resource: this.resource });
    const restore = "-m connmark ! --mark 0x0/0xffff0000 -j CONNMARK --restore-mark --nfmask 0xffff0000 --ctmask 0xffff0000";
    const save = "-m connmark --mark 0x0/0xffff0000 -j CONNMARK --save-mark --nfmask 0xffff0000 --ctmask 0xffff0000";
    for (const family of [4, 6] as const) r.push({ family, table: "filter", chain: "FORWARD", rule: "-j $scope" });
    r.push({ family: 4, table: "mangle", chain: "PREROUTING", rule: "-j $scope" });
    r.push({ family: 4, table: "mangle", chain: "PREROUTING", rule: restore });
    // After the CONNMARK restore: the floating IP marks must override it to cross scopes.
    r.push({ family: 4, table: "mangle", chain: "PREROUTING", rule: "-j $floatingip" });
    r.push({ family: 4, table: "mangle", chain: "float-snat", rule: save });
    r.push({ family: 6, table: "mangle", chain: "PREROUTING", rule: "-j $scope" });
    r.push({ family: 6, table: "mangle", chain: "PREROUTING", rule: restore });
    // Metadata requests are always marked, so a stray one that arrives before the redirect exists is dropped.
    const mark = `${this.options.metadataAccessMark}/${ROUTER_MARK_MASK}`;
    const qrAll = `${INTERNAL_DEV_PREFIX}+`;
    r.push({ family: 4, table: "mangle", chain: "PREROUTING", rule: `-d ${METADATA_V4_CIDR} -i ${qrAll} -p tcp -m tcp --dport 80 -j MARK --set-xmark ${mark}` });
    if (families.includes(6)) {
      r.push({ family: 6, table: "mangle", chain: "PREROUTING", rule: `-d ${METADATA_V6_CIDR} -i ${qrAll} -p tcp -m tcp --dport 80 -j MARK --set-xmark ${mark}` });
    }
    return r;
  }

  /** `_handle_router_snat_rules` after the `-j $float-snat` the manager already has first in `snat`. */
  private gatewayRules(router: Router, gwDevice: string | undefined): RuleSpec[] {
    const gw = router.gw_port;
    if (!gw || !gwDevice) return [];
    const r: RuleSpec[] = [];
    const snat = router.enable_snat;
    const randomFully = this.options.randomFully ? " --random-fully" : "";
    // process_external_port_address_scope_routing: remember the originating scope for replies.
    if (snat) {
      r.push({ family: 4, table: "mangle", chain: "POSTROUTING", rule: `-o ${gwDevice} -m connmark --mark 0x0/0xffff0000 -j CONNMARK --save-mark --nfmask 0xffff0000 --ctmask 0xffff0000` });
      const extScope = gw.address_scopes["4"];
      // No SNAT inside one address scope.
      if (extScope) r.push({ family: 4, table: "nat", chain: "snat", rule: `-o ${gwDevice} -m connmark --mark ${this.marks.markFor(extScope)} -j ACCEPT` });
    }
    const gwIp = gw.fixed_ips.find((f) => ipFamily(f.ip_address) === 4)?.ip_address;
    if (gwIp === undefined) return r;
    if (snat) r.push({ family: 4, table: "nat", chain: "snat", rule: `-o ${gwDevice} -j SNAT --to-source ${gwIp}${randomFully}` });
    const ingress = `${this.options.externalIngressMark}/${ROUTER_MARK_MASK}`;
    // Traffic between internal networks is not SNATed unless it was DNATed to a floating IP.
    r.push({ family: 4, table: "nat", chain: "POSTROUTING", rule: `! -o ${gwDevice} -m conntrack ! --ctstate DNAT -j ACCEPT` });
    // Replies to internal hosts that reached a floating IP come back through the router.
    r.push({ family: 4, table: "nat", chain: "snat", rule: `-m mark ! --mark ${ingress} -m conntrack --ctstate DNAT -j SNAT --to-source ${gwIp}${randomFully}` });
    r.push({ family: 4, table: "mangle", chain: "mark", rule: `-i ${gwDevice} -j MARK --set-xmark ${ingress}` });
    return r;
  }

  /**
   * A floating IP's NAT rules, once per parsed floating IP: the parse keeps an unchanged floating IP's
   * object, so on a 1,000-FIP router the 999 unchanged ones are recognised by identity.
   */
  private forwardRulesOf(fip: FloatingIp): RuleSpec[] {
    let rules = this.forwardRules.get(fip);
    if (!rules) this.forwardRules.set(fip, (rules = this.floatingForwardRules(fip)));
    return rules;
  }

  /** `floating_forward_rules`. */
  private floatingForwardRules(fip: FloatingIp): RuleSpec[] {
    const floating = fip.floating_ip_address;
    const fixed = fip.fixed_ip_address;
    const randomFully = this.options.randomFully ? " --random-fully" : "";
    return [
      { family: 4, table: "nat", chain: "PREROUTING", rule: `-d ${floating}/32 -j DNAT --to-destination ${fixed}`, tag: FLOATING_IP_TAG },
      { family: 4, table: "nat", chain: "OUTPUT", rule: `-d ${floating}/32 -j DNAT --to-destination ${fixed}`, tag: FLOATING_IP_TAG },
      { family: 4, table: "nat", chain: "float-snat", rule: `-s ${fixed}/32 -j SNAT --to-source ${floating}${randomFully}`, tag: FLOATING_IP_TAG },
    ];
  }

  /**
   * `_get_address_scope_mark`: per IP version, device → mark for every port with an address of that
   * version, internal ports first (in list order), then the gateway.
   */
  private portScopeMarks(router: Router, gwDevice: string | undefined): Record<IpFamily, Map<string, string>> {
    const out: Record<IpFamily, Map<string, string>> = { 4: new Map(), 6: new Map() };
    const add = (port: RouterPort, device: string) => {
      // Every scope the port names gets its mark now (Neutron builds the whole map eagerly).
      const marks = new Map<number, string>();
      for (const [k, v] of Object.entries(port.address_scopes)) marks.set(Number(k), this.marks.markFor(v));
      for (const version of new Set(port.fixed_ips.map((f) => ipFamily(f.ip_address)!))) {
        out[version].set(device, marks.get(version) ?? this.marks.markFor(null));
      }
    };
    for (const p of router._interfaces) add(p, internalDeviceName(p.id));
    if (router.gw_port && gwDevice) add(router.gw_port, gwDevice);
    return out;
  }

  /** `_add_address_scope_mark`: mark by ingress device, drop what leaves a device of another scope. */
  private scopeRules(router: Router, scopeMarks: Record<IpFamily, Map<string, string>>, gwDevice: string | undefined): RuleSpec[] {
    const r: RuleSpec[] = [];
    for (const family of [4, 6] as const) {
      // With SNAT the gateway's traffic changes scope by design.
      const dontBlockExternal = family === 4 && router.enable_snat && router.gw_port !== null;
      for (const [device, mark] of scopeMarks[family]) {
        r.push({ family, table: "mangle", chain: "scope", rule: `-i ${device} -j MARK --set-xmark ${mark}` });
        if (dontBlockExternal && device === gwDevice) continue;
        r.push({ family, table: "filter", chain: "scope", rule: `-o ${device} -m mark ! --mark ${mark} -j DROP` });
      }
    }
    return r;
  }

  /**
   * `process_floating_ip_address_scope_rules`: only floating IPs whose fixed IP is in another address
   * scope than the gateway get mangle rules.
   */
  private floatingMangleRules(router: Router, scopeMarks: Record<IpFamily, Map<string, string>>): { devices: RuleSpec[]; perFip: Map<string, RuleSpec[]> } {
    const extScope = router.gw_port?.address_scopes["4"] ?? null;
    const fips = router._floatingips.filter((f) => f.fixed_ip_address_scope !== extScope);
    const devices: RuleSpec[] = [];
    const perFip = new Map<string, RuleSpec[]>();
    if (fips.length === 0) return { devices, perFip };
    const extMark = this.marks.markFor(extScope);
    // Neutron iterates a set here (arbitrary order); ports order is deterministic.
    for (const [device, mark] of scopeMarks[4]) {
      if (mark === extMark) devices.push({ family: 4, table: "mangle", chain: "float-snat", rule: `-o ${device} -j MARK --set-xmark ${extMark}`, tag: FLOATING_IP_TAG });
    }
    for (const fip of fips) {
      const internal = this.marks.markFor(fip.fixed_ip_address_scope);
      perFip.set(fip.floating_ip_address, [
        { family: 4, table: "mangle", chain: "floatingip", rule: `-d ${fip.floating_ip_address}/32 -j MARK --set-xmark ${internal}`, tag: FLOATING_IP_TAG },
        { family: 4, table: "mangle", chain: "FORWARD", rule: `-s ${fip.fixed_ip_address}/32 -j $float-snat`, tag: FLOATING_IP_TAG },
      ]);
    }
    return { devices, perFip };
  }

  /** The metadata driver's `metadata_filter_rules` and `metadata_nat_rules`, both families. */
  private metadataDriverRules(top: boolean): { input: RuleSpec[]; redirect: RuleSpec[] } {
    const input: RuleSpec[] = [];
    const redirect: RuleSpec[] = [];
    if (!this.options.enableMetadataProxy) return { input, redirect };
    const port = this.options.metadataPort;
    const families: IpFamily[] = this.manager.useIpv6 ? [4, 6] : [4];
    for (const family of families) {
      // Only redirected (marked) requests reach the proxy; the port itself is closed to everyone else.
      input.push({ family, table: "filter", chain: "INPUT", rule: `-m mark --mark ${this.options.metadataAccessMark}/${ROUTER_MARK_MASK} -j ACCEPT` });
      input.push({ family, table: "filter", chain: "INPUT", rule: `-p tcp -m tcp --dport ${port} -j DROP` });
      const address = family === 4 ? METADATA_V4_CIDR : METADATA_V6_CIDR;
      redirect.push({ family, table: "nat", chain: "PREROUTING", rule: `-d ${address} -i ${INTERNAL_DEV_PREFIX}+ -p tcp -m tcp --dport 80 -j REDIRECT --to-ports ${port}`, top });
    }
    return { input, redirect };
  }

  // ---- the diff ------------------------------------------------------------------------------------------

  /** Replaces a group's rules when their text changed; returns whether it was rewritten with rules. */
  private setGroup(name: string, rules: readonly RuleSpec[], change: { groups: string[]; rulesAdded: number; rulesRemoved: number }): boolean {
    const old = this.groups.get(name);
    if (old ? sameRules(old.rules, rules) : rules.length === 0) return false;
    if (old) {
      for (const spec of old.rules) {
        if (this.manager.table(spec.family, spec.table).removeRule(spec.chain, spec.rule, { top: spec.top ?? false })) change.rulesRemoved++;
      }
    }
    for (const spec of rules) {
      const options: { resource: string; tag?: string; top?: boolean } = { resource: this.resource };
      if (spec.tag !== undefined) options.tag = spec.tag;
      if (spec.top) options.top = true;
      this.manager.table(spec.family, spec.table).addRule(spec.chain, spec.rule, options);
      change.rulesAdded++;
    }
    if (rules.length > 0) this.groups.set(name, { rules });
    else this.groups.delete(name);
    change.groups.push(name);
    return rules.length > 0;
  }
}

/** Field by field: a 1,000-FIP router compares 3,000 rules per update, and joining them into keys cost more than the rest. */
function sameRules(a: readonly RuleSpec[], b: readonly RuleSpec[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.rule !== y.rule || x.chain !== y.chain || x.table !== y.table || x.family !== y.family || x.tag !== y.tag || (x.top ?? false) !== (y.top ?? false)) return false;
  }
  return true;
}
