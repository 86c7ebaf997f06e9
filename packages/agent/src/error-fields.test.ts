import { describe, expect, it } from "vitest";
import { asError, errorCode, errorFields, errorMessage, resourcesOf } from "./error-fields.js";

describe("error fields", () => {
  it("reads code, message and resources off any thrown value", () => {
    expect(asError("text").message).toBe("text");
    const e = new Error("x");
    expect(asError(e)).toBe(e);
    expect(errorCode(Object.assign(new Error("x"), { code: "RESTORE_FAILED" }))).toBe("RESTORE_FAILED");
    expect(errorCode(Object.assign(new Error("x"), { code: 2 }))).toBeUndefined();
    expect(errorCode("RESTORE_FAILED")).toBeUndefined();
    expect(errorMessage(42)).toBe("42");
  });

  it("resourcesOf follows cause, prefers resources over resource, and stops on a cycle", () => {
    const inner = Object.assign(new Error("i"), { resource: "port/p1" });
    const outer = Object.assign(new Error("o", { cause: inner }), { resources: ["router/r1", 7], resource: "ignored/x" });
    expect(resourcesOf(outer)).toEqual(["router/r1", "port/p1"]);
    const loop: { resource: string; cause?: unknown } = { resource: "a/b" };
    loop.cause = loop;
    expect(resourcesOf(loop).length).toBeLessThanOrEqual(8);
    expect(resourcesOf(null)).toEqual([]);
  });

  it("a typed error logs its fields and the first line of its message; anything else whole", () => {
    const typed = Object.assign(new Error("iptables-restore failed\nline 3: ..."), {
      name: "RestoreError",
      code: "RESTORE_FAILED",
      resource: "port/p1",
      line: 3,
      stderr: "iptables-restore: line 3 failed\n",
      context: [
        { number: 2, text: "*filter", failing: false },
        { number: 3, text: "-A bad", failing: true },
      ],
    });
    expect(errorFields(typed)).toEqual({
      error: "iptables-restore failed",
      type: "RestoreError",
      code: "RESTORE_FAILED",
      resource: "port/p1",
      line: 3,
      stderr: "iptables-restore: line 3 failed",
      context: [" 2: *filter", ">3: -A bad"],
    });
    const bug = new TypeError("x is undefined");
    expect(errorFields(bug)).toEqual({ err: bug });
    expect(errorFields("plain")).toEqual({ error: "plain" });
  });
});
