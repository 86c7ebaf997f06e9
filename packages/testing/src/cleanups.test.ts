import { describe, expect, it } from "vitest";
import { Cleanups } from "./cleanups.js";

describe("Cleanups", () => {
  it("runs every cleanup last in, first out, once", async () => {
    const order: string[] = [];
    const c = new Cleanups();
    c.defer(() => order.push("namespace"));
    c.defer(async () => void order.push("agent"));
    await c.run();
    await c.run();
    expect(order).toEqual(["agent", "namespace"]);
  });

  it("runs the rest when one throws, then throws the failures", async () => {
    const order: string[] = [];
    const c = new Cleanups();
    c.defer(() => order.push("first made"));
    c.defer(() => {
      throw new Error("delete failed");
    });
    c.defer(() => order.push("last made"));
    await expect(c.run()).rejects.toThrow("delete failed");
    expect(order).toEqual(["last made", "first made"]);

    c.defer(() => Promise.reject(new Error("a")));
    c.defer(() => Promise.reject(new Error("b")));
    await expect(c.run()).rejects.toThrow("2 cleanups failed");
  });
});
