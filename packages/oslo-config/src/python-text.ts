/**
 * Python's text rules where oslo.config relies on them and JavaScript's differ: which characters are
 * whitespace for `str.strip()`, and where `readlines()` breaks lines in universal-newline mode.
 */

/** `str.isspace()` characters: what Python's `strip()`, `lstrip()` and `rstrip()` remove. */
const PY_SPACE = "\t\n\u000b\u000c\r\u001c\u001d\u001e\u001f \u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000";

export function isPySpace(char: string): boolean {
  return char.length === 1 && PY_SPACE.includes(char);
}

export function pyRstrip(text: string): string {
  let end = text.length;
  while (end > 0 && PY_SPACE.includes(text[end - 1]!)) end--;
  return text.slice(0, end);
}

export function pyLstrip(text: string): string {
  let start = 0;
  while (start < text.length && PY_SPACE.includes(text[start]!)) start++;
  return text.slice(start);
}

export function pyStrip(text: string): string {
  return pyLstrip(pyRstrip(text));
}

/**
 * The lines `open(...).readlines()` gives in text mode: `\n`, `\r\n` and a lone `\r` end a line
 * (universal newlines); other Unicode line separators do not.
 */
export function pyReadlines(text: string): string[] {
  const lines = text.split(/\r\n|\r|\n/);
  // A final line break leaves no empty line after it.
  if (lines.length > 0 && lines.at(-1) === "") lines.pop();
  return lines;
}

/** `repr()` of a string, as `str()` of a list shows its items. */
export function pyRepr(text: string): string {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  let out = quote;
  for (const char of text) {
    const code = char.codePointAt(0)!;
    if (char === "\\") out += "\\\\";
    else if (char === quote) out += `\\${quote}`;
    else if (char === "\n") out += "\\n";
    else if (char === "\r") out += "\\r";
    else if (char === "\t") out += "\\t";
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, "0")}`;
    else out += char;
  }
  return out + quote;
}

/** `str()` of a float as Python prints it (`7.0`, `1e-05`, `1e+16`). */
export function pyFloatStr(value: number): string {
  if (Number.isNaN(value)) return "nan";
  if (!Number.isFinite(value)) return value > 0 ? "inf" : "-inf";
  if (value === 0) return Object.is(value, -0) ? "-0.0" : "0.0";
  // The shortest digits that read back as the same number, as Python's repr picks them.
  const [mantissa, exp] = value.toExponential().split("e") as [string, string];
  const exponent = Number(exp);
  const negative = mantissa.startsWith("-");
  const digits = mantissa.replace("-", "").replace(".", "");
  const sign = negative ? "-" : "";
  if (exponent >= -4 && exponent < 16) {
    // Fixed notation; Python keeps `.0` on integral values.
    let text: string;
    if (exponent < 0) text = `0.${"0".repeat(-exponent - 1)}${digits}`;
    else if (digits.length <= exponent + 1) text = `${digits}${"0".repeat(exponent + 1 - digits.length)}.0`;
    else text = `${digits.slice(0, exponent + 1)}.${digits.slice(exponent + 1)}`;
    return sign + text;
  }
  const fraction = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  return `${sign}${fraction}e${exponent < 0 ? "-" : "+"}${String(Math.abs(exponent)).padStart(2, "0")}`;
}
