/**
 * Rule comments, placed the way Neutron's `comment_rule` places them (iptables_manager.py): the
 * `-m comment --comment "..."` goes right before the ` -j `, first for a rule that is only a
 * jump, last for a rule without a jump. iptables-save prints matches in the order they were
 * given and the target last, so for a canonical rule this placement is already canonical.
 *
 * Two deliberate differences from Neutron, both so the result stays canonical: the comment is
 * quoted the way iptables-save quotes it (bare when it is only [A-Za-z0-9_-], Neutron always
 * quotes), and a `-g` goto is treated like `-j` (Neutron only looks for ` -j `).
 */
import { InvalidRuleError } from "../errors.js";
import { STRING_OPTIONS } from "./module-specs.js";
import { formatRuleTokens, tokenizeRule } from "./rule-tokens.js";
import { commentProblem } from "./value-parsers.js";

/**
 * Throws InvalidRuleError unless the comment can be carried in rule text: at most 255 bytes, no
 * double or single quote, backslash, line break or other control character, not the word COMMIT.
 */
export function validateComment(comment: string, resource?: string): void {
  const problem = commentProblem(comment);
  if (problem !== undefined) throw new InvalidRuleError(comment, problem, resource === undefined ? {} : { resource });
}

/** Adds `-m comment --comment ...` to a rule at Neutron's place. No comment, no change. */
export function commentRule(rule: string, comment: string | undefined): string {
  if (comment === undefined || comment === "") return rule;
  validateComment(comment);
  const tokens = tokenizeRule(rule);
  let at = tokens.length;
  let stringValue = false;
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (!stringValue && (t === "-j" || t === "-g" || t === "--jump" || t === "--goto")) {
      at = i;
      break;
    }
    stringValue = !stringValue && STRING_OPTIONS.has(t);
  }
  tokens.splice(at, 0, "-m", "comment", "--comment", comment);
  return formatRuleTokens(tokens);
}
