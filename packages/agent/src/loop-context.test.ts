import { FakeHost } from "@chainwarden/testing";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { LoopContext } from "./loop-context.js";
import { ManagerFlavours, type HandlerOwner, type ManagerDefaults } from "./manager-flavours.js";
import { config } from "./rule-set-handler.test-support.js";

const logger = pino({ level: "silent" });

function context(options: { dryRun?: boolean; live?: boolean; owners?: HandlerOwner[]; defaults?: ManagerDefaults } = {}) {
  const host = new FakeHost({ namespaces: ["ns-a"] });
  const fake = host.iptables;
  const woken: string[] = [];
  const cfg = config();
  const flavours = ManagerFlavours.resolve(options.owners ?? [], { wrapName: cfg.wrap_name, useIpv6: cfg.use_ipv6, defaults: options.defaults });
  const ctx = new LoopContext(
    "ns-a",
    host,
    logger,
    logger,
    options.dryRun ?? false,
    cfg,
    {
      wake: (kind) => woken.push(kind),
      live: () => options.live ?? true,
    },
    flavours,
  );
  return { fake, ctx, woken };
}

describe("LoopContext", () => {
  it("one manager per wrap name; a handler that names no tables shares it, one that asks for others is refused", () => {
    const { ctx } = context();
    const m = ctx.manager({ stateless: true, nat: false });
    expect(ctx.manager()).toBe(m);
    expect(ctx.manager({ stateless: true })).toBe(m);
    expect(() => ctx.manager({ nat: true })).toThrow(expect.objectContaining({ code: "MANAGER_CONFLICT", message: expect.stringMatching(/ns-a/) }));
    const other = ctx.manager({ wrapName: "cw-other" });
    expect(other).not.toBe(m);
    expect(ctx.managerList()).toEqual([m, other]);
  });

  it("makes each wrap name's manager with its flavour, whichever handler asks first (the app's defaults, the declared needs)", () => {
    // The l2 agent's: stateless by default, so a plugin's manager() has no nat or mangle table.
    const l2 = context({ defaults: { stateless: true } }).ctx;
    l2.handlerKind = "chain_set";
    const m = l2.manager();
    expect([m.ipv4.nat, m.ipv4.mangle]).toEqual([undefined, undefined]);
    l2.handlerKind = "port";
    expect(l2.manager({ stateless: true })).toBe(m);

    // Declared needs decide before anyone asks: the first caller with no options gets them.
    const declared = context({ owners: [{ handler: { kind: "port", managers: [{ stateless: true }] }, plugin: "l2-secgroup" }] }).ctx;
    declared.handlerKind = "chain_set";
    expect(declared.manager().ipv4.nat).toBeUndefined();

    // The l3 agent's (the framework's default): stateful, with nat.
    expect(context().ctx.manager().ipv4.nat).toBeDefined();
  });

  it("MANAGER_CONFLICT names the asking handler and plugin, the wrap name, the namespace, and who set the flavour", () => {
    const { ctx } = context({ owners: [{ handler: { kind: "port", managers: [{ stateless: true }] }, plugin: "l2-secgroup" }, { handler: { kind: "nat_rule" }, plugin: "acme" }] });
    ctx.handlerKind = "nat_rule";
    // First caller against a declaration: refused, nothing made.
    expect(() => ctx.manager({ stateless: false })).toThrow(
      expect.objectContaining({
        code: "MANAGER_CONFLICT",
        plugin: "acme",
        message: 'the nat_rule handler of plugin acme asks the cw-test manager of ns-a for {"stateless":false}, but the port handler of plugin l2-secgroup declares stateless: true for it',
      }),
    );
    expect(ctx.managerList()).toEqual([]);
    ctx.handlerKind = "port";
    ctx.manager();
    ctx.handlerKind = "nat_rule";
    expect(() => ctx.manager({ nat: true })).toThrow(
      'the nat_rule handler of plugin acme asks the cw-test manager of ns-a for {"nat":true}, but it is {"stateless":true,"nat":false,"useIpv6":false} (stateless declared by the port handler of plugin l2-secgroup; the port handler of plugin l2-secgroup made it first)',
    );
  });

  it("notes which wrap names each handler used; keeps what the kernel has of a failing handler's chains, the others' own chains excepted", async () => {
    const { ctx, fake } = context();
    fake.seed(
      { namespace: "ns-a", family: 4 },
      [
        "*filter",
        ":INPUT ACCEPT [0:0]",
        ":cw-test-INPUT - [0:0]",
        ":cw-test-gd-g1 - [0:0]",
        ":cw-test-rs-r1 - [0:0]",
        "-A INPUT -j cw-test-INPUT",
        "-A cw-test-INPUT -j cw-test-gd-g1",
        "-A cw-test-INPUT -j cw-test-rs-r1",
        "-A cw-test-gd-g1 -j DROP",
        "-A cw-test-rs-r1 -j LOG",
        "COMMIT",
        "",
      ].join("\n"),
    );
    ctx.beginRun();
    ctx.handlerKind = "rule_set";
    const m = ctx.manager();
    const filter = m.table(4, "filter");
    filter.addChain("rs-r1");
    filter.addRule("rs-r1", "-j ACCEPT");
    filter.addRule("INPUT", "-j $rs-r1");
    ctx.manager({ wrapName: "cw-other" });
    ctx.handlerKind = undefined;
    expect(ctx.wrapNamesByKind()).toEqual(new Map([["rule_set", new Set(["cw-test", "cw-other"])]]));

    await ctx.keepKernelStateFor(new Set(["cw-test"]));
    await ctx.keepKernelStateFor(new Set(["cw-test"])); // once per manager
    for (const touched of ctx.endRun()) await touched.deferApplyOff();
    const v4 = { namespace: "ns-a", family: 4 as const };
    expect(fake.rules(v4, "filter", "cw-test-gd-g1")).toEqual(["-j DROP"]);
    expect(fake.rules(v4, "filter", "cw-test-INPUT")).toEqual(["-j cw-test-rs-r1", "-j cw-test-gd-g1"]);
    // rule_set's own chain is as it wants it: the kernel's old rule is not kept.
    expect(fake.rules(v4, "filter", "cw-test-rs-r1")).toEqual(["-j ACCEPT"]);
  });

  it("defers every manager a run touches until the loop applies it, and lists them once", async () => {
    const { ctx, fake } = context();
    ctx.beginRun();
    const m = ctx.manager();
    m.ipv4.filter!.addChain("x");
    ctx.manager();
    await m.apply();
    expect(fake.restoreCalls).toEqual([]);
    const touched = ctx.endRun();
    expect(touched).toEqual([m]);
    await m.deferApplyOff();
    expect(fake.restoreCalls).toHaveLength(1);
  });

  it("a dry run never applies, keeps the host actions for the plan, and never requeues or wakes", async () => {
    const { ctx, fake, woken } = context({ dryRun: true });
    const m = ctx.manager();
    m.ipv4.filter!.addChain("x");
    await m.apply();
    expect(fake.restoreCalls).toEqual([]);
    ctx.handlerKind = "port";
    ctx.report({ verb: "create", object: "ipset", name: "NIPv4abc" });
    expect(ctx.actions).toEqual([{ verb: "create", object: "ipset", name: "NIPv4abc" }]);
    ctx.requeue(10);
    expect(ctx.takeRequeue()).toBeUndefined();
    expect(ctx.waker()).toBeUndefined();
    expect(woken).toEqual([]);
  });

  it("requeue keeps the earliest delay and the kinds that asked; a waker wakes its own kind while the loop is live", () => {
    const { ctx, woken } = context();
    ctx.handlerKind = "port";
    ctx.requeue(500);
    ctx.handlerKind = "router";
    ctx.requeue(100);
    ctx.requeue(Number.NaN);
    expect(ctx.takeRequeue()).toEqual({ afterMs: 100, kinds: new Set(["port", "router"]) });
    expect(ctx.takeRequeue()).toBeUndefined();
    const wake = ctx.waker()!;
    ctx.handlerKind = undefined;
    wake();
    expect(woken).toEqual(["router"]);
    // Outside a handler call there is no kind to requeue or wake.
    ctx.requeue(10);
    expect(ctx.takeRequeue()).toBeUndefined();
    expect(ctx.waker()).toBeUndefined();
    const stopped = context({ live: false }).ctx;
    stopped.handlerKind = "port";
    expect(stopped.waker()).toBeUndefined();
  });
});
