/**
 * Longest common subsequence of two string sequences (Myers' O((N+M)·D) algorithm after trimming
 * the common prefix and suffix). The applier uses it to find which of our rules already in the kernel
 * can stay where they are, so a change costs work proportional to its size and unchanged rules keep
 * their counters.
 *
 * Returns, for each element of `a`, the index in `b` it is matched to, or -1.
 */
export function matchSequences(a: readonly string[], b: readonly string[]): Int32Array {
  const match = new Int32Array(a.length).fill(-1);
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) {
    match[start] = start;
    start++;
  }
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--;
    endB--;
    match[endA] = endB;
  }
  if (start === endA || start === endB) return match;
  // Only deletions (or only insertions) — removing ports or floating IPs — need no search: the
  // shorter side, matched in order, is the longest common subsequence.
  if (endA - start > endB - start ? embed(b, start, endB, a, start, endA, match, true) : embed(a, start, endA, b, start, endB, match, false)) return match;
  myers(a, b, start, endA, start, endB, match);
  return match;
}

/**
 * Matches all of `short[s0, s1)` in order inside `long[l0, l1)` if it is a subsequence there
 * (`match` indexes `a`: flipped when `short` is `b`). Leaves `match` untouched and returns false if not.
 */
function embed(short: readonly string[], s0: number, s1: number, long: readonly string[], l0: number, l1: number, match: Int32Array, flipped: boolean): boolean {
  const at = new Int32Array(s1 - s0);
  let j = l0;
  for (let i = s0; i < s1; i++) {
    const want = short[i];
    while (j < l1 && long[j] !== want) j++;
    if (j === l1) return false;
    at[i - s0] = j++;
  }
  for (let i = 0; i < at.length; i++) {
    if (flipped) match[at[i]!] = s0 + i;
    else match[s0 + i] = at[i]!;
  }
  return true;
}

/** Frontier steps (D+1)·(2(N+M)+2) before falling back to a greedy match: bounds the time. */
const SEARCH_BUDGET = 16_000_000;

/** In-order matching by next occurrence: linear, not minimal. */
function greedy(ai: Int32Array, bi: Int32Array, a0: number, b0: number, match: Int32Array): void {
  const positions = new Map<number, number[]>();
  for (let j = bi.length - 1; j >= 0; j--) {
    const list = positions.get(bi[j]!);
    if (list) list.push(j);
    else positions.set(bi[j]!, [j]);
  }
  let floor = 0;
  for (let i = 0; i < ai.length; i++) {
    const list = positions.get(ai[i]!);
    if (!list) continue;
    while (list.length && list[list.length - 1]! < floor) list.pop();
    const j = list.pop();
    if (j === undefined) continue;
    match[a0 + i] = b0 + j;
    floor = j + 1;
  }
}

/** Myers' greedy forward algorithm with a trace, then backtracking to recover the matches. */
function myers(a: readonly string[], b: readonly string[], a0: number, a1: number, b0: number, b1: number, match: Int32Array): void {
  const n = a1 - a0;
  const m = b1 - b0;
  // Strings are compared often; map them to small integers once.
  const ids = new Map<string, number>();
  const idOf = (s: string) => {
    let id = ids.get(s);
    if (id === undefined) ids.set(s, (id = ids.size));
    return id;
  };
  const ai = new Int32Array(n);
  const bi = new Int32Array(m);
  for (let i = 0; i < n; i++) ai[i] = idOf(a[a0 + i]!);
  for (let j = 0; j < m; j++) bi[j] = idOf(b[b0 + j]!);

  const max = n + m;
  const offset = max;
  let v = new Int32Array(2 * max + 2);
  // Frontier d only reads diagonals -d-1..d+1 of the one before, so only those are saved:
  // the trace costs O(D²) integers, not O(D·(N+M)).
  const trace: Int32Array[] = [];
  let found = false;
  for (let d = 0; d <= max && !found; d++) {
    // Each frontier costs up to 2(N+M)+2 steps; past a budget a greedy match is good enough (the
    // change is large anyway, so most rules are rewritten whatever we pick).
    if ((d + 1) * v.length > SEARCH_BUDGET) return greedy(ai, bi, a0, b0, match);
    trace.push(v.slice(offset - d - 1, offset + d + 2));
    const next = v;
    for (let k = -d; k <= d; k += 2) {
      let x: number;
      if (k === -d || (k !== d && next[offset + k - 1]! < next[offset + k + 1]!)) x = next[offset + k + 1]!;
      else x = next[offset + k - 1]! + 1;
      let y = x - k;
      while (x < n && y < m && ai[x] === bi[y]) {
        x++;
        y++;
      }
      next[offset + k] = x;
      if (x >= n && y >= m) {
        found = true;
        break;
      }
    }
    v = next;
  }
  // Backtrack through the saved frontiers.
  let x = n;
  let y = m;
  for (let d = trace.length - 1; d >= 0 && (x > 0 || y > 0); d--) {
    const vd = trace[d]!;
    // vd[i] is diagonal i - d - 1.
    const base = d + 1;
    const k = x - y;
    let prevK: number;
    if (k === -d || (k !== d && vd[base + k - 1]! < vd[base + k + 1]!)) prevK = k + 1;
    else prevK = k - 1;
    const prevX = d === 0 ? 0 : vd[base + prevK]!;
    const prevY = prevX - prevK;
    while (x > prevX && y > prevY) {
      x--;
      y--;
      match[a0 + x] = b0 + y;
    }
    if (d > 0) {
      x = prevX;
      y = prevY;
    }
  }
  while (x > 0 && y > 0 && ai[x - 1] === bi[y - 1]) {
    x--;
    y--;
    match[a0 + x] = b0 + y;
  }
}
