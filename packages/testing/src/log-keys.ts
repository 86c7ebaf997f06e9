/**
 * The keys a JSON log line carries more than once at its top level. `JSON.parse` keeps the last
 * of a repeated key silently, and pino writes a child logger's bindings and a call's fields side
 * by side, so a field given twice (a logger bound to a namespace, then `{ namespace }` again)
 * only shows in the raw text.
 */
export function duplicateLogKeys(line: string): string[] {
  const seen = new Set<string>();
  const dups = new Set<string>();
  let depth = 0;
  let i = 0;
  const n = line.length;
  while (i < n) {
    const c = line[i]!;
    if (c === '"') {
      // A string: read it whole (escapes included).
      let j = i + 1;
      let text = "";
      while (j < n && line[j] !== '"') {
        if (line[j] === "\\") {
          text += line[j + 1] ?? "";
          j += 2;
        } else text += line[j++];
      }
      let k = j + 1;
      while (k < n && line[k] === " ") k++;
      if (depth === 1 && line[k] === ":") {
        if (seen.has(text)) dups.add(text);
        seen.add(text);
      }
      i = j + 1;
      continue;
    }
    if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") depth--;
    i++;
  }
  return [...dups];
}
