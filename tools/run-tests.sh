#!/usr/bin/env bash
# The whole test suite: every package type-checked with its tests (tsconfig.spec.json) and its vitest suite run, through Nx, uncached (Nx shares its cache across
# clones on a machine, so a cached pass could hide a failure on a clean checkout). Many tests program
# real iptables inside network namespaces they create, so this runs as root.
set -uo pipefail
cd "$(dirname "$0")/.."
export NX_DAEMON=false NX_NO_CLOUD=true NX_TUI=false FORCE_COLOR=0 NO_COLOR=1
if [ "$(id -u)" != 0 ]; then
  echo "run-tests: the suite programs iptables in network namespaces and must run as root" >&2
  exit 1
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
npx nx run-many -t typecheck test --skip-nx-cache --parallel=2 --outputStyle=static "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# Nx interleaves several vitest summaries; close with one total line.
passed=0; failed=0; skipped=0
while IFS= read -r line; do
  [[ $line =~ ([0-9]+)\ passed ]] && passed=$((passed + BASH_REMATCH[1]))
  [[ $line =~ ([0-9]+)\ failed ]] && failed=$((failed + BASH_REMATCH[1]))
  [[ $line =~ ([0-9]+)\ skipped ]] && skipped=$((skipped + BASH_REMATCH[1]))
done < <(grep -E '^\s*Tests\s+[0-9]' "$log" | sed 's/\x1b\[[0-9;]*m//g')
if [ "$status" != 0 ] && [ "$failed" = 0 ]; then failed=1; fi
if [ "$passed" = 0 ] && [ "$status" = 0 ]; then echo "run-tests: no test ran" >&2; status=1; fi
echo "${passed} passed, ${failed} failed${skipped:+, ${skipped} skipped}"
exit "$status"
