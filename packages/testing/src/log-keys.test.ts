import { describe, expect, it } from "vitest";
import { duplicateLogKeys } from "./log-keys.js";

describe("duplicateLogKeys", () => {
  it("finds a top-level key written twice (as pino writes bindings and fields), not nested ones or text in strings", () => {
    // pino's line for logger.child({ namespace }).info({ namespace, nested, note }, "hello").
    const twice = '{"level":30,"namespace":"ns1","namespace":"ns1","nested":{"namespace":1},"note":"a \\"namespace\\": b","msg":"hello"}';
    expect(duplicateLogKeys(twice)).toEqual(["namespace"]);
    expect(duplicateLogKeys('{"level":30,"namespace":"ns1","other":[{"a":1},{"a":2}],"msg":"fine"}')).toEqual([]);
  });
});
