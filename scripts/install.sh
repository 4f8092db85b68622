#!/usr/bin/env bash
# Everything the test suite needs outside node_modules, in order: Node.js 24 when the system's
# node is older than 22.12 (scripts/node), Debian packages (scripts/system), the storage servers
# (scripts/emulators), the Python venv (scripts/python).
# Each part skips what is already in place and fails with the reason when it cannot install.
# `npm test` runs this.
#
# Usage: scripts/install.sh
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
bash "$HERE/node/install.sh"
bash "$HERE/system/install.sh"
bash "$HERE/emulators/install.sh"
bash "$HERE/python/install.sh"
