import { FakeHost } from "@chainwarden/testing";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { LoopContext } from "./loop-context.js";
import { config } from "./rule-set-handler.test-support.js";

const logger = pino({ level: "silent" });

function context(options: { dryRun?: boolean; live?: boolean } = {}) {
  const host = new FakeHost({ namespaces: ["ns-a"] });
  const fake = host.iptables;
  const woken: string[] = [];
  const ctx = new LoopContext("ns-a", host, logger, logger, options.dryRun ?? false, config(), {
    wake: (kind) => woken.push(kind),
    live: () => options.live ?? true,
  });
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
