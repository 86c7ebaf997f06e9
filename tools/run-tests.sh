#!/usr/bin/env bash
# The whole test suite: every package type-checked with its tests (tsconfig.spec.json) and its vitest suite run, through Nx, uncached (Nx shares its cache across
# clones on a machine, so a cached pass could hide a failure on a clean checkout). Many tests program
# real iptables inside network namespaces they create, so this runs as root.
#
# Twice: on the machine's Node (20), then every vitest suite again on Node 24, the LTS, from the npm
# registry's `node` package (tools/lts-node.sh; no system install). The second run leaves out the
# typecheck target: tsc's result does not depend on the Node it runs on. CW_SKIP_LTS_NODE=1 skips
# the second run (a quicker local run; CI runs both).
set -uo pipefail
cd "$(dirname "$0")/.."
export NX_DAEMON=false NX_NO_CLOUD=true NX_TUI=false FORCE_COLOR=0 NO_COLOR=1
if [ "$(id -u)" != 0 ]; then
  echo "run-tests: the suite programs iptables in network namespaces and must run as root" >&2
  exit 1
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
total_passed=0; total_failed=0; total_skipped=0

# One pass of the suite; $1 names it in the summary, the rest are nx run-many's arguments.
run_suite() {
  local label=$1; shift
  local started=$SECONDS
  npx nx run-many --skip-nx-cache --parallel=2 --outputStyle=static "$@" 2>&1 | tee "$log"
  local run_status=${PIPESTATUS[0]}
  # Nx interleaves several vitest summaries; close with one total line.
  local passed=0 failed=0 skipped=0 line
  while IFS= read -r line; do
    [[ $line =~ ([0-9]+)\ passed ]] && passed=$((passed + BASH_REMATCH[1]))
    [[ $line =~ ([0-9]+)\ failed ]] && failed=$((failed + BASH_REMATCH[1]))
    [[ $line =~ ([0-9]+)\ skipped ]] && skipped=$((skipped + BASH_REMATCH[1]))
  done < <(grep -E '^\s*Tests\s+[0-9]' "$log" | sed 's/\x1b\[[0-9;]*m//g')
  if [ "$run_status" != 0 ] && [ "$failed" = 0 ]; then failed=1; fi
  if [ "$passed" = 0 ] && [ "$run_status" = 0 ]; then echo "run-tests: no test ran ($label)" >&2; run_status=1; fi
  echo "run-tests: $label: ${passed} passed, ${failed} failed${skipped:+, ${skipped} skipped} in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s"
  total_passed=$((total_passed + passed)); total_failed=$((total_failed + failed)); total_skipped=$((total_skipped + skipped))
  [ "$run_status" = 0 ] || status=$run_status
}

run_suite "Node $(node --version)" -t typecheck test "$@"
if [ "${CW_SKIP_LTS_NODE:-}" != 1 ]; then
  if lts_bin=$(bash tools/lts-node.sh); then
    machine_path=$PATH
    export PATH="$lts_bin:$PATH"
    run_suite "Node $(node --version)" -t test "$@"
    export PATH=$machine_path
  else
    echo "run-tests: could not get Node 24 from the npm registry (tools/lts-node.sh)" >&2
    status=1; total_failed=$((total_failed + 1))
  fi
fi
echo "${total_passed} passed, ${total_failed} failed${total_skipped:+, ${total_skipped} skipped}"
exit "$status"
