/**
 * Rule text <-> argument list, the way iptables-restore 1.8.9 splits a line (add_param_to_argv)
 * and iptables-save quotes values (xtables_save_string).
 *
 * Restore splits on blanks and honours double quotes; a quote may even open in the middle of a
 * word, a closing quote ends the word, and a backslash inside quotes escapes the next character.
 * We accept only the unsurprising subset: a quoted value is a whole word, and backslashes and
 * single quotes are refused (save escapes them, so they could not come back as the same text).
 * Control characters are refused outright: a newline would start a new restore command.
 */
import { InvalidRuleError } from "../errors.js";
import { OPTION_ARG_COUNTS, STRING_OPTIONS } from "./module-specs.js";
import { saveString } from "./value-parsers.js";

const SPACE = 0x20;
const QUOTE = 0x22;
const SINGLE_QUOTE = 0x27;
const BACKSLASH = 0x5c;

function charProblem(c: number): string | undefined {
  if (c === 0x0a || c === 0x0d) return "contains a line break";
  if (c === 0) return "contains a NUL character";
  if (c === 0x09) return "contains a tab (separate words with spaces)";
  if (c < 0x20 || c === 0x7f || (c >= 0x80 && c <= 0x9f)) return "contains a control character";
  if (c === BACKSLASH) return "contains a backslash";
  if (c === SINGLE_QUOTE) return "contains a single quote (only double quotes group words)";
  return undefined;
}

/**
 * Splits rule text into iptables arguments. Words are separated by one or more spaces; `"..."`
 * is one word (possibly empty). Throws InvalidRuleError for control characters, unbalanced
 * quotes, a quote or backslash inside a value, and single quotes.
 */
export function tokenizeRule(text: string, resource?: string): string[] {
  const fail: (reason: string) => never = (reason) => {
    throw new InvalidRuleError(text, reason, resource === undefined ? {} : { resource });
  };
  const tokens: string[] = [];
  const n = text.length;
  let i = 0;
  while (i < n) {
    let c = text.charCodeAt(i);
    if (c === SPACE) {
      i++;
      continue;
    }
    if (c === QUOTE) {
      const start = i + 1;
      let j = start;
      for (; j < n; j++) {
        c = text.charCodeAt(j);
        if (c === QUOTE) break;
        const problem = charProblem(c);
        if (problem !== undefined) fail(problem);
      }
      if (j >= n) fail("unbalanced double quote");
      // restore would end the word at the closing quote and start another right after it
      if (j + 1 < n && text.charCodeAt(j + 1) !== SPACE) fail("a closing quote must end the word");
      tokens.push(text.slice(start, j));
      i = j + 1;
      continue;
    }
    const start = i;
    for (; i < n; i++) {
      c = text.charCodeAt(i);
      if (c === SPACE) break;
      if (c === QUOTE) fail("a double quote inside a value");
      const problem = charProblem(c);
      if (problem !== undefined) fail(problem);
    }
    tokens.push(text.slice(start, i));
  }
  return tokens;
}

/**
 * Joins arguments back into rule text, quoting exactly where iptables-save would: the value of a
 * free-text option (`--comment`, `--log-prefix`) unless it is non-empty [A-Za-z0-9_-], and any
 * other word that would not survive splitting (empty, or containing a space or quote).
 */
export function formatRuleTokens(tokens: readonly string[]): string {
  let out = "";
  let stringValue = false;
  for (let k = 0; k < tokens.length; k++) {
    const t = tokens[k]!;
    if (k > 0) out += " ";
    out += stringValue || t === "" || /[ "'\\]/.test(t) ? saveString(t) : t;
    stringValue = !stringValue && STRING_OPTIONS.has(t);
  }
  return out;
}

/** A rule's `-j` (jump) or `-g` (goto) target. */
export interface RuleTarget {
  kind: "jump" | "goto";
  target: string;
}

/**
 * The `-j`/`-g` target of canonical rule text (as canonicalizeRule returns it), or undefined for
 * a rule without one. Option values are stepped over, so a comment reading "-j X" is not a jump.
 * (`--jump`/`--goto` are understood too, but other non-canonical text may mislead it.)
 */
export function ruleTarget(text: string): RuleTarget | undefined {
  const tokens = tokenizeRule(text);
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t === "-j" || t === "-g" || t === "--jump" || t === "--goto") {
      const target = tokens[i + 1];
      return target === undefined ? undefined : { kind: t === "-j" || t === "--jump" ? "jump" : "goto", target };
    }
    i += OPTION_ARG_COUNTS.get(t) ?? 0;
  }
  return undefined;
}

/**
 * The chain or extension a canonical rule jumps or goes to, fast: in canonical text the target
 * comes last, so it is the last ` -j `/` -g `, unless a quoted option value (a LOG prefix) follows,
 * where the tokenizer decides.
 */
export function ruleJumpTarget(text: string): string | undefined {
  const at = Math.max(text.lastIndexOf(" -j "), text.lastIndexOf(" -g "));
  const start = at >= 0 ? at + 4 : text.startsWith("-j ") || text.startsWith("-g ") ? 3 : -1;
  if (start < 0) return undefined;
  if (text.indexOf('"', start) !== -1) return ruleTarget(text)?.target;
  const end = text.indexOf(" ", start);
  return text.slice(start, end === -1 ? undefined : end);
}
