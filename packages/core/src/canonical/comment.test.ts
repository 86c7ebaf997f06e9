import { describe, expect, it } from "vitest";
import { InvalidRuleError } from "../errors.js";
import { canonicalizeRule } from "./canonicalize-rule.js";
import { commentRule, validateComment } from "./comment.js";
import { SAVE_NORMALIZATION_CASES } from "./save-normalization.fixtures.js";

describe("validateComment", () => {
  it.each([
    "Allow DHCP client traffic.",
    "Set zone for bc18a88-96",
    "été",
    "a".repeat(255),
    "é".repeat(127),
    "RECOMMITTED",
    "",
  ])("accepts %j", (c) => {
    expect(() => validateComment(c)).not.toThrow();
  });

  it.each([
    ["a".repeat(256), "256 bytes"],
    ["é".repeat(128), "256 bytes"],
    ['say "hi"', "double quote"],
    ["it's", "single quote"],
    ["a\\b", "backslash"],
    ["two\nlines", "line break"],
    ["cr\r", "line break"],
    ["tab\there", "control character"],
    ["nul\0", "control character"],
    ["please COMMIT now", "COMMIT"],
    ["COMMIT", "COMMIT"],
  ])("rejects %j (%s)", (c, reason) => {
    let err: unknown;
    try {
      validateComment(c, "sg-1");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidRuleError);
    expect((err as InvalidRuleError).message).toContain(reason);
    expect((err as InvalidRuleError).resource).toBe("sg-1");
    expect((err as InvalidRuleError).code).toBe("INVALID_RULE");
  });
});

describe("commentRule", () => {
  it("puts the comment right before -j (Neutron's comment_rule)", () => {
    expect(
      commentRule(
        "-m physdev --physdev-in tap6bc18a88-96 --physdev-is-bridged -j neutron-linuxbri-sg-chain",
        "Direct traffic from the VM interface to the security group chain.",
      ),
    ).toBe(
      '-m physdev --physdev-in tap6bc18a88-96 --physdev-is-bridged -m comment --comment "Direct traffic from the VM interface to the security group chain." -j neutron-linuxbri-sg-chain',
    );
    expect(commentRule("-p udp -m udp --sport 68 --dport 67 -j RETURN", "Allow DHCP client traffic.")).toBe(
      '-p udp -m udp --sport 68 --dport 67 -m comment --comment "Allow DHCP client traffic." -j RETURN',
    );
  });

  it("puts it first for a jump-only rule and last for a rule without a jump", () => {
    expect(commentRule("-j DROP", "Default drop rule for unmatched traffic.")).toBe(
      '-m comment --comment "Default drop rule for unmatched traffic." -j DROP',
    );
    expect(commentRule("-p tcp -m tcp --dport 22", "ssh")).toBe("-p tcp -m tcp --dport 22 -m comment --comment ssh");
  });

  it("treats -g like -j so the result stays canonical", () => {
    expect(commentRule("-s 10.0.0.1/32 -g CWUSER", "x y")).toBe('-s 10.0.0.1/32 -m comment --comment "x y" -g CWUSER');
  });

  it("quotes like iptables-save (bare for [A-Za-z0-9_-], unlike Neutron's always-quoted form)", () => {
    expect(commentRule("-j ACCEPT", "plain_word-1")).toBe("-m comment --comment plain_word-1 -j ACCEPT");
    expect(commentRule("-j ACCEPT", "a.b")).toBe('-m comment --comment "a.b" -j ACCEPT');
  });

  it("ignores a -j inside an existing comment", () => {
    expect(commentRule('-m comment --comment "use -j X" -j ACCEPT', "second")).toBe(
      '-m comment --comment "use -j X" -m comment --comment second -j ACCEPT',
    );
  });

  it("leaves the rule alone without a comment", () => {
    expect(commentRule("-j ACCEPT", undefined)).toBe("-j ACCEPT");
    expect(commentRule("-j ACCEPT", "")).toBe("-j ACCEPT");
  });

  it("refuses a bad comment", () => {
    expect(() => commentRule("-j ACCEPT", 'a "quote"')).toThrow(InvalidRuleError);
  });

  it("keeps every canonical fixture rule canonical", () => {
    for (const c of SAVE_NORMALIZATION_CASES) {
      const withComment = commentRule(c.saved, "Chainwarden test comment.");
      expect(canonicalizeRule(withComment, { family: c.family, strict: true })).toBe(withComment);
    }
  });
});
