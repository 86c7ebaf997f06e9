#!/bin/sh
# Installs the Chainwarden @app@ @version@ from this unpacked release tarball (npm run release). It
# needs Node (@node_range@) and a POSIX shell, nothing else: the agent and its production
# node_modules are in lib/, no npm, no compiler, no network. Run it as root:
#
#   ./install.sh [--prefix /usr/local] [--sysconfdir /etc] [--unitdir /etc/systemd/system] [--node PATH]
#
# It writes PREFIX/lib/chainwarden/@app@ (the agent; plugins are installed into it with npm),
# PREFIX/bin/@app@ (runs the agent under the Node found now: a service does not see a login PATH),
# UNITDIR/chainwarden-@app@.service, and SYSCONFDIR/chainwarden/@app@.yaml unless that file exists
# (then the example goes beside it as @app@.yaml.example). It does not start anything.
set -eu

app=@app@
version=@version@
prefix=/usr/local
sysconfdir=/etc
unitdir=/etc/systemd/system
node=

usage() {
  sed -n '2,11s/^# \{0,1\}//p' "$0"
}

while [ $# -gt 0 ]; do
  case $1 in
    --prefix|--sysconfdir|--unitdir|--node)
      [ $# -ge 2 ] || { echo "install.sh: $1 needs a value" >&2; exit 2; }
      opt=${1#--}; val=$2; shift 2 ;;
    --prefix=*|--sysconfdir=*|--unitdir=*|--node=*)
      opt=${1%%=*}; opt=${opt#--}; val=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  case $opt in
    prefix) prefix=$val ;;
    sysconfdir) sysconfdir=$val ;;
    unitdir) unitdir=$val ;;
    node) node=$val ;;
  esac
done

if [ -z "$node" ]; then
  node=$(command -v node) || { echo "install.sh: node is not on PATH; give its path with --node" >&2; exit 1; }
fi
# The paths go into a unit file and a shell script: absolute, and only characters that need no quoting.
for path in "$prefix" "$sysconfdir" "$unitdir" "$node"; do
  case $path in
    /*) ;;
    *) echo "install.sh: not an absolute path: $path" >&2; exit 2 ;;
  esac
  case $path in
    *[!A-Za-z0-9._/+-]*) echo "install.sh: only letters, digits and . _ / + - in paths: $path" >&2; exit 2 ;;
  esac
done
# @node_range@: 0 supported, 1 too old or an odd (short-lived) line, 2 newer than tested (a warning).
node_check=0
"$node" -e '
  const [major, minor] = process.versions.node.split(".").map(Number);
  const ok = (major === 20 && minor >= 19) || (major === 22 && minor >= 12) || major === 24;
  process.exit(ok ? 0 : major > 24 ? 2 : 1);
' || node_check=$?
if [ "$node_check" = 2 ]; then
  echo "install.sh: warning: $node is $("$node" --version), newer than the Node lines the agents are tested on (@node_range@)" >&2
elif [ "$node_check" != 0 ]; then
  echo "install.sh: the agents need Node @node_range@; $node is $("$node" --version 2>/dev/null || echo "not runnable")" >&2
  exit 1
fi

here=$(cd "$(dirname "$0")" && pwd)
libdir=$prefix/lib/chainwarden/$app
package=$libdir/node_modules/@chainwarden/$app

# The agent: replaces an earlier install of it as a whole (plugins installed into it with npm go
# with it: install them again). cp -p keeps the times npm's record of node_modules is checked by.
mkdir -p "$prefix/lib/chainwarden" "$prefix/bin"
rm -rf "$libdir.new"
cp -Rp "$here/lib" "$libdir.new"
rm -rf "$libdir"
mv "$libdir.new" "$libdir"

cat >"$prefix/bin/$app.new" <<EOF
#!/bin/sh
# Written by install.sh of chainwarden-$app $version: the agent under the Node it was installed with.
exec $node $package/bin/$app.js "\$@"
EOF
chmod 755 "$prefix/bin/$app.new"
mv "$prefix/bin/$app.new" "$prefix/bin/$app"

mkdir -p "$unitdir"
sed -e "s|@bindir@|$prefix/bin|g" -e "s|@sysconfdir@|$sysconfdir|g" \
  "$package/deploy/chainwarden-$app.service" >"$unitdir/chainwarden-$app.service"
chmod 644 "$unitdir/chainwarden-$app.service"

mkdir -p "$sysconfdir/chainwarden"
config=$sysconfdir/chainwarden/$app.yaml
if [ -e "$config" ]; then
  cp "$package/deploy/$app.yaml" "$config.example"
  kept=" (kept; the new example is $config.example)"
else
  cp "$package/deploy/$app.yaml" "$config"
  chmod 644 "$config"
  kept=
fi

cat <<EOF
installed chainwarden-$app $version
  $prefix/bin/$app (Node: $node)
  $libdir
  $unitdir/chainwarden-$app.service
  $config$kept
next: edit $config, then systemctl daemon-reload && systemctl enable --now chainwarden-$app
EOF
