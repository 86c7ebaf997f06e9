import { describe, expect, it } from "vitest";
import { InvalidRuleError } from "../errors.js";
import { formatRuleTokens, ruleTarget, tokenizeRule } from "./rule-tokens.js";
import { SAVE_NORMALIZATION_CASES } from "./save-normalization.fixtures.js";

describe("tokenizeRule", () => {
  it("splits on spaces, however many", () => {
    expect(tokenizeRule("-p tcp  -m tcp   --dport 22 -j ACCEPT ")).toEqual(["-p", "tcp", "-m", "tcp", "--dport", "22", "-j", "ACCEPT"]);
    expect(tokenizeRule("   ")).toEqual([]);
  });

  it("keeps a double-quoted value as one word, possibly empty", () => {
    expect(tokenizeRule('-m comment --comment "hello  world" -j ACCEPT')).toEqual(["-m", "comment", "--comment", "hello  world", "-j", "ACCEPT"]);
    expect(tokenizeRule('--comment ""')).toEqual(["--comment", ""]);
    expect(tokenizeRule('--comment "été"')).toEqual(["--comment", "été"]);
  });

  it.each([
    ["-j ACCEPT\n-A X -j DROP", "line break"],
    ["-j ACCEPT\r", "line break"],
    ["-j ACC\0EPT", "NUL"],
    ["-p\ttcp", "tab"],
    ["-j \x7fACCEPT", "control character"],
    ["-m comment --comment \"a\u0085b\"", "control character"],
    ['-m comment --comment "abc', "unbalanced"],
    ['-m comment --comment "x"y', "closing quote must end the word"],
    ['-m comment --comment x"y z"', "double quote inside a value"],
    ["-m comment --comment 'x y'", "single quote"],
    ['-m comment --comment "don\'t"', "single quote"],
    ["-m comment --comment a\\b", "backslash"],
    ['-m comment --comment "a\\"b"', "backslash"],
  ])("rejects %j (%s)", (text, reason) => {
    expect(() => tokenizeRule(text, "port-1")).toThrow(InvalidRuleError);
    try {
      tokenizeRule(text, "port-1");
    } catch (e) {
      expect((e as InvalidRuleError).message).toContain(reason);
      expect((e as InvalidRuleError).resource).toBe("port-1");
    }
  });
});

describe("formatRuleTokens", () => {
  it("quotes free-text values exactly when iptables-save does (anything outside [A-Za-z0-9_-])", () => {
    const c = (v: string) => formatRuleTokens(["-m", "comment", "--comment", v, "-j", "ACCEPT"]);
    expect(c("hello")).toBe("-m comment --comment hello -j ACCEPT");
    expect(c("a_b-C9")).toBe("-m comment --comment a_b-C9 -j ACCEPT");
    expect(c("-j")).toBe("-m comment --comment -j -j ACCEPT");
    for (const ch of [" ", "$", "#", ";", "&", "*", ".", "/", ":", ",", "+", "=", "@", "!", "é"]) {
      expect(c(`a${ch}b`)).toBe(`-m comment --comment "a${ch}b" -j ACCEPT`);
    }
    expect(c("")).toBe('-m comment --comment "" -j ACCEPT');
    expect(formatRuleTokens(["-j", "LOG", "--log-prefix", "a.b"])).toBe('-j LOG --log-prefix "a.b"');
  });

  it("leaves other values alone unless they would not survive splitting", () => {
    expect(formatRuleTokens(["-s", "10.0.0.0/24", "-m", "set", "--match-set", "s:1", "src"])).toBe("-s 10.0.0.0/24 -m set --match-set s:1 src");
    expect(formatRuleTokens(["-x", "a b", ""])).toBe('-x "a b" ""');
  });

  it("escapes quote, backslash and single quote inside quotes as iptables-save does", () => {
    expect(formatRuleTokens(["--comment", `it's "x" \\`])).toBe(`--comment "it\\'s \\"x\\" \\\\"`);
  });

  it("round-trips every saved rule of the fixtures", () => {
    for (const c of SAVE_NORMALIZATION_CASES) expect(formatRuleTokens(tokenizeRule(c.saved))).toBe(c.saved);
  });
});

describe("ruleTarget", () => {
  it("finds -j and -g targets", () => {
    expect(ruleTarget("-s 10.0.0.1/32 -j neutron-l3-agent-snat")).toEqual({ kind: "jump", target: "neutron-l3-agent-snat" });
    expect(ruleTarget("-m comment --comment x -g CWUSER")).toEqual({ kind: "goto", target: "CWUSER" });
    expect(ruleTarget("-j REJECT --reject-with icmp-port-unreachable")).toEqual({ kind: "jump", target: "REJECT" });
    expect(ruleTarget("-p tcp -m tcp --dport 22")).toBeUndefined();
  });

  it("is not fooled by option values that look like a jump", () => {
    expect(ruleTarget('-m comment --comment "-j FAKE" -j ACCEPT')).toEqual({ kind: "jump", target: "ACCEPT" });
    expect(ruleTarget("-m comment --comment -j -j ACCEPT")).toEqual({ kind: "jump", target: "ACCEPT" });
    expect(ruleTarget("-m comment --comment -g")).toBeUndefined();
  });

  it("agrees with every saved rule of the fixtures", () => {
    for (const c of SAVE_NORMALIZATION_CASES) {
      const t = ruleTarget(c.saved);
      const m = / -([jg]) (\S+)(?: |$)/.exec(` ${c.saved.replace(/"[^"]*"/g, '""')}`);
      expect(t, c.saved).toEqual(m === null ? undefined : { kind: m[1] === "j" ? "jump" : "goto", target: m[2] });
    }
  });
});
